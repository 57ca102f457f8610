import type { PrismaClient } from "../database.js";
import { type Queryable, statement } from "../sql.js";
import { APPOINTMENT_COLUMNS, type AppointmentRow } from "./appointment-rows.js";

const MARK_READY = statement(
  "jw_session_ready",
  `UPDATE appointments SET session_id = $2, session_room_url = $3, session_closes_at = $4,
     session_status = 'ready', session_claimed_until = NULL,
     session_next_attempt_at = NULL, session_last_error = NULL, session_attempts = session_attempts + 1
   WHERE id = $1 AND session_status = 'pending'
   RETURNING ${APPOINTMENT_COLUMNS}`,
);

const MARK_FAILED_ATTEMPT = statement(
  "jw_session_failed_attempt",
  `UPDATE appointments SET session_status = $2::"SessionStatus", session_attempts = $3, session_claimed_until = NULL,
     session_next_attempt_at = $4, session_last_error = $5
   WHERE id = $1 AND session_status = 'pending'
   RETURNING ${APPOINTMENT_COLUMNS}`,
);

/**
 * Ready sessions of a provider whose rooms expire, made for other times than
 * the appointment has now (it was rescheduled): their expiry must follow.
 * Scanned only with such a provider (Daily).
 */
const EXPIRY_OUT_OF_DATE = statement(
  "jw_session_expiry_out_of_date",
  `SELECT id FROM appointments
   WHERE status = 'scheduled' AND session_status = 'ready' AND closes_at > $1
     AND session_closes_at IS DISTINCT FROM closes_at
   LIMIT $2`,
);

/** The provider's session now expires at $2 (unless the appointment moved again meanwhile). */
const RECORD_EXPIRY = statement(
  "jw_session_expiry_moved",
  `UPDATE appointments SET session_closes_at = $2 WHERE id = $1 AND closes_at = $2`,
);

const FAIL_OVERDUE = statement(
  "jw_session_fail_overdue",
  `UPDATE appointments SET session_status = 'failed', session_claimed_until = NULL, session_next_attempt_at = NULL
   WHERE session_status = 'pending' AND closes_at <= $1
     AND (session_claimed_until IS NULL OR session_claimed_until <= $1)
   RETURNING ${APPOINTMENT_COLUMNS}`,
);

/**
 * The provider-session columns of appointments: a pending session's lease
 * (who may call the provider for it now), its attempts and its outcome. The
 * outcomes are written in the caller's transaction, with their audit entries
 * and events.
 */
export class SessionsRepository {
  constructor(private readonly db: { prisma: PrismaClient; sql: Queryable }) {}

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

  /** The session was created: ready, lease released. Undefined when it was no longer pending. */
  async markReady({
    tx,
    id,
    sessionId,
    roomUrl,
    closesAt,
  }: {
    tx: Queryable;
    id: string;
    sessionId: string;
    roomUrl: string | null;
    /** The closesAt the session was made for. */
    closesAt: Date;
  }): Promise<AppointmentRow | undefined> {
    const [row] = await tx.query<AppointmentRow>(MARK_READY, [id, sessionId, roomUrl, closesAt]);
    return row;
  }

  async expiryOutOfDate({ now, limit }: { now: Date; limit: number }): Promise<string[]> {
    return (await this.db.sql.query<{ id: string }>(EXPIRY_OUT_OF_DATE, [now, limit])).map((row) => row.id);
  }

  async recordExpiry({ id, closesAt }: { id: string; closesAt: Date }): Promise<void> {
    await this.db.sql.query(RECORD_EXPIRY, [id, closesAt]);
  }

  /** An attempt failed: pending again from `nextAttemptAt`, or failed for good when that is null. Undefined when it was no longer pending. */
  async markFailedAttempt({
    tx,
    id,
    attempts,
    nextAttemptAt,
    reason,
  }: {
    tx: Queryable;
    id: string;
    attempts: number;
    nextAttemptAt: Date | null;
    reason: string;
  }): Promise<AppointmentRow | undefined> {
    const [row] = await tx.query<AppointmentRow>(MARK_FAILED_ATTEMPT, [id, nextAttemptAt ? "pending" : "failed", attempts, nextAttemptAt, reason]);
    return row;
  }

  /** Pending sessions whose window has closed (and that nobody is attempting) become failed; returns them. */
  async failOverdue({ tx, now }: { tx: Queryable; now: Date }): Promise<AppointmentRow[]> {
    return tx.query<AppointmentRow>(FAIL_OVERDUE, [now]);
  }

  async countPending(): Promise<number> {
    return this.db.prisma.appointment.count({ where: { sessionStatus: "pending" } });
  }
}
