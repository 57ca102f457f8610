import type { LiveToken } from "../../domain/join-rules.js";
import type { ParticipantRole } from "../../domain/join-window.js";
import type { PrismaClient } from "../database.js";
import { type Queryable, statement } from "../sql.js";
import { ejectionsFrom } from "./ejections.js";
import { wanted } from "./outbox.js";

/** Live tokens of the caller anywhere, and of anyone in this appointment: the §3 collision and cap checks in one read. */
const LIVE_TOKENS_AROUND = statement(
  "jw_live_tokens_around",
  `SELECT DISTINCT t.appointment_id AS "appointmentId", a.external_id AS "externalId", t.user_id AS "userId"
   FROM join_tokens t JOIN appointments a ON a.id = t.appointment_id
   WHERE t.revoked_at IS NULL AND t.expires_at > $3 AND (t.user_id = $1 OR t.appointment_id = $2)`,
);

/**
 * The writes of a join, in one round trip: the caller's live tokens revoked
 * (`replaced` in this appointment, `superseded` in any other), the new token,
 * the lifecycle events (a `token.revoked` per token revoked, then the
 * `token.issued`) and the audit entries, one `token.revoked` per appointment
 * that lost tokens and the `token.issued`. The counts come from the UPDATE
 * itself, so a token that another appointment's change revoked a moment
 * earlier is not counted here as superseded.
 *
 * $1 user, $2 appointment id, $3 now, $4 token id, $5 role, $6 token hash,
 * $7 provider, $8 session id, $9 not before, $10 expires at, $11 actor,
 * $12 externalId, $13 detail of `token.issued`, $14 data of its event (used
 * only with events).
 */
/**
 * The lifecycle events of a join (§9): a `token.revoked` per token revoked,
 * then the `token.issued`, for the types some active subscription wants. Only
 * in the variant of ISSUE_TOKEN for a database with active subscriptions.
 */
const JOIN_EVENTS = `events AS (
     INSERT INTO outbox_events (type, external_id, at, data, created_at)
     SELECT * FROM (
       SELECT 'token.revoked' AS type, a.external_id, $3::timestamptz,
              jsonb_build_object('tokenId', r.id, 'userId', $1::text, 'role', r.role, 'reason', r.revocation_reason), $3::timestamptz
       FROM revoked r JOIN appointments a ON a.id = r.appointment_id
       UNION ALL
       SELECT 'token.issued', $12::text, $3::timestamptz, $14::jsonb, $3::timestamptz) AS e
     WHERE ${wanted("e.type")}),`;

/**
 * With a provider that can eject (API.md §10): a removal of the caller from
 * each room they left by superseding (not from this one: a replaced token is
 * the same person reconnecting).
 */
const SUPERSEDED_EJECTIONS = `ejected AS (${ejectionsFrom(
  `SELECT r.appointment_id, a.external_id, r.provider, r.session_id, $1::text AS user_id, r.role, r.id AS token_id,
          r.revocation_reason::text AS reason
   FROM revoked r JOIN appointments a ON a.id = r.appointment_id WHERE r.revocation_reason = 'superseded'`,
  "$3::timestamptz",
)}),`;

const issueToken = (withEvents: boolean, ejecting: boolean) =>
  statement(
    `jw_issue_token${withEvents ? "_with_events" : ""}${ejecting ? "_ejecting" : ""}`,
    `WITH revoked AS (
     UPDATE join_tokens
     SET revoked_at = $3,
         revocation_reason = (CASE WHEN appointment_id = $2 THEN 'replaced' ELSE 'superseded' END)::"RevocationReason"
     WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $3
     RETURNING id, appointment_id, role, revocation_reason, provider, session_id),
   ${ejecting ? SUPERSEDED_EJECTIONS : ""}
   lost AS (
     SELECT a.external_id, r.appointment_id = $2 AS here, count(*)::int AS n
     FROM revoked r JOIN appointments a ON a.id = r.appointment_id
     GROUP BY a.external_id, r.appointment_id),
   ${withEvents ? JOIN_EVENTS : ""}
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

/** The four variants, by [withEvents][ejecting]: a service that needs neither pays for neither. */
const ISSUE_TOKEN = [
  [issueToken(false, false), issueToken(false, true)],
  [issueToken(true, false), issueToken(true, true)],
] as const;

export interface StoredToken {
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
  /** Its appointment's externalId. */
  externalId: string;
}

const TOKEN_BY_HASH = statement(
  "jw_token_by_hash",
  `SELECT t.id, t.user_id AS "userId", t.role, t.session_id AS "sessionId", t.provider, t.issued_at AS "issuedAt",
          t.not_before AS "notBefore", t.expires_at AS "expiresAt", t.revoked_at AS "revokedAt",
          t.revocation_reason AS "revocationReason", a.external_id AS "externalId"
   FROM join_tokens t JOIN appointments a ON a.id = t.appointment_id
   WHERE t.token_hash = $1`,
);

/**
 * Live tokens of an appointment ($1, externalId $5), of one user ($4) or of
 * everyone ($4 null), with a `token.revoked` event each and, when the
 * provider can eject ($6), a removal of each holder from the room.
 */
const REVOKE_APPOINTMENT_TOKENS = statement(
  "jw_revoke_appointment_tokens",
  `WITH revoked AS (
     UPDATE join_tokens SET revoked_at = $2, revocation_reason = $3::"RevocationReason"
     WHERE appointment_id = $1 AND revoked_at IS NULL AND expires_at > $2 AND ($4::text IS NULL OR user_id = $4)
     RETURNING id, user_id, role, provider, session_id),
   ejected AS (${ejectionsFrom(
     `SELECT $1::uuid AS appointment_id, $5::text AS external_id, provider, session_id, user_id, role, id AS token_id, $3::text AS reason
      FROM revoked WHERE $6::boolean AND $3::text <> 'replaced'`,
     "$2::timestamptz",
   )}),
   events AS (
     INSERT INTO outbox_events (type, external_id, at, data, created_at)
     SELECT 'token.revoked', $5, $2, jsonb_build_object('tokenId', id, 'userId', user_id, 'role', role, 'reason', $3::text), $2
     FROM revoked WHERE ${wanted("'token.revoked'")})
   SELECT id FROM revoked`,
);

/**
 * An operator revokes one token ($1) if it is still live: the revocation, its
 * `token.revoked` event, the removal of its holder from the room when the
 * provider can eject ($4) and the audit entry (`revoked`, or `was_not_live`),
 * in one statement. $2 now, $3 actor.
 */
const REVOKE_ONE_BY_OPERATOR = statement(
  "jw_revoke_one_by_operator",
  `WITH token AS (
     SELECT t.id, t.user_id, t.role, a.external_id FROM join_tokens t JOIN appointments a ON a.id = t.appointment_id WHERE t.id = $1),
   revoked AS (
     UPDATE join_tokens SET revoked_at = $2, revocation_reason = 'operator'
     WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2
     RETURNING id, appointment_id, user_id, role, provider, session_id),
   ejected AS (${ejectionsFrom(
     `SELECT r.appointment_id, t.external_id, r.provider, r.session_id, r.user_id, r.role, r.id AS token_id, 'operator' AS reason
      FROM revoked r JOIN token t ON t.id = r.id WHERE $4::boolean`,
     "$2::timestamptz",
   )}),
   events AS (
     INSERT INTO outbox_events (type, external_id, at, data, created_at)
     SELECT 'token.revoked', external_id, $2,
            jsonb_build_object('tokenId', id, 'userId', user_id, 'role', role, 'reason', 'operator'), $2
     FROM token WHERE EXISTS (SELECT 1 FROM revoked) AND ${wanted("'token.revoked'")}),
   audit AS (
     INSERT INTO audit_events (external_id, at, type, actor, outcome, detail)
     SELECT external_id, $2, 'token.revoked', $3, CASE WHEN EXISTS (SELECT 1 FROM revoked) THEN 'revoked' ELSE 'was_not_live' END,
            jsonb_build_object('reason', 'operator', 'tokenId', id, 'userId', user_id)
     FROM token)
   SELECT count(*)::int AS revoked FROM revoked`,
);

export type RevocationReason = "replaced" | "rescheduled" | "reassigned" | "cancelled" | "superseded" | "operator" | "blocked";

export interface NewToken {
  tx: Queryable;
  tokenId: string;
  userId: string;
  role: ParticipantRole;
  tokenHash: string;
  provider: string;
  sessionId: string;
  /** The appointment's id and externalId. */
  appointmentId: string;
  externalId: string;
  notBefore: Date;
  expiresAt: Date;
  now: Date;
  /** Who the audit entries name. */
  actor: string;
  /** Whether any subscription is active (then the lifecycle events are written too). */
  withEvents: boolean;
}

/** Join tokens, stored only as hashes. */
export class JoinTokensRepository {
  /** `ejects`: the provider can remove participants, so revocations enqueue removals (API.md §10). */
  constructor(private readonly db: { sql: Queryable; prisma: PrismaClient; ejects?: boolean }) {}

  private get ejects(): boolean {
    return this.db.ejects === true;
  }

  /** In `tx` when given (then its snapshot follows the transaction's locks). */
  async liveAround({ tx, userId, appointmentId, now }: { tx?: Queryable | undefined; userId: string; appointmentId: string; now: Date }) {
    return (tx ?? this.db.sql).query<LiveToken>(LIVE_TOKENS_AROUND, [userId, appointmentId, now]);
  }

  /** Stores the token, revoking the user's other live ones, and audits both, with their events if anyone subscribes (issueToken). */
  async issue(token: NewToken): Promise<void> {
    const { tokenId, userId, role } = token;
    const expiresAt = token.expiresAt.toISOString();
    const detail = { tokenId, userId, role, expiresAt };
    await token.tx.query(ISSUE_TOKEN[token.withEvents ? 1 : 0][this.ejects ? 1 : 0], [
      token.userId,
      token.appointmentId,
      token.now,
      token.tokenId,
      token.role,
      token.tokenHash,
      token.provider,
      token.sessionId,
      token.notBefore,
      token.expiresAt,
      token.actor,
      token.externalId,
      JSON.stringify(detail),
      ...(token.withEvents ? [JSON.stringify({ tokenId, userId, role, notBefore: token.notBefore.toISOString(), expiresAt })] : []),
    ]);
  }

  async byHash({ tokenHash }: { tokenHash: string }): Promise<StoredToken | undefined> {
    const [row] = await this.db.sql.query<StoredToken>(TOKEN_BY_HASH, [tokenHash]);
    return row;
  }

  /** Revokes an appointment's live tokens (of one user, or of all when userId is null), each with its event; returns how many. */
  async revokeForAppointment({
    tx,
    appointmentId,
    externalId,
    reason,
    userId,
    now,
  }: {
    tx: Queryable;
    appointmentId: string;
    externalId: string;
    reason: RevocationReason;
    userId: string | null;
    now: Date;
  }): Promise<number> {
    return (await tx.query(REVOKE_APPOINTMENT_TOKENS, [appointmentId, now, reason, userId, externalId, this.ejects])).length;
  }

  /** One token's id, by its value's hash or by its id; null when unknown. */
  async find(by: { tokenHash: string } | { id: string }) {
    return this.db.prisma.joinToken.findUnique({ where: by, select: { id: true } });
  }

  /** An operator's revocation of one token, if it is still live, with its event and audit entry; false when it was not live. */
  async revokeByOperator({ id, actor, now }: { id: string; actor: string; now: Date }): Promise<boolean> {
    const [row] = await this.db.sql.query<{ revoked: number }>(REVOKE_ONE_BY_OPERATOR, [id, now, actor, this.ejects]);
    return (row?.revoked ?? 0) > 0;
  }
}
