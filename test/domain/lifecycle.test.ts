import { describe, expect, it } from "vitest";
import { type AppointmentEvent, DEFAULT_SETTINGS, type ScheduledEvent } from "../../src/domain/appointment-event.js";
import { auditOf, decide, eventTypesOf, type Plan, type Stored, type StoredAppointment } from "../../src/domain/lifecycle.js";

const policy = { earlyJoinMinutesAgent: 10, earlyJoinMinutesCustomer: 5, graceMinutes: 15 };
const at = (iso: string) => new Date(iso);

const scheduled = (overrides: Partial<ScheduledEvent> = {}): ScheduledEvent => ({
  type: "appointment.scheduled",
  externalId: "appt-1",
  revision: 3,
  startsAt: at("2026-11-23T14:00:00.000Z"),
  endsAt: at("2026-11-23T14:30:00.000Z"),
  timeZone: "America/New_York",
  agent: { id: "agent", name: "Dr. Lee" },
  customer: { id: "cust", name: "Pat Doe" },
  settings: DEFAULT_SETTINGS,
  ...overrides,
});
const cancelled = (revision: number | null = 3): AppointmentEvent => ({ type: "appointment.cancelled", externalId: "appt-1", revision });

const stored = (overrides: Partial<StoredAppointment> = {}): StoredAppointment => ({
  id: "a1",
  status: "scheduled",
  revision: 2,
  startsAt: at("2026-11-23T14:00:00.000Z"),
  endsAt: at("2026-11-23T14:30:00.000Z"),
  timeZone: "America/New_York",
  agentId: "agent",
  agentName: "Dr. Lee",
  customerId: "cust",
  customerName: "Pat Doe",
  ...DEFAULT_SETTINGS,
  ...overrides,
});
const nothing: Stored = { appointment: undefined, tombstone: undefined };
const withAppointment = (overrides: Partial<StoredAppointment> = {}): Stored => ({ appointment: stored(overrides), tombstone: undefined });
const withTombstone = (revision: number | null): Stored => ({ appointment: undefined, tombstone: { revision } });

const kindOf = (plan: Plan) => plan.kind;

describe("a scheduled event", () => {
  it("creates an unknown appointment with its join window, settings and participants", () => {
    const plan = decide(scheduled(), nothing, policy);
    expect(plan).toEqual({
      kind: "create",
      dropTombstone: false,
      fields: {
        status: "scheduled",
        revision: 3,
        startsAt: at("2026-11-23T14:00:00.000Z"),
        endsAt: at("2026-11-23T14:30:00.000Z"),
        timeZone: "America/New_York",
        agentId: "agent",
        agentName: "Dr. Lee",
        customerId: "cust",
        customerName: "Pat Doe",
        maxParticipants: 2,
        waitingRoom: true,
        recording: false,
        agentOpensAt: at("2026-11-23T13:50:00.000Z"),
        customerOpensAt: at("2026-11-23T13:55:00.000Z"),
        closesAt: at("2026-11-23T14:45:00.000Z"),
        cancelledAt: null,
      },
    });
  });

  it("is ignored when not newer than the stored appointment, and applies when newer or unrevisioned", () => {
    expect(decide(scheduled({ revision: 2 }), withAppointment({ revision: 2 }), policy)).toEqual({ kind: "ignore", outcome: "stale_revision" });
    expect(decide(scheduled({ revision: 1 }), withAppointment({ revision: 2 }), policy).kind).toBe("ignore");
    expect(kindOf(decide(scheduled({ revision: 3 }), withAppointment({ revision: 2 }), policy))).toBe("update");
    expect(kindOf(decide(scheduled({ revision: null }), withAppointment({ revision: 2 }), policy))).toBe("update");
    expect(kindOf(decide(scheduled({ revision: 1 }), withAppointment({ revision: null }), policy))).toBe("update");
  });

  it("keeps the highest revision: an unrevisioned replacement stores the old one", () => {
    const plan = decide(scheduled({ revision: null }), withAppointment({ revision: 7 }), policy);
    expect(plan.kind === "update" && plan.fields.revision).toBe(7);
  });

  it("after a recorded cancellation of an unknown id: ignored when older, creates (dropping the record) when newer", () => {
    expect(decide(scheduled({ revision: 3 }), withTombstone(3), policy)).toEqual({ kind: "ignore", outcome: "cancelled_earlier" });
    const plan = decide(scheduled({ revision: 4 }), withTombstone(3), policy);
    expect(plan).toMatchObject({ kind: "create", dropTombstone: true, fields: { revision: 4 } });
    expect(decide(scheduled({ revision: null }), withTombstone(3), policy)).toMatchObject({ kind: "create", fields: { revision: 3 } });
  });

  it("reschedules: new times revoke every live token as rescheduled", () => {
    const plan = decide(scheduled({ startsAt: at("2026-11-23T15:00:00.000Z"), endsAt: at("2026-11-23T15:30:00.000Z") }), withAppointment(), policy);
    expect(plan).toMatchObject({ kind: "update", appointmentId: "a1", changes: ["times"], revocations: [{ reason: "rescheduled", userId: null }] });
    const endOnly = decide(scheduled({ endsAt: at("2026-11-23T14:40:00.000Z") }), withAppointment(), policy);
    expect(endOnly).toMatchObject({ changes: ["times"] });
  });

  it("reassigns: the replaced participant's tokens go as reassigned, the others stay", () => {
    expect(decide(scheduled({ agent: { id: "agent-2", name: null } }), withAppointment(), policy)).toMatchObject({
      changes: ["agent"],
      revocations: [{ reason: "reassigned", userId: "agent" }],
    });
    expect(decide(scheduled({ customer: { id: "cust-2", name: null } }), withAppointment(), policy)).toMatchObject({
      changes: ["customer"],
      revocations: [{ reason: "reassigned", userId: "cust" }],
    });
  });

  it("a reschedule with reassignment revokes the replaced ones as reassigned first, then everyone left as rescheduled", () => {
    const plan = decide(
      scheduled({ startsAt: at("2026-11-23T15:00:00.000Z"), endsAt: at("2026-11-23T15:30:00.000Z"), agent: { id: "agent-2", name: null }, customer: { id: "cust-2", name: null } }),
      withAppointment(),
      policy,
    );
    expect(plan).toMatchObject({
      changes: ["times", "agent", "customer"],
      revocations: [
        { reason: "reassigned", userId: "agent" },
        { reason: "reassigned", userId: "cust" },
        { reason: "rescheduled", userId: null },
      ],
    });
  });

  it("changes of names or settings alone revoke nothing", () => {
    const plan = decide(
      scheduled({ agent: { id: "agent", name: "Dr. Okafor" }, settings: { maxParticipants: 3, waitingRoom: false, recording: true } }),
      withAppointment(),
      policy,
    );
    expect(plan).toMatchObject({ kind: "update", changes: [], revocations: [], fields: { agentName: "Dr. Okafor", maxParticipants: 3 } });
  });

  it("books a cancelled appointment again (rebooked) when newer", () => {
    expect(decide(scheduled({ revision: 5 }), withAppointment({ status: "cancelled", revision: 4 }), policy)).toMatchObject({
      kind: "update",
      rebooked: true,
      fields: { status: "scheduled", cancelledAt: null },
    });
    expect(decide(scheduled({ revision: 4 }), withAppointment({ status: "cancelled", revision: 4 }), policy).kind).toBe("ignore");
  });
});

describe("a cancelled event", () => {
  it("records the cancellation of an unknown id, with the newest revision", () => {
    expect(decide(cancelled(3), nothing, policy)).toEqual({ kind: "record_cancellation", revision: 3 });
    expect(decide(cancelled(null), withTombstone(5), policy)).toEqual({ kind: "record_cancellation", revision: 5 });
    expect(decide(cancelled(6), withTombstone(5), policy)).toEqual({ kind: "record_cancellation", revision: 6 });
    expect(decide(cancelled(5), withTombstone(5), policy)).toEqual({ kind: "ignore", outcome: "stale_revision" });
  });

  it("cancels a scheduled appointment, revoking every live token as cancelled", () => {
    expect(decide(cancelled(3), withAppointment({ revision: 2 }), policy)).toEqual({
      kind: "cancel",
      appointmentId: "a1",
      revision: 3,
      revocations: [{ reason: "cancelled", userId: null }],
    });
    expect(decide(cancelled(null), withAppointment({ revision: 2 }), policy)).toMatchObject({ kind: "cancel", revision: 2 });
  });

  it("is ignored when stale, or when already cancelled (whose revision then moves on)", () => {
    expect(decide(cancelled(2), withAppointment({ revision: 2 }), policy)).toEqual({ kind: "ignore", outcome: "stale_revision" });
    expect(decide(cancelled(2), withAppointment({ revision: 2, status: "cancelled" }), policy)).toEqual({
      kind: "ignore",
      outcome: "already_cancelled",
    });
    expect(decide(cancelled(4), withAppointment({ revision: 2, status: "cancelled" }), policy)).toEqual({
      kind: "ignore",
      outcome: "already_cancelled",
      revisionToStore: 4,
    });
  });
});

describe("the lifecycle events of each outcome (API.md §9)", () => {
  const typesOf = (event: AppointmentEvent, stored: Stored) => eventTypesOf(decide(event, stored, policy));

  it("a booking is scheduled, also of a cancelled id booked again", () => {
    expect(typesOf(scheduled(), nothing)).toEqual(["appointment.scheduled"]);
    expect(typesOf(scheduled({ revision: 5 }), withTombstone(4))).toEqual(["appointment.scheduled"]);
    expect(typesOf(scheduled({ revision: 5 }), withAppointment({ status: "cancelled", revision: 4 }))).toEqual(["appointment.scheduled"]);
  });

  it("moved times are rescheduled, a new participant reassigned, both when both changed", () => {
    const later = { startsAt: at("2026-11-23T15:00:00.000Z"), endsAt: at("2026-11-23T15:30:00.000Z") };
    expect(typesOf(scheduled(later), withAppointment())).toEqual(["appointment.rescheduled"]);
    expect(typesOf(scheduled({ customer: { id: "cust-2", name: "Sam" } }), withAppointment())).toEqual(["appointment.reassigned"]);
    expect(typesOf(scheduled({ ...later, agent: { id: "agent-2", name: null } }), withAppointment())).toEqual([
      "appointment.rescheduled",
      "appointment.reassigned",
    ]);
  });

  it("settings, names or the time zone alone are updated; an event that changes nothing emits nothing", () => {
    expect(typesOf(scheduled({ settings: { ...DEFAULT_SETTINGS, maxParticipants: 3 } }), withAppointment())).toEqual([
      "appointment.updated",
    ]);
    expect(typesOf(scheduled({ agent: { id: "agent", name: "Dr. Okafor" } }), withAppointment())).toEqual(["appointment.updated"]);
    expect(typesOf(scheduled({ timeZone: "Europe/Paris" }), withAppointment())).toEqual(["appointment.updated"]);
    expect(typesOf(scheduled(), withAppointment())).toEqual([]);
  });

  it("a cancellation is cancelled; an ignored event or a recorded cancellation of an unknown id emits nothing", () => {
    expect(typesOf(cancelled(3), withAppointment())).toEqual(["appointment.cancelled"]);
    expect(typesOf(cancelled(3), nothing)).toEqual([]);
    expect(typesOf(scheduled({ revision: 2 }), withAppointment())).toEqual([]);
    expect(typesOf(cancelled(4), withAppointment({ status: "cancelled", revision: 3 }))).toEqual([]);
  });
});

describe("the audit trail of each outcome", () => {
  const deliveryId = "msg_1";
  const trail = (event: AppointmentEvent, state: Stored, revoked: Record<string, number> = {}) =>
    auditOf(decide(event, state, policy), { event, deliveryId, stored: state, revoked });

  it("says what was applied, with the delivery, the event and its revision", () => {
    expect(trail(scheduled(), nothing)).toEqual([
      {
        externalId: "appt-1",
        actor: "scheduler",
        type: "webhook.applied",
        outcome: "created",
        detail: { webhookId: "msg_1", event: "appointment.scheduled", revision: 3 },
      },
    ]);
    expect(trail(scheduled(), withAppointment({ status: "cancelled" }))[0]).toMatchObject({ outcome: "rebooked", detail: { changes: [] } });
  });

  it("lists the revocations by reason, only those that took a token, as the system's", () => {
    const event = scheduled({ startsAt: at("2026-11-23T15:00:00.000Z"), endsAt: at("2026-11-23T15:30:00.000Z"), agent: { id: "agent-2", name: null } });
    expect(trail(event, withAppointment(), { reassigned: 1, rescheduled: 0 })).toEqual([
      expect.objectContaining({ type: "webhook.applied", outcome: "updated", detail: expect.objectContaining({ changes: ["times", "agent"] }) }),
      { externalId: "appt-1", actor: "system", type: "token.revoked", outcome: "revoked", detail: { reason: "reassigned", count: 1 } },
    ]);
    expect(trail(cancelled(3), withAppointment(), { cancelled: 2 })).toEqual([
      expect.objectContaining({ type: "webhook.applied", outcome: "cancelled" }),
      expect.objectContaining({ actor: "system", type: "token.revoked", detail: { reason: "cancelled", count: 2 } }),
    ]);
  });

  it("says why an event was ignored, with the revision it lost to", () => {
    expect(trail(scheduled({ revision: 2 }), withAppointment({ revision: 2 }))).toEqual([
      expect.objectContaining({ type: "webhook.ignored", outcome: "stale_revision", detail: expect.objectContaining({ storedRevision: 2 }) }),
    ]);
    expect(trail(scheduled({ revision: 2 }), withTombstone(3))).toEqual([
      expect.objectContaining({ type: "webhook.ignored", outcome: "cancelled_earlier", detail: expect.objectContaining({ cancelledRevision: 3 }) }),
    ]);
    expect(trail(cancelled(3), nothing)).toEqual([
      expect.objectContaining({
        type: "webhook.ignored",
        outcome: "unknown_appointment",
        detail: { webhookId: "msg_1", event: "appointment.cancelled", revision: 3 },
      }),
    ]);
    expect(trail(cancelled(4), withAppointment({ status: "cancelled" }))[0]).toMatchObject({ outcome: "already_cancelled" });
  });
});
