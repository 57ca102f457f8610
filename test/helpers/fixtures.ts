import { randomUUID } from "node:crypto";
import { createSigner } from "fast-jwt";
import { Webhook } from "standardwebhooks";
import { TEST_JWT_SECRET, TEST_WEBHOOK_SECRET } from "./app.js";

export const uniqueId = (prefix = "appt") => `${prefix}-${randomUUID().slice(0, 13)}`;

const MINUTE = 60_000;

/** A signed Standard Webhooks delivery of `body`, as a scheduler sends it. */
export function signedDelivery(
  body: unknown,
  options: { id?: string; secret?: string; timestamp?: Date; raw?: string } = {},
) {
  const id = options.id ?? `msg_${randomUUID()}`;
  const timestamp = options.timestamp ?? new Date();
  const payload = options.raw ?? JSON.stringify(body);
  const signature = new Webhook(options.secret ?? TEST_WEBHOOK_SECRET).sign(id, timestamp, payload);
  return {
    id,
    payload,
    headers: {
      "content-type": "application/json",
      "webhook-id": id,
      "webhook-timestamp": String(Math.floor(timestamp.getTime() / 1000)),
      "webhook-signature": signature,
    },
  };
}

export interface ScheduleOptions {
  externalId?: string;
  /** Minutes from now to the start (negative: started already). */
  startsInMinutes?: number;
  durationMinutes?: number;
  agentId?: string;
  customerId?: string;
  revision?: number;
  /**
   * The event's settings. Without any, the event says `waitingRoom: false`:
   * most tests let the customer join first; the waiting room has its own
   * tests (test/http/waiting-room.test.ts). `null`: no settings at all (the
   * contract's defaults).
   */
  settings?: Record<string, unknown> | null;
  now?: Date;
}

/** An appointment.scheduled event with UTC times relative to now, so tests never wait for a window. */
export function scheduledEvent(options: ScheduleOptions = {}) {
  const now = options.now ?? new Date();
  const startsAt = new Date(now.getTime() + (options.startsInMinutes ?? 0) * MINUTE);
  const endsAt = new Date(startsAt.getTime() + (options.durationMinutes ?? 30) * MINUTE);
  return {
    type: "appointment.scheduled",
    data: {
      externalId: options.externalId ?? uniqueId(),
      ...(options.revision !== undefined ? { revision: options.revision } : {}),
      startsAt: startsAt.toISOString(),
      endsAt: endsAt.toISOString(),
      timeZone: "America/New_York",
      agent: { id: options.agentId ?? uniqueId("agent"), name: "Dr. Lee" },
      customer: { id: options.customerId ?? uniqueId("cust"), name: "Pat Doe" },
      ...(options.settings === null ? {} : { settings: { waitingRoom: false, ...options.settings } }),
    },
  };
}

export const cancelledEvent = (externalId: string, revision?: number) => ({
  type: "appointment.cancelled",
  data: { externalId, ...(revision !== undefined ? { revision } : {}) },
});

const signHs256 = createSigner({ algorithm: "HS256", key: TEST_JWT_SECRET });

/** A user JWT as the organisation's identity provider would issue it (HS256 with the test secret). */
export function userJwt(sub: string, options: { scope?: string; expiresInSeconds?: number; claims?: Record<string, unknown> } = {}) {
  const now = Math.floor(Date.now() / 1000);
  return signHs256({
    sub,
    iat: now,
    exp: now + (options.expiresInSeconds ?? 600),
    ...(options.scope ? { scope: options.scope } : {}),
    ...options.claims,
  });
}

export const bearer = (jwt: string) => ({ authorization: `Bearer ${jwt}` });

export const OPERATOR_SCOPES = "appointments:read tokens:introspect tokens:revoke";
