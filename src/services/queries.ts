import { type Sql, type Statement, statement } from "../db/sql.js";
import type { Appointment } from "../generated/prisma/client.js";
import type { AuditEntry } from "./audit.js";

/**
 * The statements of the hot paths, in one place. Rows come back in the
 * Prisma model's shape (camelCase, Dates), so the rest of the code does not
 * care which way a row was read.
 */

const APPOINTMENT_COLUMNS = `id, external_id AS "externalId", status, revision, starts_at AS "startsAt",
  ends_at AS "endsAt", time_zone AS "timeZone", agent_id AS "agentId", agent_name AS "agentName",
  customer_id AS "customerId", customer_name AS "customerName", max_participants AS "maxParticipants",
  waiting_room AS "waitingRoom", recording, agent_opens_at AS "agentOpensAt", customer_opens_at AS "customerOpensAt",
  closes_at AS "closesAt", provider, session_id AS "sessionId", session_status AS "sessionStatus",
  session_attempts AS "sessionAttempts", session_next_attempt_at AS "sessionNextAttemptAt",
  session_last_error AS "sessionLastError", session_claimed_until AS "sessionClaimedUntil",
  access_blocked AS "accessBlocked", cancelled_at AS "cancelledAt", created_at AS "createdAt", updated_at AS "updatedAt"`;

export type AppointmentRow = Appointment;

/** Serialises transactions on one key (an externalId, a user) across every replica, until commit. */
export const LOCK_KEY = statement("jw_lock_key", "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))");

export const APPOINTMENT_BY_EXTERNAL_ID = statement(
  "jw_appointment_by_external_id",
  `SELECT ${APPOINTMENT_COLUMNS} FROM appointments WHERE external_id = $1`,
);

/** Also the row lock every change of an appointment takes (webhook, kill switch, join). */
export const APPOINTMENT_FOR_UPDATE = statement(
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
 */
export const LOCK_USER_AND_APPOINTMENT = statement(
  "jw_lock_user_and_appointment",
  `SELECT ${APPOINTMENT_COLUMNS} FROM appointments
   WHERE (SELECT pg_advisory_xact_lock(hashtextextended($1, 0))::text) IS NOT NULL AND external_id = $2
   FOR UPDATE`,
);

export interface LiveTokenRow {
  appointmentId: string;
  externalId: string;
  userId: string;
}

/** Live tokens of the caller anywhere, and of anyone in this appointment: the §3 collision and cap checks in one read. */
export const LIVE_TOKENS_AROUND = statement(
  "jw_live_tokens_around",
  `SELECT DISTINCT t.appointment_id AS "appointmentId", a.external_id AS "externalId", t.user_id AS "userId"
   FROM join_tokens t JOIN appointments a ON a.id = t.appointment_id
   WHERE t.revoked_at IS NULL AND t.expires_at > $3 AND (t.user_id = $1 OR t.appointment_id = $2)`,
);

/**
 * The writes of a join, in one round trip: the caller's live tokens revoked
 * (`replaced` in this appointment, `superseded` in any other), the new token,
 * and the audit entries, one `token.revoked` per appointment that lost tokens
 * and the `token.issued`. The counts come from the UPDATE itself, so a token
 * that another appointment's change revoked a moment earlier is not counted
 * here as superseded.
 *
 * $1 user, $2 appointment id, $3 now, $4 token id, $5 role, $6 token hash,
 * $7 provider, $8 session id, $9 not before, $10 expires at, $11 actor,
 * $12 externalId, $13 detail of `token.issued`.
 */
export const ISSUE_TOKEN = statement(
  "jw_issue_token",
  `WITH revoked AS (
     UPDATE join_tokens
     SET revoked_at = $3,
         revocation_reason = (CASE WHEN appointment_id = $2 THEN 'replaced' ELSE 'superseded' END)::"RevocationReason"
     WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $3
     RETURNING appointment_id),
   lost AS (
     SELECT a.external_id, r.appointment_id = $2 AS here, count(*)::int AS n
     FROM revoked r JOIN appointments a ON a.id = r.appointment_id
     GROUP BY a.external_id, r.appointment_id),
   issued AS (
     INSERT INTO join_tokens (id, appointment_id, user_id, role, token_hash, provider, session_id, issued_at, not_before, expires_at)
     VALUES ($4, $2, $1, $5::"ParticipantRole", $6, $7, $8, $3, $9, $10))
   INSERT INTO audit_events (external_id, at, type, actor, outcome, detail)
   SELECT * FROM (
     SELECT external_id, $3::timestamptz, 'token.revoked', $11::text, 'revoked',
            jsonb_build_object('reason', CASE WHEN here THEN 'replaced' ELSE 'superseded' END, 'count', n, 'userId', $1::text)
              || CASE WHEN here THEN '{}'::jsonb ELSE jsonb_build_object('by', $12::text) END
     FROM lost ORDER BY here, external_id) AS revocations
   UNION ALL
   SELECT $12::text, $3::timestamptz, 'token.issued', $11::text,
          CASE WHEN EXISTS (SELECT 1 FROM lost WHERE here) THEN 'replaced_previous' ELSE 'issued' END, $13::jsonb`,
);

export interface IntrospectedRow {
  id: string;
  userId: string;
  role: string;
  sessionId: string;
  provider: string;
  issuedAt: Date;
  notBefore: Date;
  expiresAt: Date;
  revokedAt: Date | null;
  revocationReason: string | null;
  externalId: string;
}

export const TOKEN_BY_HASH = statement(
  "jw_token_by_hash",
  `SELECT t.id, t.user_id AS "userId", t.role, t.session_id AS "sessionId", t.provider, t.issued_at AS "issuedAt",
          t.not_before AS "notBefore", t.expires_at AS "expiresAt", t.revoked_at AS "revokedAt",
          t.revocation_reason AS "revocationReason", a.external_id AS "externalId"
   FROM join_tokens t JOIN appointments a ON a.id = t.appointment_id
   WHERE t.token_hash = $1`,
);

/** Any number of audit entries from the six column arrays of auditColumns ($1..$6); also a CTE of the webhook's last writes. */
const AUDIT_FROM_COLUMNS = `INSERT INTO audit_events (external_id, at, type, actor, outcome, detail)
   SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::jsonb[])`;

const INSERT_AUDIT = statement("jw_insert_audit", AUDIT_FROM_COLUMNS);

/** Audit entries as the six column arrays that INSERT … SELECT FROM unnest(…) takes. */
export const auditColumns = (entries: AuditEntry[], now: Date): unknown[] => [
  entries.map((e) => e.externalId),
  entries.map((e) => e.at ?? now),
  entries.map((e) => e.type),
  entries.map((e) => e.actor),
  entries.map((e) => e.outcome),
  entries.map((e) => JSON.stringify(e.detail ?? {})),
];

const INSERT_ONE_AUDIT = statement(
  "jw_insert_one_audit",
  `INSERT INTO audit_events (external_id, at, type, actor, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6::jsonb)`,
);

/** One statement for any number of entries (a plain VALUES for one: introspection writes one per call). */
export function auditInsert(entries: AuditEntry[], now: Date): [Statement, unknown[]] {
  const [only] = entries;
  if (entries.length === 1 && only) {
    return [
      INSERT_ONE_AUDIT,
      [only.externalId, only.at ?? now, only.type, only.actor, only.outcome, JSON.stringify(only.detail ?? {})],
    ];
  }
  return [INSERT_AUDIT, auditColumns(entries, now)];
}

// --- Scheduling webhook -----------------------------------------------------

/**
 * The two locks of a delivery, in this order, until commit: the webhook-id
 * (a concurrent redelivery waits here, then finds the stored answer) and the
 * appointment's externalId (every change of the appointment takes it). The
 * first is an uncorrelated subquery, which Postgres runs once, as a gate,
 * before the second.
 */
export const LOCK_DELIVERY_AND_APPOINTMENT = statement(
  "jw_lock_delivery_and_appointment",
  `SELECT pg_advisory_xact_lock(hashtextextended($2, 0))::text AS appointment
   WHERE (SELECT pg_advisory_xact_lock(hashtextextended($1, 0))::text) IS NOT NULL`,
);

export interface StoredDelivery {
  responseStatus: number;
  responseBody: unknown;
}

/**
 * A delivery's stored answer, written once the outcome is known, after its
 * audit entries ($1..$6): $7 webhook id, $8 event type, $9 externalId,
 * $10 status, $11 body.
 */
const AUDIT_AND_DELIVERY = `audit AS (${AUDIT_FROM_COLUMNS})
   INSERT INTO webhook_deliveries (webhook_id, event_type, external_id, response_status, response_body)
   VALUES ($7, $8, $9, $10, $11::jsonb)`;

export const FINISH_DELIVERY = statement("jw_finish_delivery", `WITH ${AUDIT_AND_DELIVERY}`);

export interface StoredState {
  /** The answer already stored for this webhook-id; undefined for a first delivery. */
  delivery: StoredDelivery | undefined;
  /** The appointment, locked; undefined when there is none. */
  appointment: AppointmentRow | undefined;
  /** The cancellation recorded for an externalId without an appointment; undefined when there is none. */
  tombstone: { revision: number | null } | undefined;
}

/**
 * What a webhook reads, in one round trip once both its locks are held: the
 * stored answer of its webhook-id, the appointment (row-locked) and its
 * tombstone. One row, whose columns are null for what does not exist.
 */
const STORED_STATE = statement(
  "jw_stored_state",
  `WITH appointment AS (SELECT ${APPOINTMENT_COLUMNS} FROM appointments WHERE external_id = $1 FOR UPDATE)
   SELECT appointment.*, t.external_id IS NOT NULL AS "hasTombstone", t.revision AS "tombstoneRevision",
          d.response_status AS "deliveryStatus", d.response_body AS "deliveryBody"
   FROM (VALUES (true)) AS one (x)
   LEFT JOIN appointment ON true
   LEFT JOIN cancellation_tombstones t ON t.external_id = $1
   LEFT JOIN webhook_deliveries d ON d.webhook_id = $2`,
);

interface StoredStateRow extends AppointmentRow {
  hasTombstone: boolean;
  tombstoneRevision: number | null;
  deliveryStatus: number | null;
  deliveryBody: unknown;
}

export async function readStoredState(tx: Pick<Sql, "query">, webhookId: string, externalId: string): Promise<StoredState> {
  const [row] = await tx.query<StoredStateRow>(STORED_STATE, [externalId, webhookId]);
  if (!row) throw new Error("the stored-state query returned no row");
  const { hasTombstone, tombstoneRevision, deliveryStatus, deliveryBody, ...appointment } = row;
  return {
    delivery: deliveryStatus === null ? undefined : { responseStatus: deliveryStatus, responseBody: deliveryBody },
    appointment: appointment.id === null ? undefined : appointment,
    tombstone: hasTombstone ? { revision: tombstoneRevision } : undefined,
  };
}

export const DELETE_TOMBSTONE = statement("jw_delete_tombstone", `DELETE FROM cancellation_tombstones WHERE external_id = $1`);

export const UPSERT_TOMBSTONE = statement(
  "jw_upsert_tombstone",
  `INSERT INTO cancellation_tombstones (external_id, revision, cancelled_at) VALUES ($1, $2, $3)
   ON CONFLICT (external_id) DO UPDATE SET revision = EXCLUDED.revision, cancelled_at = EXCLUDED.cancelled_at`,
);

const SCHEDULE_COLUMNS = `status, revision, starts_at, ends_at, time_zone, agent_id, agent_name, customer_id, customer_name,
  max_participants, waiting_room, recording, agent_opens_at, customer_opens_at, closes_at, cancelled_at, updated_at`;

/**
 * A new appointment ($12..$37, see insertValues), its audit entries and the
 * delivery's stored answer ($1..$11, as FINISH_DELIVERY): the last write of a
 * webhook, in one round trip.
 */
export const INSERT_APPOINTMENT_AND_FINISH = statement(
  "jw_insert_appointment_and_finish",
  `WITH appointment AS (
     INSERT INTO appointments (${SCHEDULE_COLUMNS}, id, external_id, provider, session_id, session_status, session_attempts,
       session_next_attempt_at, session_last_error, session_claimed_until, access_blocked, created_at)
     VALUES ($12::"AppointmentStatus", $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28,
       $29, $30, $31, $32, $33::"SessionStatus", $34, $35, $36, $37, false, $28)),
   ${AUDIT_AND_DELIVERY}`,
);

export const insertValues = (row: AppointmentRow, now: Date): unknown[] => [
  ...scheduleValues(
    { ...row, status: "scheduled", cancelledAt: null },
    now,
  ),
  row.id,
  row.externalId,
  row.provider,
  row.sessionId,
  row.sessionStatus,
  row.sessionAttempts,
  row.sessionNextAttemptAt,
  row.sessionLastError,
  row.sessionClaimedUntil,
];

export const REPLACE_APPOINTMENT = statement(
  "jw_replace_appointment",
  `UPDATE appointments SET (${SCHEDULE_COLUMNS}) =
     ($1::"AppointmentStatus", $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
   WHERE id = $18
   RETURNING ${APPOINTMENT_COLUMNS}`,
);

export const CANCEL_APPOINTMENT = statement(
  "jw_cancel_appointment",
  `UPDATE appointments SET status = 'cancelled', cancelled_at = $2, revision = $3, updated_at = $2
   WHERE id = $1 RETURNING ${APPOINTMENT_COLUMNS}`,
);

export const SET_REVISION = statement(
  "jw_set_revision",
  `UPDATE appointments SET revision = $2, updated_at = $3 WHERE id = $1 RETURNING ${APPOINTMENT_COLUMNS}`,
);

export const SET_ACCESS_BLOCKED = statement(
  "jw_set_access_blocked",
  `UPDATE appointments SET access_blocked = $2, updated_at = $3 WHERE id = $1 RETURNING ${APPOINTMENT_COLUMNS}`,
);

/** Live tokens of an appointment, of one user ($4) or of everyone ($4 null). */
export const REVOKE_APPOINTMENT_TOKENS = statement(
  "jw_revoke_appointment_tokens",
  `UPDATE join_tokens SET revoked_at = $2, revocation_reason = $3::"RevocationReason"
   WHERE appointment_id = $1 AND revoked_at IS NULL AND expires_at > $2 AND ($4::text IS NULL OR user_id = $4)
   RETURNING id`,
);

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

export const scheduleValues = (f: ScheduleFields, now: Date): unknown[] => [
  f.status,
  f.revision,
  f.startsAt,
  f.endsAt,
  f.timeZone,
  f.agentId,
  f.agentName,
  f.customerId,
  f.customerName,
  f.maxParticipants,
  f.waitingRoom,
  f.recording,
  f.agentOpensAt,
  f.customerOpensAt,
  f.closesAt,
  f.cancelledAt,
  now,
];
