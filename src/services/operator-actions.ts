import type { AppointmentsRepository } from "../db/repositories/appointments.js";
import type { AuditRepository } from "../db/repositories/audit.js";
import type { JoinTokensRepository } from "../db/repositories/join-tokens.js";
import type { OutboxRepository } from "../db/repositories/outbox.js";
import type { Sql } from "../db/sql.js";
import type { AuditEntry } from "../domain/audit-entry.js";
import { notFound } from "../domain/errors.js";
import type { AppointmentView } from "../schemas/appointments.js";
import { appointmentView } from "./appointment-view.js";

export interface OperatorActionsOptions {
  sql: Pick<Sql, "transaction">;
  appointments: Pick<AppointmentsRepository, "lock" | "setAccessBlocked">;
  tokens: Pick<JoinTokensRepository, "revokeForAppointment">;
  audit: Pick<AuditRepository, "record">;
  outbox: Pick<OutboxRepository, "record">;
  now: () => Date;
}

/**
 * API.md §5's kill switch and its undoing. Each runs under the appointment's
 * locks, the ones a join holds, so no token can be issued past it, and emits
 * its events (§9: `token.revoked` per token, `appointment.blocked` or
 * `appointment.unblocked`) in its transaction.
 */
export class OperatorActions {
  constructor(private readonly options: OperatorActionsOptions) {}

  /** Revokes every live token; with `block`, no new token until unblocked. */
  async revokeAll(
    externalId: string,
    request: { reason?: string; block?: boolean },
    actor: string,
  ): Promise<{ revoked: number; appointment: AppointmentView }> {
    const { appointments, tokens, audit, outbox } = this.options;
    return this.options.sql.transaction(async (tx) => {
      const existing = await appointments.lock({ tx, externalId });
      if (!existing) throw notFound("No such appointment.");
      const now = this.options.now();
      const block = request.block === true;
      const revocationReason = block ? "blocked" : "operator";
      const revoked = await tokens.revokeForAppointment({
        tx,
        appointmentId: existing.id,
        externalId,
        reason: revocationReason,
        userId: null,
        now,
      });
      const row = block ? await appointments.setAccessBlocked({ tx, id: existing.id, blocked: true, now }) : existing;
      const appointment = appointmentView(row);
      const reason = request.reason ?? null;
      const entries: AuditEntry[] = [
        { externalId, actor, type: "token.revoked", outcome: "revoked", detail: { reason, revocationReason, count: revoked } },
      ];
      if (block) {
        entries.push({ externalId, actor, type: "appointment.blocked", outcome: "blocked", detail: { reason } });
        // Blocking a blocked appointment again changes nothing: no second event (its revocations have theirs).
        if (!existing.accessBlocked) {
          await outbox.record({ tx, now, events: [{ type: "appointment.blocked", externalId, at: now, data: { appointment, reason } }] });
        }
      }
      await audit.record({ tx, entries, now });
      return { revoked, appointment };
    });
  }

  async unblock(externalId: string, actor: string): Promise<{ appointment: AppointmentView }> {
    const { appointments, audit, outbox } = this.options;
    return this.options.sql.transaction(async (tx) => {
      const existing = await appointments.lock({ tx, externalId });
      if (!existing) throw notFound("No such appointment.");
      const now = this.options.now();
      const row = await appointments.setAccessBlocked({ tx, id: existing.id, blocked: false, now });
      const appointment = appointmentView(row);
      const outcome = existing.accessBlocked ? "unblocked" : "was_not_blocked";
      await audit.record({ tx, entries: [{ externalId, actor, type: "appointment.unblocked", outcome }], now });
      // Nothing changed for an appointment that was not blocked: no event.
      if (existing.accessBlocked) {
        await outbox.record({ tx, now, events: [{ type: "appointment.unblocked", externalId, at: now, data: { appointment } }] });
      }
      return { appointment };
    });
  }
}
