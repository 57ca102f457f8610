import type { OutboundEvent } from "../../domain/outbound-events.js";
import { type Queryable, statement } from "../sql.js";

/**
 * The outbox (API.md §9): every lifecycle event is inserted by the statement
 * that writes the change it reports, or by one more statement in its
 * transaction, so an event exists exactly when its change committed. The
 * dispatcher later moves each into a delivery per matching subscription and
 * deletes it (fanOut).
 *
 * An event no active subscription wants is not written at all: nobody could
 * ever receive it, and a service nobody subscribes to then pays one lookup in
 * a table of a few rows instead of a row written and deleted per event. A
 * subscription therefore receives the events of changes whose statement ran
 * after it was created.
 */

/**
 * A column saying whether any subscription is active, read by a hot path's
 * first statement: when none is, its last statement is the variant that does
 * not touch the outbox at all (each relation a statement touches costs a lock
 * and, past 16 in a transaction, one in Postgres's shared lock table).
 */
export const SUBSCRIBED = `EXISTS (SELECT 1 FROM subscriptions WHERE status = 'active') AS "subscribed"`;

/** Whether an active subscription wants events of the type `typeExpression` (SQL) names. */
export const wanted = (typeExpression: string) =>
  `EXISTS (SELECT 1 FROM subscriptions s
           WHERE s.status = 'active' AND (cardinality(s.events) = 0 OR ${typeExpression} = ANY (s.events)))`;

/**
 * Any number of events from the five parameters of outboxColumns, starting at
 * $first: a CTE of a change's own statement, or a statement of its own.
 */
export const outboxInsert = (first: number) =>
  `INSERT INTO outbox_events (type, external_id, at, data, created_at)
   SELECT type, external_id, at, data, $${first + 4}::timestamptz
   FROM unnest($${first}::text[], $${first + 1}::text[], $${first + 2}::timestamptz[], $${first + 3}::jsonb[])
     AS e (type, external_id, at, data)
   WHERE ${wanted("e.type")}`;

/**
 * Events as the parameters outboxInsert takes: four column arrays and the
 * time they are written. Instants go as ISO text: pg would format each Date
 * of an array field by field in the host's local time.
 */
export const outboxColumns = (events: readonly OutboundEvent[], now: Date): unknown[] => [
  events.map((e) => e.type),
  events.map((e) => e.externalId),
  events.map((e) => e.at.toISOString()),
  events.map((e) => JSON.stringify(e.data)),
  now,
];

const INSERT_EVENTS = statement("jw_insert_outbox_events", outboxInsert(1));

/**
 * Takes the oldest events no other replica is taking, makes one pending
 * delivery of each for every active subscription that wants its type, and
 * deletes them; answers how many of each type it took (the events emitted).
 */
const FAN_OUT = statement(
  "jw_fan_out_events",
  `WITH batch AS (
     DELETE FROM outbox_events
     WHERE id IN (SELECT id FROM outbox_events ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
     RETURNING id, event_id, type, external_id, at, data, created_at),
   fanned AS (
     INSERT INTO subscription_deliveries (subscription_id, event_id, sequence, type, external_id, at, data, event_created_at,
       next_attempt_at, created_at)
     SELECT s.id, b.event_id, b.id, b.type, b.external_id, b.at, b.data, b.created_at, $2, $2
     FROM batch b JOIN subscriptions s ON s.status = 'active' AND (cardinality(s.events) = 0 OR b.type = ANY (s.events))
     ON CONFLICT (subscription_id, event_id) DO NOTHING)
   SELECT type, count(*)::int AS count FROM batch GROUP BY type`,
);

/** When the oldest event not yet fanned out was written; null when there is none. */
const OLDEST_UNDISPATCHED = statement(
  "jw_oldest_outbox_event",
  `SELECT created_at AS "createdAt" FROM outbox_events ORDER BY id LIMIT 1`,
);

export class OutboxRepository {
  constructor(private readonly db: { sql: Queryable }) {}

  /** In the transaction of the change the events report. */
  async record({ tx, events, now }: { tx: Queryable; events: readonly OutboundEvent[]; now: Date }): Promise<void> {
    if (events.length === 0) return;
    await tx.query(INSERT_EVENTS, outboxColumns(events, now));
  }

  /** One fan-out batch; the counts of the events taken, by type. */
  async fanOut({ limit, now }: { limit: number; now: Date }): Promise<{ type: string; count: number }[]> {
    return this.db.sql.query(FAN_OUT, [limit, now]);
  }

  async oldestUndispatched(): Promise<Date | null> {
    const [row] = await this.db.sql.query<{ createdAt: Date }>(OLDEST_UNDISPATCHED, []);
    return row?.createdAt ?? null;
  }
}
