import type { ParticipantRole } from "./join-window.js";
import { missingRoles, type TimedEventKind } from "./timed-events.js";

/**
 * The lifecycle events the service tells subscribers about (API.md §9).
 * `appointment.blocked` and `appointment.unblocked` are this service's
 * addition to the contract's list: the kill switch is a change of the
 * appointment that a gateway or a portal needs to hear about.
 */
export const EVENT_TYPES = [
  "appointment.scheduled",
  "appointment.rescheduled",
  "appointment.reassigned",
  "appointment.updated",
  "appointment.cancelled",
  "appointment.blocked",
  "appointment.unblocked",
  "appointment.no_show",
  "session.ready",
  "session.failed",
  "token.issued",
  "token.revoked",
  "join_window.opened",
  "join_window.closed",
  "participant.joined",
  "participant.left",
  "participant.ejected",
] as const;

export type EventType = (typeof EVENT_TYPES)[number];

/**
 * One event as the outbox stores it: `data` holds the type's own members;
 * `appointmentId` (the externalId), `sequence` and `at` are added on delivery
 * from the outbox row. Never a token or a secret: only `tokenId`.
 */
export interface OutboundEvent {
  type: EventType;
  externalId: string;
  /** The instant the event reports. */
  at: Date;
  data: Record<string, unknown>;
}

/** The event a timed event kind becomes, at its instant. */
export function timedEvent(
  kind: TimedEventKind,
  externalId: string,
  at: Date,
  present: ReadonlySet<ParticipantRole>,
): OutboundEvent | null {
  switch (kind) {
    case "agent_opened":
      return { type: "join_window.opened", externalId, at, data: { role: "moderator" } };
    case "customer_opened":
      return { type: "join_window.opened", externalId, at, data: { role: "participant" } };
    case "closed":
      return { type: "join_window.closed", externalId, at, data: {} };
    case "no_show": {
      const missing = missingRoles(present);
      // Both were there: nothing to report, and the kind still counts as emitted.
      return missing.length === 0 ? null : { type: "appointment.no_show", externalId, at, data: { missing } };
    }
  }
}

/** The `webhook-id` of every delivery of an event: the same for every subscription and on every retry. */
export const webhookIdOf = (eventId: string) => `evt_${eventId.replace(/-/g, "")}`;

/**
 * The body a subscriber receives (API.md §9): `{ type, timestamp, data }`,
 * where `timestamp` is when the event was written and `data` starts with
 * `appointmentId`, `sequence` and `at`, followed by the type's own members.
 */
export function deliveryBody(event: {
  type: string;
  externalId: string;
  sequence: number;
  at: Date;
  data: Record<string, unknown>;
  createdAt: Date;
}): string {
  return JSON.stringify({
    type: event.type,
    timestamp: event.createdAt.toISOString(),
    data: { appointmentId: event.externalId, sequence: event.sequence, at: event.at.toISOString(), ...event.data },
  });
}
