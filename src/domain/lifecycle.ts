import type { AppointmentEvent, ScheduledEvent } from "./appointment-event.js";
import type { AuditEntry } from "./audit-entry.js";
import { type JoinPolicy, joinWindowFor } from "./join-window.js";
import type { EventType } from "./outbound-events.js";

/**
 * What an incoming scheduler event does to what is stored (API.md §1): pure
 * rules, no I/O. `decide` returns a plan; the lifecycle service carries it
 * out in the delivery's transaction, `auditOf` says what the trail records of
 * it and `eventTypesOf` which lifecycle events it emits (§9).
 */

/** What scheduling an appointment sets: everything a scheduler's event decides. */
export interface ScheduleFields {
  status: "scheduled";
  revision: number | null;
  startsAt: Date;
  endsAt: Date;
  timeZone: string | null;
  agentId: string;
  agentName: string | null;
  customerId: string;
  customerName: string | null;
  maxParticipants: number;
  waitingRoom: boolean;
  recording: boolean;
  agentOpensAt: Date;
  customerOpensAt: Date;
  closesAt: Date;
  cancelledAt: null;
}

/** The stored appointment, as far as the rules look at it. */
export interface StoredAppointment {
  id: string;
  status: "scheduled" | "cancelled";
  revision: number | null;
  startsAt: Date;
  endsAt: Date;
  timeZone: string | null;
  agentId: string;
  agentName: string | null;
  customerId: string;
  customerName: string | null;
  maxParticipants: number;
  waitingRoom: boolean;
  recording: boolean;
}

export interface Stored {
  appointment: StoredAppointment | undefined;
  /** A cancellation recorded for an id that has no appointment. */
  tombstone: { revision: number | null } | undefined;
}

export type Change = "times" | "agent" | "customer";

/** Live tokens to revoke, with the reason they carry: of one participant (`userId`) or of everyone left (null). */
export interface Revocation {
  reason: "reassigned" | "rescheduled" | "cancelled";
  userId: string | null;
}

export type Plan =
  | { kind: "ignore"; outcome: "stale_revision" | "cancelled_earlier" | "already_cancelled"; revisionToStore?: number | null }
  | { kind: "record_cancellation"; revision: number | null }
  | { kind: "create"; fields: ScheduleFields; dropTombstone: boolean }
  | {
      kind: "update";
      appointmentId: string;
      fields: ScheduleFields;
      changes: Change[];
      /** Anything else the event changed: settings, names, the time zone. */
      detailsChanged: boolean;
      revocations: Revocation[];
      rebooked: boolean;
    }
  | { kind: "cancel"; appointmentId: string; revision: number | null; revocations: Revocation[] };

/** An event older than or equal to what is stored is acknowledged and ignored, when both carry a revision. */
const isStale = (stored: number | null | undefined, incoming: number | null | undefined) =>
  typeof stored === "number" && typeof incoming === "number" && incoming <= stored;

/** The highest revision known wins, so an unrevisioned event cannot reopen the door to older revisions. */
const newestRevision = (stored: number | null | undefined, incoming: number | null | undefined) =>
  typeof incoming !== "number" ? (stored ?? null) : typeof stored !== "number" ? incoming : Math.max(stored, incoming);

export function decide(event: AppointmentEvent, stored: Stored, policy: JoinPolicy): Plan {
  return event.type === "appointment.scheduled" ? decideScheduled(event, stored, policy) : decideCancelled(event.revision, stored);
}

function decideScheduled(event: ScheduledEvent, { appointment, tombstone }: Stored, policy: JoinPolicy): Plan {
  if (appointment && isStale(appointment.revision, event.revision)) return { kind: "ignore", outcome: "stale_revision" };
  // A tombstone keeps an older `scheduled` event from resurrecting a cancelled id; a newer one books it again.
  if (!appointment && tombstone && isStale(tombstone.revision, event.revision)) return { kind: "ignore", outcome: "cancelled_earlier" };

  const fields: ScheduleFields = {
    status: "scheduled",
    revision: newestRevision(appointment ? appointment.revision : (tombstone?.revision ?? null), event.revision),
    startsAt: event.startsAt,
    endsAt: event.endsAt,
    timeZone: event.timeZone,
    agentId: event.agent.id,
    agentName: event.agent.name,
    customerId: event.customer.id,
    customerName: event.customer.name,
    ...event.settings,
    ...joinWindowFor(event, policy),
    cancelledAt: null,
  };
  if (!appointment) return { kind: "create", fields, dropTombstone: tombstone !== undefined };

  const changes = changesBetween(appointment, fields);
  const revocations: Revocation[] = [];
  // Replaced participants lose their tokens as reassigned; whoever is left loses theirs if the time moved.
  if (changes.includes("agent")) revocations.push({ reason: "reassigned", userId: appointment.agentId });
  if (changes.includes("customer")) revocations.push({ reason: "reassigned", userId: appointment.customerId });
  if (changes.includes("times")) revocations.push({ reason: "rescheduled", userId: null });
  return {
    kind: "update",
    appointmentId: appointment.id,
    fields,
    changes,
    detailsChanged: detailsDiffer(appointment, fields),
    revocations,
    rebooked: appointment.status === "cancelled",
  };
}

function decideCancelled(revision: number | null, { appointment, tombstone }: Stored): Plan {
  if (!appointment) {
    if (tombstone && isStale(tombstone.revision, revision)) return { kind: "ignore", outcome: "stale_revision" };
    return { kind: "record_cancellation", revision: newestRevision(tombstone?.revision, revision) };
  }
  if (isStale(appointment.revision, revision)) {
    return { kind: "ignore", outcome: appointment.status === "cancelled" ? "already_cancelled" : "stale_revision" };
  }
  if (appointment.status === "cancelled") {
    return { kind: "ignore", outcome: "already_cancelled", revisionToStore: newestRevision(appointment.revision, revision) };
  }
  return {
    kind: "cancel",
    appointmentId: appointment.id,
    revision: newestRevision(appointment.revision, revision),
    revocations: [{ reason: "cancelled", userId: null }],
  };
}

function changesBetween(stored: StoredAppointment, next: Pick<ScheduleFields, "startsAt" | "endsAt" | "agentId" | "customerId">) {
  const changes: Change[] = [];
  if (stored.startsAt.getTime() !== next.startsAt.getTime() || stored.endsAt.getTime() !== next.endsAt.getTime()) {
    changes.push("times");
  }
  if (stored.agentId !== next.agentId) changes.push("agent");
  if (stored.customerId !== next.customerId) changes.push("customer");
  return changes;
}

const DETAILS = ["timeZone", "agentName", "customerName", "maxParticipants", "waitingRoom", "recording"] as const;

function detailsDiffer(stored: StoredAppointment, next: ScheduleFields): boolean {
  return DETAILS.some((field) => stored[field] !== next[field]);
}

/**
 * The appointment events a plan emits (§9), each with the Appointment after
 * the change: a booking (also of a cancelled id, again) is `scheduled`; moved
 * times are `rescheduled`, a changed agent or customer `reassigned` (both when
 * both changed); a change of nothing else but settings, names or the time
 * zone is `updated`. An event that changes nothing emits nothing.
 */
export function eventTypesOf(plan: Plan): EventType[] {
  switch (plan.kind) {
    case "create":
      return ["appointment.scheduled"];
    case "cancel":
      return ["appointment.cancelled"];
    case "update": {
      if (plan.rebooked) return ["appointment.scheduled"];
      const types: EventType[] = [];
      if (plan.changes.includes("times")) types.push("appointment.rescheduled");
      if (plan.changes.includes("agent") || plan.changes.includes("customer")) types.push("appointment.reassigned");
      if (types.length === 0 && plan.detailsChanged) types.push("appointment.updated");
      return types;
    }
    case "ignore":
    case "record_cancellation":
      return [];
  }
}

/** The plan's audit entries, once carried out: `revoked` counts the tokens each revocation reason took. */
export function auditOf(
  plan: Plan,
  context: {
    event: AppointmentEvent;
    deliveryId: string;
    stored: Stored;
    revoked: Partial<Record<Revocation["reason"], number>>;
  },
): AuditEntry[] {
  const { event, deliveryId, stored } = context;
  const base = { externalId: event.externalId, actor: "scheduler" };
  const detail = { webhookId: deliveryId, event: event.type, revision: event.revision };
  const revocations = (Object.entries(context.revoked) as [Revocation["reason"], number][])
    .filter(([, count]) => count > 0)
    .map(([reason, count]): AuditEntry => ({ ...base, actor: "system", type: "token.revoked", outcome: "revoked", detail: { reason, count } }));

  switch (plan.kind) {
    case "ignore": {
      const why =
        event.type === "appointment.cancelled"
          ? detail
          : plan.outcome === "stale_revision"
            ? { ...detail, storedRevision: stored.appointment?.revision ?? null }
            : { ...detail, cancelledRevision: stored.tombstone?.revision ?? null };
      return [{ ...base, type: "webhook.ignored", outcome: plan.outcome, detail: why }];
    }
    case "record_cancellation":
      return [{ ...base, type: "webhook.ignored", outcome: "unknown_appointment", detail }];
    case "create":
      return [{ ...base, type: "webhook.applied", outcome: "created", detail }];
    case "update":
      return [
        { ...base, type: "webhook.applied", outcome: plan.rebooked ? "rebooked" : "updated", detail: { ...detail, changes: plan.changes } },
        ...revocations,
      ];
    case "cancel":
      return [{ ...base, type: "webhook.applied", outcome: "cancelled", detail }, ...revocations];
  }
}
