import { isDatabaseUnavailable } from "../db/errors.js";
import type { AppointmentRow } from "../db/repositories/appointment-rows.js";
import type { AuditRepository } from "../db/repositories/audit.js";
import type { OutboxRepository } from "../db/repositories/outbox.js";
import type { SessionsRepository } from "../db/repositories/sessions.js";
import type { Queryable, Sql } from "../db/sql.js";
import type { AuditEntry } from "../domain/audit-entry.js";
import type { OutboundEvent } from "../domain/outbound-events.js";
import { type CallBudget, ProviderUnavailableError, type VideoProvider } from "../providers/video-provider.js";
import { appointmentView } from "./appointment-view.js";
import { runEvery } from "./background-loop.js";

export interface SessionServiceOptions {
  sql: Pick<Sql, "transaction">;
  sessions: SessionsRepository;
  audit: Pick<AuditRepository, "record">;
  outbox: Pick<OutboxRepository, "record">;
  provider: VideoProvider;
  now: () => Date;
  /** How long a claim on a pending session lasts: longer than any one creation attempt. */
  leaseMs: number;
  onError?: (error: unknown, externalId: string) => void;
  /** The reconciler's passes failing because the database is unreachable, and succeeding again. */
  databaseOutage?: { failed(error: unknown): void; succeeded(): void };
}

export type SessionOutcome = "ready" | "pending" | "failed";

const BASE_BACKOFF_MS = 5_000;
const MAX_BACKOFF_MS = 5 * 60_000;

/** `session.ready` or `session.failed` (§9), with the session as the Appointment shows it. */
const sessionEvent = (type: "session.ready" | "session.failed", row: AppointmentRow, at: Date): OutboundEvent => ({
  type,
  externalId: row.externalId,
  at,
  data: { session: appointmentView(row).session },
});

/** Whether a ready session's own expiry lags behind the appointment's closesAt (only providers whose rooms expire). */
export function needsExpirySync(provider: Pick<VideoProvider, "updateSession">, row: AppointmentRow): boolean {
  return (
    provider.updateSession !== undefined &&
    row.sessionStatus === "ready" &&
    row.sessionClosesAt?.getTime() !== row.closesAt.getTime()
  );
}

/** Exponential backoff with ±20 % jitter, so replicas retrying after an outage spread out. */
function retryDelayMs(attempts: number): number {
  const base = Math.min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** Math.max(0, attempts - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/**
 * Creates provider sessions for appointments stored while the provider was
 * unreachable (API.md §1, §8). A database lease decides who may call the
 * provider for an appointment at any moment, so a webhook, a join request
 * and the reconcilers of several replicas never create two sessions for one
 * appointment; the provider call itself runs outside any transaction. Each
 * outcome is written with its audit entry and its event in one transaction.
 */
export class SessionService {
  constructor(private readonly options: SessionServiceOptions) {}

  /** Takes the lease on a pending session; false when it is not pending or someone else holds it. */
  async claim(appointmentId: string): Promise<boolean> {
    const now = this.options.now();
    return this.options.sessions.claim({ id: appointmentId, now, until: new Date(now.getTime() + this.options.leaseMs) });
  }

  /** One creation attempt by the lease holder; records the outcome and releases the lease. */
  async attempt(appointment: AppointmentRow, budget: CallBudget): Promise<SessionOutcome> {
    const { sessions, provider } = this.options;
    try {
      const closesAt = appointment.closesAt;
      const { sessionId, roomUrl } = await provider.createSession(
        {
          externalId: appointment.externalId,
          settings: {
            maxParticipants: appointment.maxParticipants,
            waitingRoom: appointment.waitingRoom,
            recording: appointment.recording,
          },
          closesAt,
        },
        budget,
      );
      const now = this.options.now();
      await this.options.sql.transaction(async (tx) => {
        const row = await sessions.markReady({ tx, id: appointment.id, sessionId, roomUrl: roomUrl ?? null, closesAt });
        if (!row) return;
        await this.report(tx, now, [
          {
            externalId: appointment.externalId,
            actor: "system",
            type: "session.created",
            outcome: "ready",
            detail: { provider: provider.name, sessionId, attempt: row.sessionAttempts },
          },
        ], [sessionEvent("session.ready", row, now)]);
      });
      return "ready";
    } catch (error) {
      // Nothing can be recorded without the database; the lease runs out and the attempt is made again.
      if (isDatabaseUnavailable(error)) throw error;
      if (!(error instanceof ProviderUnavailableError)) this.options.onError?.(error, appointment.externalId);
      return this.recordFailure(appointment, error instanceof Error ? error.message : String(error));
    }
  }

  private async recordFailure(appointment: AppointmentRow, reason: string): Promise<SessionOutcome> {
    const { sessions, provider } = this.options;
    const now = this.options.now();
    const attempts = appointment.sessionAttempts + 1;
    const failed = now.getTime() >= appointment.closesAt.getTime();
    const shortReason = reason.slice(0, 500);
    await this.options.sql.transaction(async (tx) => {
      const row = await sessions.markFailedAttempt({
        tx,
        id: appointment.id,
        attempts,
        nextAttemptAt: failed ? null : new Date(now.getTime() + retryDelayMs(attempts)),
        reason: shortReason,
      });
      // A failed attempt that will be retried is no event; only the session's failure for good is.
      await this.report(tx, now, [
        {
          externalId: appointment.externalId,
          actor: "system",
          type: "session.failed",
          outcome: failed ? "failed" : "pending",
          detail: { provider: provider.name, reason: shortReason, attempt: attempts },
        },
      ], row && failed ? [sessionEvent("session.failed", row, now)] : []);
    });
    return failed ? "failed" : "pending";
  }

  /** A session outcome's audit entries and events, in the transaction that writes the outcome. */
  private async report(tx: Queryable, now: Date, entries: AuditEntry[], events: OutboundEvent[]): Promise<void> {
    await this.options.audit.record({ tx, now, entries });
    await this.options.outbox.record({ tx, now, events });
  }

  /**
   * For a join request that found the session pending (API.md §1: "again on
   * the first join-token request"): one more attempt inline if nobody else is
   * making one. Returns once its session is ready; otherwise throws
   * ProviderUnavailableError with how long to wait.
   */
  async ensureReady(appointmentId: string, budget: CallBudget): Promise<void> {
    const { sessions } = this.options;
    if (await this.claim(appointmentId)) {
      const row = await sessions.byId({ id: appointmentId });
      if (row && (await this.attempt(row, budget)) === "ready") return;
    }
    const row = await sessions.byId({ id: appointmentId });
    if (row?.sessionStatus === "ready") return;
    const wait = row?.sessionNextAttemptAt
      ? Math.ceil((row.sessionNextAttemptAt.getTime() - this.options.now().getTime()) / 1000)
      : 2;
    throw new ProviderUnavailableError("The video session could not be created yet.", Math.min(60, Math.max(1, wait)));
  }

  /**
   * A provider whose rooms expire (Daily) keeps the room's expiry at the
   * appointment's closesAt: after a reschedule the room is moved before
   * anyone is given a token for the new times (API.md §8: a room that still
   * expires at the old time locks everyone out). Idempotent, so concurrent
   * callers need no lease. Throws ProviderUnavailableError when the provider
   * cannot be reached.
   */
  async syncExpiry(appointment: AppointmentRow, budget: CallBudget): Promise<void> {
    const { provider, sessions } = this.options;
    if (!needsExpirySync(provider, appointment) || !provider.updateSession || !appointment.sessionId) return;
    await provider.updateSession({ sessionId: appointment.sessionId, closesAt: appointment.closesAt }, budget);
    await sessions.recordExpiry({ id: appointment.id, closesAt: appointment.closesAt });
  }

  /**
   * One pass of the background reconciler: marks sessions whose join window
   * has closed as failed, then claims due pending sessions with
   * FOR UPDATE SKIP LOCKED (replicas take disjoint rows) and attempts each.
   */
  async reconcileOnce(budgetMs: number, batch = 10): Promise<number> {
    const { sessions, provider } = this.options;
    const now = this.options.now();
    await this.options.sql.transaction(async (tx) => {
      const expired = await sessions.failOverdue({ tx, now });
      await this.report(
        tx,
        now,
        expired.map((row) => ({
          externalId: row.externalId,
          actor: "system",
          type: "session.failed" as const,
          outcome: "failed",
          detail: { provider: provider.name, reason: "the join window closed before a session could be created" },
        })),
        expired.map((row) => sessionEvent("session.failed", row, now)),
      );
    });

    const claimed = await sessions.claimDue({ now, until: new Date(now.getTime() + this.options.leaseMs), limit: batch });
    for (const id of claimed) {
      const row = await sessions.byId({ id });
      if (row) await this.attempt(row, { deadline: Date.now() + budgetMs });
    }
    if (provider.updateSession) {
      for (const id of await sessions.expiryOutOfDate({ now, limit: batch })) {
        const row = await sessions.byId({ id });
        try {
          if (row) await this.syncExpiry(row, { deadline: Date.now() + budgetMs });
        } catch (error) {
          // The next pass (or the next join) tries again; anything but an outage is worth a look.
          if (isDatabaseUnavailable(error)) throw error;
          if (!(error instanceof ProviderUnavailableError)) this.options.onError?.(error, row?.externalId ?? id);
        }
      }
    }
    return claimed.length;
  }

  /** Runs the reconciler every `intervalMs` until the returned stop function is called (it waits for a pass in progress). */
  start(intervalMs: number, budgetMs: number): () => Promise<void> {
    return runEvery(intervalMs, () => this.reconcileOnce(budgetMs), {
      databaseOutage: this.options.databaseOutage,
      onError: (error) => this.options.onError?.(error, "(reconciler)"),
    });
  }
}
