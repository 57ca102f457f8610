import { type Statement, statement } from "../db/sql.js";
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

/** The caller's live tokens: `replaced` in this appointment, `superseded` in any other. */
export const REVOKE_CALLER_TOKENS = statement(
  "jw_revoke_caller_tokens",
  `UPDATE join_tokens
   SET revoked_at = $3,
       revocation_reason = (CASE WHEN appointment_id = $2 THEN 'replaced' ELSE 'superseded' END)::"RevocationReason"
   WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $3
   RETURNING appointment_id AS "appointmentId"`,
);

export const INSERT_TOKEN = statement(
  "jw_insert_token",
  `INSERT INTO join_tokens (id, appointment_id, user_id, role, token_hash, provider, session_id, issued_at, not_before, expires_at)
   VALUES ($1, $2, $3, $4::"ParticipantRole", $5, $6, $7, $8, $9, $10)`,
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

const INSERT_AUDIT = statement(
  "jw_insert_audit",
  `INSERT INTO audit_events (external_id, at, type, actor, outcome, detail)
   SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::jsonb[])`,
);

/** One statement for any number of entries. */
export function auditInsert(entries: AuditEntry[], now: Date): [Statement, unknown[]] {
  return [
    INSERT_AUDIT,
    [
      entries.map((e) => e.externalId),
      entries.map((e) => e.at ?? now),
      entries.map((e) => e.type),
      entries.map((e) => e.actor),
      entries.map((e) => e.outcome),
      entries.map((e) => JSON.stringify(e.detail ?? {})),
    ],
  ];
}
