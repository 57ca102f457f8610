import { type Queryable, statement } from "../sql.js";

/**
 * The dispatcher's queue (API.md §9): one row per event and subscription,
 * claimed for one attempt at a time with FOR UPDATE SKIP LOCKED and a lease
 * (claimed_until), so that each attempt is made by one replica, and one that
 * dies mid-attempt only delays the next by its lease.
 */

/**
 * Up to $6 due deliveries (due by $1), not leased at $7, at most as many per
 * subscription as it has free slots on this replica ($3 ids with $4 slots;
 * $5 for any other), oldest due first, leased until $2. With each, what its
 * attempt needs: the event, the subscription's URL and secrets, and since when
 * it has been failing.
 */
const CLAIM_DUE = statement(
  "jw_claim_subscription_deliveries",
  `WITH free (subscription_id, slots) AS (SELECT * FROM unnest($3::uuid[], $4::int[])),
   due AS (
     SELECT d.id, d.next_attempt_at FROM subscriptions s
     CROSS JOIN LATERAL (
       SELECT id, next_attempt_at FROM subscription_deliveries
       WHERE subscription_id = s.id AND status = 'pending' AND next_attempt_at <= $1
         AND (claimed_until IS NULL OR claimed_until <= $7)
       ORDER BY next_attempt_at
       LIMIT coalesce((SELECT slots FROM free WHERE free.subscription_id = s.id), $5)
       FOR UPDATE SKIP LOCKED) d
     WHERE s.status = 'active'
     ORDER BY d.next_attempt_at
     LIMIT $6)
   UPDATE subscription_deliveries d SET claimed_until = $2
   FROM due, subscriptions s
   WHERE d.id = due.id AND s.id = d.subscription_id
   RETURNING d.id, d.subscription_id AS "subscriptionId", d.event_id AS "eventId", d.sequence, d.type,
     d.external_id AS "externalId", d.at, d.data, d.event_created_at AS "eventCreatedAt", d.attempts, s.url,
     s.secret_encrypted AS "secretEncrypted", s.previous_secret_encrypted AS "previousSecretEncrypted",
     s.previous_secret_expires_at AS "previousSecretExpiresAt", s.failing_since AS "failingSince"`,
);

/**
 * An attempt's outcome: the delivery's new state (only if this replica still
 * holds its lease $2), the attempt in the log (whoever holds the lease: it was
 * made), and the subscription's health (failing since the first failure after
 * a success). $1 delivery, $3 status, $4 attempt number, $5 next attempt,
 * $6 outcome, $7 now (the attempt's end), $8 duration, $9 error, $10 success,
 * $11 subscription, $12 when the attempt started.
 */
const FINISH_ATTEMPT = statement(
  "jw_finish_subscription_attempt",
  `WITH delivery AS (
     UPDATE subscription_deliveries SET status = $3::"DeliveryStatus", attempts = $4, next_attempt_at = $5,
       claimed_until = NULL, last_outcome = $6, delivered_at = CASE WHEN $10 THEN $7::timestamptz END
     WHERE id = $1 AND claimed_until = $2
     RETURNING id),
   logged AS (
     INSERT INTO subscription_attempts (subscription_id, delivery_id, event_id, type, attempt, at, outcome, duration_ms,
       next_attempt_at, error)
     SELECT subscription_id, id, event_id, type, $4, $12, $6, $8, $5, $9 FROM subscription_deliveries WHERE id = $1),
   health AS (
     UPDATE subscriptions SET failing_since = CASE WHEN $10 THEN NULL ELSE $7::timestamptz END
     WHERE id = $11 AND CASE WHEN $10 THEN failing_since IS NOT NULL ELSE failing_since IS NULL END)
   SELECT count(*)::int AS updated FROM delivery`,
);

/**
 * A subscription whose deliveries have all failed for too long: disabled,
 * its pending deliveries failed, the change audited. No-op if it is no
 * longer active (another replica got there first).
 */
const DISABLE = statement(
  "jw_disable_subscription",
  `WITH disabled AS (
     UPDATE subscriptions SET status = 'disabled', disabled_at = $2, updated_at = $2
     WHERE id = $1 AND status = 'active'
     RETURNING id),
   dropped AS (
     UPDATE subscription_deliveries SET status = 'failed', next_attempt_at = NULL, claimed_until = NULL
     WHERE subscription_id IN (SELECT id FROM disabled) AND status = 'pending'),
   audit AS (
     INSERT INTO audit_events (external_id, at, type, actor, outcome, detail)
     SELECT '', $2, 'subscription.disabled', 'system', 'disabled', jsonb_build_object('subscriptionId', id, 'reason', $3::text)
     FROM disabled)
   SELECT count(*)::int AS disabled FROM disabled`,
);

/** The oldest pending delivery's event time, and how many are pending. */
const BACKLOG = statement(
  "jw_subscription_backlog",
  `SELECT (SELECT event_created_at FROM subscription_deliveries WHERE status = 'pending' ORDER BY event_created_at LIMIT 1)
            AS "oldest",
          (SELECT count(*)::int FROM subscription_deliveries WHERE status = 'pending') AS "pending"`,
);

export interface ClaimedDelivery {
  id: string;
  subscriptionId: string;
  eventId: string;
  /** bigint, as text. */
  sequence: string;
  type: string;
  externalId: string;
  at: Date;
  data: Record<string, unknown>;
  eventCreatedAt: Date;
  /** Attempts made before this one. */
  attempts: number;
  url: string;
  secretEncrypted: string;
  previousSecretEncrypted: string | null;
  previousSecretExpiresAt: Date | null;
  failingSince: Date | null;
}

export interface AttemptOutcome {
  deliveryId: string;
  subscriptionId: string;
  lease: Date;
  status: "pending" | "delivered" | "failed";
  attempt: number;
  nextAttemptAt: Date | null;
  /** An HTTP status, "timeout" or "network". */
  outcome: string;
  durationMs: number;
  error: string | null;
  /** When the attempt was made (the log's `at`). */
  startedAt: Date;
  now: Date;
}

export class SubscriptionDeliveriesRepository {
  constructor(private readonly db: { sql: Queryable }) {}

  async claimDue({
    now,
    leaseNow,
    until,
    freeSlots,
    slotsPerSubscription,
    limit,
  }: {
    /** What is due is the rules' time (the schedule's waits). */
    now: Date;
    /** Leases are wall-clock time: they measure how long a replica may take. */
    leaseNow: Date;
    until: Date;
    /** Subscriptions with deliveries in flight here, and how many more each may have. */
    freeSlots: ReadonlyMap<string, number>;
    slotsPerSubscription: number;
    limit: number;
  }): Promise<ClaimedDelivery[]> {
    return this.db.sql.query<ClaimedDelivery>(CLAIM_DUE, [
      now,
      until,
      [...freeSlots.keys()],
      [...freeSlots.values()],
      slotsPerSubscription,
      limit,
      leaseNow,
    ]);
  }

  /** False when the lease had run out and another replica holds the delivery now (the attempt is logged anyway). */
  async finishAttempt(attempt: AttemptOutcome): Promise<boolean> {
    const [row] = await this.db.sql.query<{ updated: number }>(FINISH_ATTEMPT, [
      attempt.deliveryId,
      attempt.lease,
      attempt.status,
      attempt.attempt,
      attempt.nextAttemptAt,
      attempt.outcome,
      attempt.now,
      attempt.durationMs,
      attempt.error,
      attempt.status === "delivered",
      attempt.subscriptionId,
      attempt.startedAt,
    ]);
    return (row?.updated ?? 0) > 0;
  }

  /** True when this call disabled it. */
  async disable({ id, reason, now }: { id: string; reason: string; now: Date }): Promise<boolean> {
    const [row] = await this.db.sql.query<{ disabled: number }>(DISABLE, [id, now, reason]);
    return (row?.disabled ?? 0) > 0;
  }

  async backlog(): Promise<{ oldest: Date | null; pending: number }> {
    const [row] = await this.db.sql.query<{ oldest: Date | null; pending: number }>(BACKLOG, []);
    return row ?? { oldest: null, pending: 0 };
  }
}
