import type { ParticipantRole } from "../../domain/join-window.js";
import { type Queryable, statement } from "../sql.js";
import { wanted } from "./outbox.js";

/** API.md §10: a removal is retried for up to 10 minutes. */
export const EJECTION_GIVE_UP = "interval '10 minutes'";

/**
 * One removal per row of `source` (a query with appointment_id, external_id,
 * provider, session_id, user_id, role, token_id, reason), due at once: the
 * CTE the revocation statements add when the provider can eject. `now` is the
 * SQL of the statement's clock parameter. A token is ejected once (its
 * unique key): a redelivered revocation adds nothing.
 */
export const ejectionsFrom = (source: string, now: string) =>
  `INSERT INTO ejections (appointment_id, external_id, provider, session_id, user_id, role, token_id, reason, next_attempt_at, give_up_at, created_at)
   SELECT s.appointment_id, s.external_id, s.provider, s.session_id, s.user_id, s.role, s.token_id, s.reason,
          ${now}, ${now} + ${EJECTION_GIVE_UP}, ${now}
   FROM (${source}) AS s
   ON CONFLICT DO NOTHING`;

/**
 * Removals of the appointments' ($1) participants for one reason ($2, e.g.
 * the window closed) at $3: the agent and the customer if they may be in the
 * room (a token was made for the window as it is, or a source says they are
 * present), or only the user $4 when given. One per participant and reason;
 * one that already ran is armed again (a window closed a second time after a
 * reschedule, a second entry without a token).
 */
const ENQUEUE_PARTICIPANTS = statement(
  "jw_enqueue_ejections",
  `INSERT INTO ejections (appointment_id, external_id, provider, session_id, user_id, role, token_id, reason, next_attempt_at, give_up_at, created_at)
   SELECT a.id, a.external_id, a.provider, a.session_id, p.user_id, p.role, NULL, $2, $3, $3::timestamptz + ${EJECTION_GIVE_UP}, $3
   FROM appointments a
   CROSS JOIN LATERAL (VALUES (a.agent_id, 'moderator'::"ParticipantRole", a.agent_present),
                              (a.customer_id, 'participant'::"ParticipantRole", a.customer_present)) AS p (user_id, role, present)
   WHERE a.id = ANY ($1::uuid[]) AND a.session_id IS NOT NULL
     AND ($4::text IS NULL OR p.user_id = $4)
     AND ($4::text IS NOT NULL OR p.present
          OR EXISTS (SELECT 1 FROM join_tokens t WHERE t.appointment_id = a.id AND t.user_id = p.user_id AND t.expires_at = a.closes_at))
   ON CONFLICT (appointment_id, user_id, reason) WHERE token_id IS NULL DO UPDATE
     SET status = 'pending', attempts = 0, outcome = NULL, finished_at = NULL, claimed_until = NULL,
         next_attempt_at = EXCLUDED.next_attempt_at, give_up_at = EXCLUDED.give_up_at, created_at = EXCLUDED.created_at,
         session_id = EXCLUDED.session_id
     WHERE ejections.status <> 'pending'
   RETURNING id`,
);

/**
 * Takes due removals of the configured provider ($4) nobody else holds (FOR
 * UPDATE SKIP LOCKED, then a lease until $2): each is attempted by one
 * replica at a time. (Rooms of a provider no longer configured are left: no
 * other provider can reach them.) The connections taken with each: those of
 * the revoked token, those made with any other token no longer live (a
 * device still on a replaced token), and, where a provider's connections
 * carry no token, those recorded before the removal was decided. With each, the
 * provider connections still open for it (Vonage disconnects those) and
 * whether its user has been given a new live token since it was made (then a
 * removal by identity would throw out the new, legitimate entry).
 */
const CLAIM_DUE = statement(
  "jw_claim_ejections",
  `UPDATE ejections e SET claimed_until = $2, attempts = e.attempts + 1
   WHERE e.id IN (SELECT id FROM ejections
                  WHERE status = 'pending' AND next_attempt_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1)
                    AND provider = $4
                  ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
   RETURNING e.id::text, e.external_id AS "externalId", e.provider, e.session_id AS "sessionId", e.user_id AS "userId", e.role,
     e.token_id AS "tokenId", e.reason, e.attempts, e.give_up_at AS "giveUpAt",
     ARRAY(SELECT c.connection_id FROM provider_connections c
           WHERE c.provider = e.provider AND c.appointment_id = e.appointment_id AND c.user_id = e.user_id
             AND c.connected_at IS NOT NULL AND c.disconnected_at IS NULL
             AND (e.token_id IS NULL OR c.token_id = e.token_id
                  OR (c.token_id IS NULL AND c.recorded_at <= e.created_at)
                  OR (c.token_id IS NOT NULL
                      AND NOT EXISTS (SELECT 1 FROM join_tokens l WHERE l.id = c.token_id AND l.revoked_at IS NULL AND l.expires_at > $1)))
           ORDER BY c.connection_id) AS "connectionIds",
     EXISTS (SELECT 1 FROM join_tokens t WHERE t.appointment_id = e.appointment_id AND t.user_id = e.user_id
             AND t.revoked_at IS NULL AND t.expires_at > $1 AND t.issued_at > e.created_at) AS "rejoined"`,
);

/**
 * A removal's outcome ($2 status, $3 outcome, at $4): pending again from $5,
 * or settled with its audit entry and, when the participant was removed ($6),
 * its `participant.ejected` event, in one statement.
 */
const FINISH = statement(
  "jw_finish_ejection",
  `WITH settled AS (
     UPDATE ejections SET status = $2::"EjectionStatus", outcome = $3, claimed_until = NULL,
       next_attempt_at = COALESCE($5::timestamptz, next_attempt_at),
       finished_at = CASE WHEN $2 = 'pending' THEN NULL ELSE $4::timestamptz END
     WHERE id = $1::bigint
     RETURNING external_id, user_id, role, reason, token_id, attempts),
   audit AS (
     INSERT INTO audit_events (external_id, at, type, actor, outcome, detail)
     SELECT external_id, $4, CASE WHEN $2 = 'failed' THEN 'participant.eject_failed' ELSE 'participant.ejected' END, 'system', $3,
            jsonb_strip_nulls(jsonb_build_object('userId', user_id, 'role', role, 'reason', reason, 'tokenId', token_id,
                                                 'attempts', attempts))
     FROM settled WHERE $2 <> 'pending'),
   events AS (
     INSERT INTO outbox_events (type, external_id, at, data, created_at)
     SELECT 'participant.ejected', external_id, $4, jsonb_build_object('userId', user_id, 'role', role, 'reason', reason), $4
     FROM settled WHERE $6::boolean AND ${wanted("'participant.ejected'")})
   SELECT 1`,
);

const PENDING = statement(
  "jw_pending_ejections",
  `SELECT count(*)::int AS pending, min(created_at) AS oldest FROM ejections WHERE status = 'pending'`,
);

export interface ClaimedEjection {
  id: string;
  externalId: string;
  provider: string;
  sessionId: string;
  userId: string;
  role: ParticipantRole;
  tokenId: string | null;
  reason: string;
  /** Including this one. */
  attempts: number;
  giveUpAt: Date;
  connectionIds: string[];
  rejoined: boolean;
}

export type EjectionSettlement =
  | { status: "pending"; outcome: string; nextAttemptAt: Date }
  | { status: "done"; outcome: "removed" | "not_present" | "rejoined" }
  | { status: "failed"; outcome: string };

/** Durable removals of participants from providers' rooms (API.md §10). */
export class EjectionsRepository {
  constructor(private readonly db: { sql: Queryable }) {}

  /** Removals for participants of these appointments (all who may be in the room, or one user), in `tx`. */
  async enqueue({
    tx,
    appointmentIds,
    reason,
    userId,
    now,
  }: {
    tx?: Queryable;
    appointmentIds: readonly string[];
    reason: string;
    userId?: string;
    now: Date;
  }): Promise<number> {
    if (appointmentIds.length === 0) return 0;
    return (await (tx ?? this.db.sql).query(ENQUEUE_PARTICIPANTS, [appointmentIds, reason, now, userId ?? null])).length;
  }

  async claimDue({ provider, now, until, limit }: { provider: string; now: Date; until: Date; limit: number }): Promise<ClaimedEjection[]> {
    return this.db.sql.query<ClaimedEjection>(CLAIM_DUE, [now, until, limit, provider]);
  }

  async finish({ id, settlement, now }: { id: string; settlement: EjectionSettlement; now: Date }): Promise<void> {
    const next = settlement.status === "pending" ? settlement.nextAttemptAt : null;
    const removed = settlement.status === "done" && settlement.outcome === "removed";
    await this.db.sql.query(FINISH, [id, settlement.status, settlement.outcome.slice(0, 500), now, next, removed]);
  }

  async pending(): Promise<{ pending: number; oldest: Date | null }> {
    const [row] = await this.db.sql.query<{ pending: number; oldest: Date | null }>(PENDING, []);
    return row ?? { pending: 0, oldest: null };
  }
}
