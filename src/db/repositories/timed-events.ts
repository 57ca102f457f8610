import type { OutboundEvent } from "../../domain/outbound-events.js";
import type { TimedEventState } from "../../domain/timed-events.js";
import { type Queryable, statement } from "../sql.js";
import { outboxColumns, outboxInsert } from "./outbox.js";

/** A token taken back because the appointment moved or was cancelled does not say its holder came. */
const STILL_COUNTS = `(t.revocation_reason IS NULL OR t.revocation_reason NOT IN ('rescheduled', 'cancelled'))`;

/**
 * Whether a participant came, for `appointment.no_show` (API.md §9): once a
 * presence source has reported on this window (for either of them), what it
 * said of this one (any report: they were in the room at some point);
 * until then, whether they were issued a token for the window as it is.
 */
const came = (prefix: "agent" | "customer", userColumn: string, opensColumn: string) =>
  `CASE WHEN a.${prefix}_presence_at >= a.agent_opens_at THEN true
        WHEN a.agent_presence_at >= a.agent_opens_at OR a.customer_presence_at >= a.agent_opens_at THEN false
        ELSE EXISTS (SELECT 1 FROM join_tokens t
                     WHERE t.appointment_id = a.id AND t.user_id = a.${userColumn} AND t.not_before = a.${opensColumn}
                       AND t.expires_at = a.closes_at AND ${STILL_COUNTS}) END`;

/**
 * Appointments with a timed event due (API.md §9), read through the partial
 * index on next_timed_event_at and row-locked, skipping those another replica
 * (or a join, a webhook) holds: each timed event is emitted by one replica.
 * With each, whether its agent and its customer came (who counts as present
 * for `appointment.no_show`, see `came`): a token made for the window as it
 * is now (its notBefore and expiry), not taken back by a reschedule or a
 * cancellation, counts until a presence source reports.
 */
const CLAIM_DUE = statement(
  "jw_claim_timed_events",
  `SELECT a.id, a.external_id AS "externalId", a.starts_at AS "startsAt", a.agent_opens_at AS "agentOpensAt",
          a.customer_opens_at AS "customerOpensAt", a.closes_at AS "closesAt", a.timed_events_emitted AS "timedEventsEmitted",
          ${came("agent", "agent_id", "agent_opens_at")} AS "agentCame",
          ${came("customer", "customer_id", "customer_opens_at")} AS "customerCame"
   FROM appointments a
   WHERE a.next_timed_event_at <= $1
   ORDER BY a.next_timed_event_at
   LIMIT $2
   FOR UPDATE OF a SKIP LOCKED`,
);

/** The new timed-event state of each appointment ($1..$3) and the events emitted ($4..$8), in one statement. */
const RECORD = statement(
  "jw_record_timed_events",
  `WITH updated AS (
     UPDATE appointments a SET timed_events_emitted = string_to_array(u.emitted, ','), next_timed_event_at = u.next
     FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS u (id, emitted, next)
     WHERE a.id = u.id),
   events AS (${outboxInsert(4)})
   SELECT 1`,
);

/** The earliest instant any appointment has a timed event due, from the same index (its first entry); null when none has. */
const NEXT_DUE = statement(
  "jw_next_timed_event",
  `SELECT min(next_timed_event_at) AS "nextDue" FROM appointments WHERE next_timed_event_at IS NOT NULL`,
);

export interface DueAppointment {
  id: string;
  externalId: string;
  startsAt: Date;
  agentOpensAt: Date;
  customerOpensAt: Date;
  closesAt: Date;
  timedEventsEmitted: string[];
  agentCame: boolean;
  customerCame: boolean;
}

export class TimedEventsRepository {
  constructor(private readonly db: { sql: Queryable }) {}

  async nextDue(): Promise<Date | null> {
    const [row] = await this.db.sql.query<{ nextDue: Date | null }>(NEXT_DUE, []);
    return row?.nextDue ?? null;
  }

  async claimDue({ tx, now, limit }: { tx: Queryable; now: Date; limit: number }): Promise<DueAppointment[]> {
    return tx.query<DueAppointment>(CLAIM_DUE, [now, limit]);
  }

  async record({
    tx,
    states,
    events,
    now,
  }: {
    tx: Queryable;
    states: readonly ({ id: string } & TimedEventState)[];
    events: readonly OutboundEvent[];
    now: Date;
  }): Promise<void> {
    await tx.query(RECORD, [
      states.map((s) => s.id),
      states.map((s) => s.timedEventsEmitted.join(",")),
      states.map((s) => s.nextTimedEventAt?.toISOString() ?? null),
      ...outboxColumns(events, now),
    ]);
  }
}
