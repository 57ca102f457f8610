import { randomUUID } from "node:crypto";
import type { AppointmentRow } from "../db/repositories/appointment-rows.js";
import type { AppointmentsRepository } from "../db/repositories/appointments.js";
import type { JoinTokensRepository } from "../db/repositories/join-tokens.js";
import type { StoredState } from "../db/repositories/webhook-deliveries.js";
import type { Queryable } from "../db/sql.js";
import type { AppointmentEvent } from "../domain/appointment-event.js";
import type { AuditEntry } from "../domain/audit-entry.js";
import type { JoinPolicy } from "../domain/join-window.js";
import { auditOf, decide, type Plan, type Revocation, type ScheduleFields } from "../domain/lifecycle.js";
import type { VideoProvider } from "../providers/video-provider.js";
import type { AppointmentView } from "../schemas/appointments.js";
import { appointmentView } from "./appointment-view.js";

export interface LifecycleResult {
  /** 200 applied or ignored, 202 stored with the provider session still pending. */
  status: 200 | 202;
  body: { applied: boolean; appointment?: AppointmentView };
  /** For metrics. */
  outcome: "applied" | "ignored" | "tombstone";
  /** The trail of what happened, written with the delivery's answer. */
  audit: AuditEntry[];
  /** A new appointment, inserted by that same last statement. */
  newAppointment?: AppointmentRow;
  /** A new appointment whose remote session is to be created once the transaction has committed. */
  sessionToCreate?: AppointmentRow;
}

export interface AppointmentLifecycleOptions {
  appointments: Pick<AppointmentsRepository, "replace" | "cancel" | "setRevision" | "deleteTombstone" | "recordTombstone">;
  tokens: Pick<JoinTokensRepository, "revokeForAppointment">;
  provider: VideoProvider;
  policy: JoinPolicy;
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

/**
 * Carries out what the lifecycle rules (domain/lifecycle.ts) decide for one
 * scheduler event, inside the transaction of its delivery, which holds the
 * appointment's locks: revocations, the appointment's writes, a new
 * appointment's session. The delivery service writes the result.
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
    const revoked = plan.kind === "update" || plan.kind === "cancel" ? await this.revoke(tx, plan, now) : {};
    const audit = auditOf(plan, { event, deliveryId, stored, revoked });
    const { appointments } = this.options;
    const existing = stored.appointment;

    switch (plan.kind) {
      case "ignore": {
        if (!existing) return { status: 200, body: { applied: false }, outcome: "ignored", audit };
        const row =
          plan.revisionToStore === undefined
            ? existing
            : await appointments.setRevision({ tx, id: existing.id, revision: plan.revisionToStore, now });
        return { ...answer(row, false), outcome: "ignored", audit };
      }
      case "record_cancellation":
        // So that an older `scheduled` event arriving later cannot resurrect the appointment.
        await appointments.recordTombstone({ tx, externalId: event.externalId, revision: plan.revision, now });
        return { status: 200, body: { applied: false }, outcome: "tombstone", audit };
      case "create":
        if (plan.dropTombstone) await appointments.deleteTombstone({ tx, externalId: event.externalId });
        return this.create(event.externalId, plan.fields, audit, now);
      case "update": {
        const row = await appointments.replace({ tx, id: plan.appointmentId, fields: plan.fields, now });
        return { ...answer(row, true), outcome: "applied", audit };
      }
      case "cancel": {
        const row = await appointments.cancel({ tx, id: plan.appointmentId, revision: plan.revision, now });
        return { ...answer(row, true), outcome: "applied", audit };
      }
    }
  }

  /** Runs the plan's revocations in order and counts them by reason. */
  private async revoke(tx: Queryable, plan: Extract<Plan, { kind: "update" | "cancel" }>, now: Date) {
    const revoked: Partial<Record<Revocation["reason"], number>> = {};
    for (const { reason, userId } of plan.revocations) {
      const count = await this.options.tokens.revokeForAppointment({ tx, appointmentId: plan.appointmentId, reason, userId, now });
      revoked[reason] = (revoked[reason] ?? 0) + count;
    }
    return revoked;
  }

  /**
   * A new appointment. A remote provider's session is created after the
   * commit, under a lease taken here; one made in-process is created now.
   */
  private async create(externalId: string, fields: ScheduleFields, audit: AuditEntry[], now: Date): Promise<LifecycleResult> {
    const { provider } = this.options;
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
      accessBlocked: false,
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
    return { ...answer(row, true), outcome: "applied", audit, newAppointment: row, ...(remote ? { sessionToCreate: row } : {}) };
  }

  /** A session of a provider that makes them in-process (no network), inside the delivery's transaction. */
  private async createLocalSession(externalId: string, fields: ScheduleFields) {
    const { maxParticipants, waitingRoom, recording } = fields;
    const { sessionId } = await this.options.provider.createSession(
      { externalId, settings: { maxParticipants, waitingRoom, recording } },
      { deadline: Date.now() + this.options.sessionBudgetMs },
    );
    return { sessionId };
  }
}
