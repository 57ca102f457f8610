import { Webhook, WebhookVerificationError } from "standardwebhooks";
import { type AppointmentEvent, DEFAULT_SETTINGS } from "../domain/appointment-event.js";
import { canonicalTimeZone, resolveAppointmentTimes } from "../domain/appointment-times.js";
import { AppError, invalidRequest } from "../domain/errors.js";
import { WebhookEvent } from "../schemas/appointments.js";
import type { InboundRequest, WebhookSource } from "./source.js";

const invalidSignature = (detail: string) => new AppError("invalid_signature", detail);

const WEBHOOK_ID = /^[\x21-\x7e]{1,255}$/;

const header = (request: InboundRequest, name: string) => String(request.headers[name] ?? "");

/**
 * API.md §1: the service's own format, signed as Standard Webhooks prescribe
 * (HMAC-SHA256 over `${webhook-id}.${webhook-timestamp}.${body}`, ±5 min).
 * Any of `secrets` verifies: that is how a secret is rotated without downtime.
 */
export function standardWebhooks(secrets: string[]): WebhookSource<typeof WebhookEvent> {
  const verifiers = secrets.map((secret) => new Webhook(secret));
  return {
    name: "standard-webhooks",
    bodySchema: WebhookEvent,

    verify(request) {
      const headers = {
        "webhook-id": header(request, "webhook-id"),
        "webhook-timestamp": header(request, "webhook-timestamp"),
        "webhook-signature": header(request, "webhook-signature"),
      };
      if (!headers["webhook-id"] || !headers["webhook-timestamp"] || !headers["webhook-signature"]) {
        throw invalidSignature("The webhook-id, webhook-timestamp and webhook-signature headers are required.");
      }
      // The library signs the parsed number, so "1700000000abc" would pass its check.
      if (!/^\d{1,12}$/.test(headers["webhook-timestamp"])) {
        throw invalidSignature("The webhook-timestamp must be unix seconds.");
      }
      let lastFailure = "The signature does not match.";
      const verified = verifiers.some((verifier) => {
        try {
          verifier.verify(request.rawBody, headers, { jsonParse: false });
          return true;
        } catch (error) {
          if (!(error instanceof WebhookVerificationError)) throw error;
          lastFailure = /timestamp/i.test(error.message)
            ? "The webhook-timestamp is missing, malformed or more than 5 minutes from the server clock."
            : "The signature does not match.";
          return false;
        }
      });
      if (!verified) throw invalidSignature(lastFailure);
      if (!WEBHOOK_ID.test(headers["webhook-id"])) {
        throw invalidRequest("The webhook-id header must be 1 to 255 printable characters.");
      }
      try {
        return { body: JSON.parse(request.rawBody), deliveryId: headers["webhook-id"] };
      } catch {
        throw invalidRequest("The body is not valid JSON.");
      }
    },

    toEvent(body) {
      const { data } = body;
      const revision = data.revision ?? null;
      if (body.type === "appointment.cancelled") return { type: "appointment.cancelled", externalId: data.externalId, revision };
      return scheduled(data, revision);
    },
  };
}

/** `appointment.scheduled` needs times and both participants; reported by path like schema errors. */
function scheduled(data: WebhookEvent["data"], revision: number | null): AppointmentEvent {
  const missing = (["startsAt", "endsAt", "agent", "customer"] as const).filter((field) => data[field] === undefined);
  if (missing.length > 0) {
    throw invalidRequest(
      "An appointment.scheduled event needs startsAt, endsAt, agent and customer.",
      missing.map((field) => ({ path: `/data/${field}`, message: "is required" })),
    );
  }
  const { startsAt, endsAt, agent, customer } = data as Required<Pick<typeof data, "startsAt" | "endsAt" | "agent" | "customer">>;
  if (agent.id === customer.id) {
    throw invalidRequest("The agent and the customer must be different users.", [
      { path: "/data/customer/id", message: "must differ from /data/agent/id" },
    ]);
  }
  const times = resolveAppointmentTimes({ startsAt, endsAt, timeZone: data.timeZone });
  return {
    type: "appointment.scheduled",
    externalId: data.externalId,
    revision,
    ...times,
    timeZone: data.timeZone ? canonicalTimeZone(data.timeZone) : null,
    agent: { id: agent.id, name: agent.name ?? null },
    customer: { id: customer.id, name: customer.name ?? null },
    // Only the three known settings: anything else a scheduler sends is ignored (API.md §1).
    settings: {
      maxParticipants: data.settings?.maxParticipants ?? DEFAULT_SETTINGS.maxParticipants,
      waitingRoom: data.settings?.waitingRoom ?? DEFAULT_SETTINGS.waitingRoom,
      recording: data.settings?.recording ?? DEFAULT_SETTINGS.recording,
    },
  };
}
