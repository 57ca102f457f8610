import { randomUUID } from "node:crypto";
import type { AppointmentRow } from "../db/repositories/appointment-rows.js";
import type { AppointmentsRepository } from "../db/repositories/appointments.js";
import type { JoinTokensRepository } from "../db/repositories/join-tokens.js";
import type { StoredState } from "../db/repositories/webhook-deliveries.js";
import type { Queryable } from "../db/sql.js";
import type { AppointmentEvent } from "../domain/appointment-event.js";
import type { AuditEntry } from "../domain/audit-entry.js";
import type { JoinPolicy } from "../domain/join-window.js";
import { auditOf, decide, eventTypesOf, type Plan, type Revocation, type ScheduleFields } from "../domain/lifecycle.js";
import type { OutboundEvent } from "../domain/outbound-events.js";
import {
  isTimedEventKind,
  type TimedEventPolicy,
  timedEventState,
  timedEventsAfterReschedule,
} from "../domain/timed-events.js";
import type { VideoProvider } from "../providers/video-provider.js";
import type { AppointmentView } from "../schemas/appointments.js";
import { appointmentView } from "./appointment-view.js";

/** A new appointment's presence columns: no source has reported anyone. */
const NOBODY_PRESENT = {
  agentPresent: false,
  agentPresentSince: null,
  agentPresenceAt: null,
  customerPresent: false,
  customerPresentSince: null,
  customerPresenceAt: null,
} as const;

export interface LifecycleResult {
  /** 200 applied or ignored, 202 stored with the provider session still pending. */
  status: 200 | 202;
  body: { applied: boolean; appointment?: AppointmentView };
  /** For metrics. */
  outcome: "applied" | "ignored" | "tombstone";
  /** The trail of what happened, written with the delivery's answer. */
  audit: AuditEntry[];
  /** The lifecycle events of the change (§9), written with the delivery's answer. */
  events: OutboundEvent[];
  /** A new appointment, inserted by that same last statement. */
  newAppointment?: AppointmentRow;
  /** A new appointment whose remote session is to be created once the transaction has committed. */
  sessionToCreate?: AppointmentRow;
}

export interface AppointmentLifecycleOptions {
  appointments: Pick<AppointmentsRepository, "replace" | "cancel" | "setRevision" | "deleteTombstone" | "recordTombstone">;
  tokens: Pick<JoinTokensRepository, "revokeForAppointment">;
  provider: VideoProvider;
  policy: JoinPolicy & TimedEventPolicy;
  /** How long a new appointment's session is reserved for the delivery's own attempt. */
  sessionLeaseMs: number;
  /** Time an in-process session creation may take (inside the webhook's answer bound). */
  sessionBudgetMs: number;
}

export const statusOf = (row: Pick<AppointmentRow, "sessionStatus">): 200 | 202 => (row.sessionStatus === "pending" ? 202 : 200);

const answer = (row: AppointmentRow, applied: boolean) => ({
  status: statusOf(row),
  body: { applied, appointment: appointmentView(row) },
});

/** The plan's appointment events, each with the Appointment after the change. */
const appointmentEvents = (plan: Plan, appointment: AppointmentView, now: Date): OutboundEvent[] =>
  eventTypesOf(plan).map((type) => ({ type, externalId: appointment.externalId, at: now, data: { appointment } }));

const storedEmitted = (row: AppointmentRow) => row.timedEventsEmitted.filter(isTimedEventKind);

/**
 * Carries out what the lifecycle rules (domain/lifecycle.ts) decide for one
 * scheduler event, inside the transaction of its delivery, which holds the
 * appointment's locks: revocations, the appointment's writes (with its timed
 * events moved as domain/timed-events.ts says), a new appointment's session.
 * The delivery service writes the result, with its lifecycle events.
 */
export class AppointmentLifecycle {
  constructor(private readonly options: AppointmentLifecycleOptions) {}

  async apply({
    tx,
    event,
    stored,
    deliveryId,
    now,
  }: {
    tx: Queryable;
    event: AppointmentEvent;
    stored: StoredState;
    deliveryId: string;
    now: Date;
  }): Promise<LifecycleResult> {
    const plan = decide(event, stored, this.options.policy);
    const revoked = plan.kind === "update" || plan.kind === "cancel" ? await this.revoke(tx, plan, event.externalId, now) : {};
    const audit = auditOf(plan, { event, deliveryId, stored, revoked });
    const { appointments, policy } = this.options;
    const existing = stored.appointment;

    switch (plan.kind) {
      case "ignore": {
        if (!existing) return { status: 200, body: { applied: false }, outcome: "ignored", audit, events: [] };
        const row =
          plan.revisionToStore === undefined
            ? existing
            : await appointments.setRevision({ tx, id: existing.id, revision: plan.revisionToStore, now });
        return { ...answer(row, false), outcome: "ignored", audit, events: [] };
      }
      case "record_cancellation":
        // So that an older `scheduled` event arriving later cannot resurrect the appointment.
        await appointments.recordTombstone({ tx, externalId: event.externalId, revision: plan.revision, now });
        return { status: 200, body: { applied: false }, outcome: "tombstone", audit, events: [] };
      case "create":
        if (plan.dropTombstone) await appointments.deleteTombstone({ tx, externalId: event.externalId });
        return this.create(event.externalId, plan, audit, now);
      case "update": {
        const emitted = existing ? storedEmitted(existing) : [];
        const timers =
          plan.changes.includes("times") || plan.rebooked
            ? timedEventsAfterReschedule(plan.fields, emitted, now, policy)
            : timedEventState(plan.fields, emitted, policy);
        const row = await appointments.replace({ tx, id: plan.appointmentId, fields: plan.fields, timers, now });
        const result = answer(row, true);
        return { ...result, outcome: "applied", audit, events: appointmentEvents(plan, result.body.appointment, now) };
      }
      case "cancel": {
        const row = await appointments.cancel({ tx, id: plan.appointmentId, revision: plan.revision, now });
        const result = answer(row, true);
        return { ...result, outcome: "applied", audit, events: appointmentEvents(plan, result.body.appointment, now) };
      }
    }
  }

  /** Runs the plan's revocations in order and counts them by reason. */
  private async revoke(tx: Queryable, plan: Extract<Plan, { kind: "update" | "cancel" }>, externalId: string, now: Date) {
    const revoked: Partial<Record<Revocation["reason"], number>> = {};
    for (const { reason, userId } of plan.revocations) {
      const count = await this.options.tokens.revokeForAppointment({
        tx,
        appointmentId: plan.appointmentId,
        externalId,
        reason,
        userId,
        now,
      });
      revoked[reason] = (revoked[reason] ?? 0) + count;
    }
    return revoked;
  }

  /**
   * A new appointment, with all its timed events ahead of it (those whose
   * instant has passed are due at once). A remote provider's session is
   * created after the commit, under a lease taken here; one made in-process
   * is created now, and is ready with the appointment.
   */
  private async create(
    externalId: string,
    plan: Extract<Plan, { kind: "create" }>,
    audit: AuditEntry[],
    now: Date,
  ): Promise<LifecycleResult> {
    const { provider, policy } = this.options;
    const { fields } = plan;
    const remote = provider.remote.sessions;
    const session = remote
      ? { sessionId: null, status: "pending" as const, nextAttemptAt: now, claimedUntil: new Date(now.getTime() + this.options.sessionLeaseMs) }
      : { ...(await this.createLocalSession(externalId, fields)), status: "ready" as const, nextAttemptAt: null, claimedUntil: null };
    const row: AppointmentRow = {
      ...fields,
      id: randomUUID(),
      externalId,
      provider: provider.name,
      sessionId: session.sessionId,
      sessionStatus: session.status,
      sessionAttempts: remote ? 0 : 1,
      sessionNextAttemptAt: session.nextAttemptAt,
      sessionLastError: null,
      sessionClaimedUntil: session.claimedUntil,
      sessionRoomUrl: null,
      sessionClosesAt: null,
      ...NOBODY_PRESENT,
      accessBlocked: false,
      ...timedEventState(fields, [], policy),
      createdAt: now,
      updatedAt: now,
    };
    if (session.sessionId !== null) {
      audit.push({
        externalId,
        actor: "system",
        at: now,
        type: "session.created",
        outcome: "ready",
        detail: { provider: provider.name, sessionId: session.sessionId },
      });
    }
    const result = answer(row, true);
    const { appointment } = result.body;
    const events = appointmentEvents(plan, appointment, now);
    if (session.sessionId !== null) events.push({ type: "session.ready", externalId, at: now, data: { session: appointment.session } });
    return { ...result, outcome: "applied", audit, events, newAppointment: row, ...(remote ? { sessionToCreate: row } : {}) };
  }

  /** A session of a provider that makes them in-process (no network), inside the delivery's transaction. */
  private async createLocalSession(externalId: string, fields: ScheduleFields) {
    const { maxParticipants, waitingRoom, recording, closesAt } = fields;
    const { sessionId } = await this.options.provider.createSession(
      { externalId, settings: { maxParticipants, waitingRoom, recording }, closesAt },
      { deadline: Date.now() + this.options.sessionBudgetMs },
    );
    return { sessionId };
  }
}
