import type { PrismaClient } from "../database.js";
import type { AppointmentRow } from "./appointment-rows.js";

/**
 * The provider-session columns of appointments: a pending session's lease
 * (who may call the provider for it now), its attempts and its outcome.
 */
export class SessionsRepository {
  constructor(private readonly db: { prisma: PrismaClient }) {}

  async byId({ id }: { id: string }): Promise<AppointmentRow | null> {
    return this.db.prisma.appointment.findUnique({ where: { id } });
  }

  /** Takes the lease on a pending session until `until`; false when it is not pending or someone else holds it. */
  async claim({ id, now, until }: { id: string; now: Date; until: Date }): Promise<boolean> {
    const { count } = await this.db.prisma.appointment.updateMany({
      where: {
        id,
        status: "scheduled",
        sessionStatus: "pending",
        OR: [{ sessionClaimedUntil: null }, { sessionClaimedUntil: { lte: now } }],
      },
      data: { sessionClaimedUntil: until },
    });
    return count === 1;
  }

  /** Claims up to `limit` due pending sessions, skipping rows another replica is claiming (FOR UPDATE SKIP LOCKED). */
  async claimDue({ now, until, limit }: { now: Date; until: Date; limit: number }): Promise<string[]> {
    const claimed = await this.db.prisma.$queryRaw<{ id: string }[]>`
      UPDATE appointments SET session_claimed_until = ${until}
      WHERE id IN (
        SELECT id FROM appointments
        WHERE session_status = 'pending' AND status = 'scheduled'
          AND (session_next_attempt_at IS NULL OR session_next_attempt_at <= ${now})
          AND (session_claimed_until IS NULL OR session_claimed_until <= ${now})
        ORDER BY session_next_attempt_at NULLS FIRST
        LIMIT ${limit}
        FOR UPDATE SKIP LOCKED)
      RETURNING id`;
    return claimed.map((row) => row.id);
  }

  /** The session was created: ready, lease released. False when it was no longer pending. */
  async markReady({ id, sessionId }: { id: string; sessionId: string }): Promise<boolean> {
    const { count } = await this.db.prisma.appointment.updateMany({
      where: { id, sessionStatus: "pending" },
      data: {
        sessionId,
        sessionStatus: "ready",
        sessionClaimedUntil: null,
        sessionNextAttemptAt: null,
        sessionLastError: null,
        sessionAttempts: { increment: 1 },
      },
    });
    return count === 1;
  }

  /** An attempt failed: pending again from `nextAttemptAt`, or failed for good when that is null. */
  async markFailedAttempt({
    id,
    attempts,
    nextAttemptAt,
    reason,
  }: {
    id: string;
    attempts: number;
    nextAttemptAt: Date | null;
    reason: string;
  }): Promise<void> {
    await this.db.prisma.appointment.updateMany({
      where: { id, sessionStatus: "pending" },
      data: {
        sessionStatus: nextAttemptAt ? "pending" : "failed",
        sessionAttempts: attempts,
        sessionClaimedUntil: null,
        sessionNextAttemptAt: nextAttemptAt,
        sessionLastError: reason,
      },
    });
  }

  /** Pending sessions whose window has closed (and that nobody is attempting) become failed; returns their externalIds. */
  async failOverdue({ now }: { now: Date }): Promise<string[]> {
    const expired = await this.db.prisma.$queryRaw<{ external_id: string }[]>`
      UPDATE appointments SET session_status = 'failed', session_claimed_until = NULL, session_next_attempt_at = NULL
      WHERE session_status = 'pending' AND closes_at <= ${now}
        AND (session_claimed_until IS NULL OR session_claimed_until <= ${now})
      RETURNING external_id`;
    return expired.map((row) => row.external_id);
  }

  async countPending(): Promise<number> {
    return this.db.prisma.appointment.count({ where: { sessionStatus: "pending" } });
  }
}
