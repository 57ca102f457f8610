import type { AuditEntry } from "../../domain/audit-entry.js";
import type { OutboundEvent } from "../../domain/outbound-events.js";
import type { PrismaClient } from "../database.js";
import type { Prisma } from "../../generated/prisma/client.js";
import { type Queryable, statement } from "../sql.js";
import { APPOINTMENT_COLUMNS, type AppointmentRow, SCHEDULE_COLUMNS, schedulePlaceholders, scheduleValues } from "./appointment-rows.js";
import { AUDIT_FROM_COLUMNS, auditColumns } from "./audit.js";
import { outboxColumns, outboxInsert, SUBSCRIBED } from "./outbox.js";

/**
 * The two locks of a delivery, in this order, until commit: the delivery id
 * (a concurrent redelivery waits here, then finds the stored answer) and the
 * appointment's externalId (every change of the appointment takes it). The
 * first is an uncorrelated subquery, which Postgres runs once, as a gate,
 * before the second.
 */
const LOCK_DELIVERY_AND_APPOINTMENT = statement(
  "jw_lock_delivery_and_appointment",
  `SELECT pg_advisory_xact_lock(hashtextextended($2, 0))::text AS appointment
   WHERE (SELECT pg_advisory_xact_lock(hashtextextended($1, 0))::text) IS NOT NULL`,
);

/**
 * What a delivery reads, in one round trip once both its locks are held: the
 * stored answer of its id, the appointment (row-locked), its tombstone, and
 * whether any subscription is active (outbox.ts, SUBSCRIBED). One row, whose
 * columns are null for what does not exist.
 */
const STORED_STATE = statement(
  "jw_stored_state",
  `WITH appointment AS (SELECT ${APPOINTMENT_COLUMNS} FROM appointments WHERE external_id = $1 FOR UPDATE)
   SELECT appointment.*, t.external_id IS NOT NULL AS "hasTombstone", t.revision AS "tombstoneRevision",
          d.response_status AS "deliveryStatus", d.response_body AS "deliveryBody", ${SUBSCRIBED}
   FROM (VALUES (true)) AS one (x)
   LEFT JOIN appointment ON true
   LEFT JOIN cancellation_tombstones t ON t.external_id = $1
   LEFT JOIN webhook_deliveries d ON d.webhook_id = $2`,
);

/**
 * A delivery's stored answer, written once the outcome is known, after its
 * audit entries ($1..$6): $7 delivery id, $8 event type, $9 externalId,
 * $10 status, $11 body; its lifecycle events, if it has any, go to the
 * outbox from $events.
 */
const auditEventsAndDelivery = (events: number | null) => `audit AS (${AUDIT_FROM_COLUMNS})${events === null ? "" : `,
   events AS (${outboxInsert(events)})`}
   INSERT INTO webhook_deliveries (webhook_id, event_type, external_id, response_status, response_body)
   VALUES ($7, $8, $9, $10, $11::jsonb)`;

const finishDelivery = (withEvents: boolean) =>
  statement(withEvents ? "jw_finish_delivery_with_events" : "jw_finish_delivery", `WITH ${auditEventsAndDelivery(withEvents ? 12 : null)}`);

/**
 * A new appointment ($12..$39), its audit entries, its events if any
 * ($40..$44) and the delivery's stored answer ($1..$11, as finishDelivery):
 * the last write of a delivery, in one round trip.
 */
const insertAppointmentAndFinish = (withEvents: boolean) =>
  statement(
    withEvents ? "jw_insert_appointment_and_finish_with_events" : "jw_insert_appointment_and_finish",
    `WITH appointment AS (
     INSERT INTO appointments (${SCHEDULE_COLUMNS}, id, external_id, provider, session_id, session_status, session_attempts,
       session_next_attempt_at, session_last_error, session_claimed_until, access_blocked, created_at)
     VALUES (${schedulePlaceholders(12)}, $31, $32, $33, $34, $35::"SessionStatus", $36, $37, $38, $39, false, $28)),
   ${auditEventsAndDelivery(withEvents ? 40 : null)}`,
  );

const FINISH = { plain: finishDelivery(false), withEvents: finishDelivery(true) };
const INSERT_AND_FINISH = { plain: insertAppointmentAndFinish(false), withEvents: insertAppointmentAndFinish(true) };

const insertValues = (row: AppointmentRow, now: Date): unknown[] => [
  ...scheduleValues({ ...row, status: "scheduled", cancelledAt: null }, row, now),
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

export interface StoredAnswer {
  responseStatus: number;
  responseBody: unknown;
}

export interface StoredState {
  /** The answer already stored for this delivery id; undefined for a first delivery. */
  delivery: StoredAnswer | undefined;
  /** The appointment, locked; undefined when there is none. */
  appointment: AppointmentRow | undefined;
  /** The cancellation recorded for an externalId without an appointment; undefined when there is none. */
  tombstone: { revision: number | null } | undefined;
  /** Whether any subscription is active: if none is, the delivery writes no event. */
  subscribed: boolean;
}

interface StoredStateRow extends AppointmentRow {
  hasTombstone: boolean;
  tombstoneRevision: number | null;
  deliveryStatus: number | null;
  deliveryBody: unknown;
  subscribed: boolean;
}

/** Inbound scheduler deliveries, each with the answer it got, so a redelivery gets the same one. */
export class WebhookDeliveriesRepository {
  constructor(private readonly db: { prisma: PrismaClient }) {}

  /** Serialises the delivery and the appointment it concerns until the transaction ends. */
  async lock({ tx, deliveryId, externalId }: { tx: Queryable; deliveryId: string; externalId: string }): Promise<void> {
    await tx.query(LOCK_DELIVERY_AND_APPOINTMENT, [`webhook:${deliveryId}`, `appointment:${externalId}`]);
  }

  async storedState({ tx, deliveryId, externalId }: { tx: Queryable; deliveryId: string; externalId: string }): Promise<StoredState> {
    const [row] = await tx.query<StoredStateRow>(STORED_STATE, [externalId, deliveryId]);
    if (!row) throw new Error("the stored-state query returned no row");
    const { hasTombstone, tombstoneRevision, deliveryStatus, deliveryBody, subscribed, ...appointment } = row;
    return {
      delivery: deliveryStatus === null ? undefined : { responseStatus: deliveryStatus, responseBody: deliveryBody },
      appointment: appointment.id === null ? undefined : appointment,
      tombstone: hasTombstone ? { revision: tombstoneRevision } : undefined,
      subscribed,
    };
  }

  /**
   * The delivery's last write: its audit entries, its lifecycle events (none
   * when no subscription is active), its stored answer and, for a new
   * appointment, the appointment itself, in one statement.
   */
  async finish(delivery: {
    tx: Queryable;
    deliveryId: string;
    eventType: string;
    externalId: string;
    answer: StoredAnswer;
    audit: readonly AuditEntry[];
    events: readonly OutboundEvent[];
    newAppointment?: AppointmentRow;
    now: Date;
  }): Promise<void> {
    const { tx, now, newAppointment } = delivery;
    const values = [
      ...auditColumns(delivery.audit, now),
      delivery.deliveryId,
      delivery.eventType,
      delivery.externalId,
      delivery.answer.responseStatus,
      JSON.stringify(delivery.answer.responseBody),
    ];
    const events = delivery.events.length > 0 ? outboxColumns(delivery.events, now) : [];
    const variant = events.length > 0 ? "withEvents" : "plain";
    if (newAppointment) await tx.query(INSERT_AND_FINISH[variant], [...values, ...insertValues(newAppointment, now), ...events]);
    else await tx.query(FINISH[variant], [...values, ...events]);
  }

  async find({ deliveryId }: { deliveryId: string }) {
    return this.db.prisma.webhookDelivery.findUniqueOrThrow({ where: { webhookId: deliveryId } });
  }

  /** Replaces the answer stored as `from` (one still being made) by `answer`; false when someone else did first. */
  async settle({ deliveryId, from, answer }: { deliveryId: string; from: number; answer: StoredAnswer }): Promise<boolean> {
    const { count } = await this.db.prisma.webhookDelivery.updateMany({
      where: { webhookId: deliveryId, responseStatus: from },
      data: { responseStatus: answer.responseStatus, responseBody: answer.responseBody as Prisma.InputJsonValue },
    });
    return count === 1;
  }
}
