import type { PrismaClient } from "../database.js";
import { type Queryable, statement } from "../sql.js";
import type { ScheduleFields } from "../../domain/lifecycle.js";
import {
  APPOINTMENT_COLUMNS,
  type AppointmentRow,
  LOCK_KEY,
  SCHEDULE_COLUMNS,
  schedulePlaceholders,
  scheduleValues,
} from "./appointment-rows.js";
import { SUBSCRIBED } from "./outbox.js";

const APPOINTMENT_BY_EXTERNAL_ID = statement(
  "jw_appointment_by_external_id",
  `SELECT ${APPOINTMENT_COLUMNS} FROM appointments WHERE external_id = $1`,
);

/** Also the row lock every change of an appointment takes (webhook, kill switch, join). */
const APPOINTMENT_FOR_UPDATE = statement(
  "jw_appointment_for_update",
  `SELECT ${APPOINTMENT_COLUMNS} FROM appointments WHERE external_id = $1 FOR UPDATE`,
);

/**
 * The two locks of a join, in this order, and the appointment row as it is
 * once they are held: the advisory lock on the user (one live token and one
 * live appointment per user) and the appointment's row lock (the participant
 * cap; every change of an appointment takes it too). The user lock is an
 * uncorrelated subquery, which Postgres runs once, as a gate, before the scan
 * whose rows LockRows then locks, so the order cannot invert. The live tokens
 * are read by the next statement, whose snapshot is taken with both locks held.
 * With the row, whether any subscription is active (see outbox.ts, SUBSCRIBED).
 */
const LOCK_USER_AND_APPOINTMENT = statement(
  "jw_lock_user_and_appointment",
  `SELECT ${APPOINTMENT_COLUMNS}, ${SUBSCRIBED} FROM appointments
   WHERE (SELECT pg_advisory_xact_lock(hashtextextended($1, 0))::text) IS NOT NULL AND external_id = $2
   FOR UPDATE`,
);

const REPLACE_APPOINTMENT = statement(
  "jw_replace_appointment",
  `UPDATE appointments SET (${SCHEDULE_COLUMNS}) = (${schedulePlaceholders(1)})
   WHERE id = $20
   RETURNING ${APPOINTMENT_COLUMNS}`,
);

/** A cancellation also drops the timed events not yet emitted (API.md §9). */
const CANCEL_APPOINTMENT = statement(
  "jw_cancel_appointment",
  `UPDATE appointments SET status = 'cancelled', cancelled_at = $2, revision = $3, updated_at = $2, next_timed_event_at = NULL
   WHERE id = $1 RETURNING ${APPOINTMENT_COLUMNS}`,
);

const SET_REVISION = statement(
  "jw_set_revision",
  `UPDATE appointments SET revision = $2, updated_at = $3 WHERE id = $1 RETURNING ${APPOINTMENT_COLUMNS}`,
);

const SET_ACCESS_BLOCKED = statement(
  "jw_set_access_blocked",
  `UPDATE appointments SET access_blocked = $2, updated_at = $3 WHERE id = $1 RETURNING ${APPOINTMENT_COLUMNS}`,
);

const DELETE_TOMBSTONE = statement("jw_delete_tombstone", `DELETE FROM cancellation_tombstones WHERE external_id = $1`);

const UPSERT_TOMBSTONE = statement(
  "jw_upsert_tombstone",
  `INSERT INTO cancellation_tombstones (external_id, revision, cancelled_at) VALUES ($1, $2, $3)
   ON CONFLICT (external_id) DO UPDATE SET revision = EXCLUDED.revision, cancelled_at = EXCLUDED.cancelled_at`,
);

const returned = (rows: AppointmentRow[]): AppointmentRow => {
  const [row] = rows;
  if (!row) throw new Error("UPDATE … RETURNING returned no row");
  return row;
};

/**
 * Appointments and the cancellations recorded for ids that have none
 * (tombstones). Methods that take `tx` run inside the caller's transaction;
 * the others on their own.
 */
export class AppointmentsRepository {
  constructor(private readonly db: { sql: Queryable; prisma: PrismaClient }) {}

  async byExternalId({ externalId }: { externalId: string }): Promise<AppointmentRow | undefined> {
    const [row] = await this.db.sql.query<AppointmentRow>(APPOINTMENT_BY_EXTERNAL_ID, [externalId]);
    return row;
  }

  /** Is there an appointment, or a recorded cancellation, for this id? (Its audit trail exists then.) */
  async isKnown({ externalId }: { externalId: string }): Promise<boolean> {
    const [appointment, tombstone] = await Promise.all([
      this.db.prisma.appointment.findUnique({ where: { externalId }, select: { id: true } }),
      this.db.prisma.cancellationTombstone.findUnique({ where: { externalId }, select: { externalId: true } }),
    ]);
    return appointment !== null || tombstone !== null;
  }

  /**
   * Serialises every change of one appointment and returns it: the advisory
   * lock covers an externalId that has no row yet (creation, tombstones), the
   * row lock is the one a join-token transaction holds, so a revocation cannot
   * miss a token being issued at the same moment.
   */
  async lock({ tx, externalId }: { tx: Queryable; externalId: string }): Promise<AppointmentRow | undefined> {
    await tx.query(LOCK_KEY, [`appointment:${externalId}`]);
    const [row] = await tx.query<AppointmentRow>(APPOINTMENT_FOR_UPDATE, [externalId]);
    return row;
  }

  /** The user's advisory lock, then the appointment's row lock (see LOCK_USER_AND_APPOINTMENT). */
  async lockForJoin({ tx, userId, externalId }: { tx: Queryable; userId: string; externalId: string }) {
    const [row] = await tx.query<AppointmentRow & { subscribed: boolean }>(LOCK_USER_AND_APPOINTMENT, [`user:${userId}`, externalId]);
    return row;
  }

  async replace({
    tx,
    id,
    fields,
    timers,
    now,
  }: {
    tx: Queryable;
    id: string;
    fields: ScheduleFields;
    timers: Pick<AppointmentRow, "timedEventsEmitted" | "nextTimedEventAt">;
    now: Date;
  }): Promise<AppointmentRow> {
    return returned(await tx.query<AppointmentRow>(REPLACE_APPOINTMENT, [...scheduleValues(fields, timers, now), id]));
  }

  async cancel({ tx, id, revision, now }: { tx: Queryable; id: string; revision: number | null; now: Date }): Promise<AppointmentRow> {
    return returned(await tx.query<AppointmentRow>(CANCEL_APPOINTMENT, [id, now, revision]));
  }

  async setRevision({ tx, id, revision, now }: { tx: Queryable; id: string; revision: number | null; now: Date }) {
    return returned(await tx.query<AppointmentRow>(SET_REVISION, [id, revision, now]));
  }

  async setAccessBlocked({ tx, id, blocked, now }: { tx: Queryable; id: string; blocked: boolean; now: Date }) {
    return returned(await tx.query<AppointmentRow>(SET_ACCESS_BLOCKED, [id, blocked, now]));
  }

  async deleteTombstone({ tx, externalId }: { tx: Queryable; externalId: string }): Promise<void> {
    await tx.query(DELETE_TOMBSTONE, [externalId]);
  }

  async recordTombstone({ tx, externalId, revision, now }: { tx: Queryable; externalId: string; revision: number | null; now: Date }) {
    await tx.query(UPSERT_TOMBSTONE, [externalId, revision, now]);
  }
}
