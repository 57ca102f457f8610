import type { ScheduleFields } from "../../domain/lifecycle.js";
import type { Appointment } from "../../generated/prisma/client.js";
import { statement } from "../sql.js";

/**
 * The appointment row as every repository returns it: the Prisma model's
 * shape (camelCase, Dates), whether it was read by Prisma or by plain SQL.
 */
export type AppointmentRow = Appointment;

export const APPOINTMENT_COLUMNS = `id, external_id AS "externalId", status, revision, starts_at AS "startsAt",
  ends_at AS "endsAt", time_zone AS "timeZone", agent_id AS "agentId", agent_name AS "agentName",
  customer_id AS "customerId", customer_name AS "customerName", max_participants AS "maxParticipants",
  waiting_room AS "waitingRoom", recording, agent_opens_at AS "agentOpensAt", customer_opens_at AS "customerOpensAt",
  closes_at AS "closesAt", provider, session_id AS "sessionId", session_status AS "sessionStatus",
  session_attempts AS "sessionAttempts", session_next_attempt_at AS "sessionNextAttemptAt",
  session_last_error AS "sessionLastError", session_claimed_until AS "sessionClaimedUntil",
  session_room_url AS "sessionRoomUrl", session_closes_at AS "sessionClosesAt",
  agent_present AS "agentPresent", agent_present_since AS "agentPresentSince", agent_presence_at AS "agentPresenceAt",
  customer_present AS "customerPresent", customer_present_since AS "customerPresentSince",
  customer_presence_at AS "customerPresenceAt",
  access_blocked AS "accessBlocked", timed_events_emitted AS "timedEventsEmitted", next_timed_event_at AS "nextTimedEventAt",
  cancelled_at AS "cancelledAt", created_at AS "createdAt", updated_at AS "updatedAt"`;

/** Serialises transactions on one key (an externalId, a user) across every replica, until commit. */
export const LOCK_KEY = statement("jw_lock_key", "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))");

export const SCHEDULE_COLUMNS = `status, revision, starts_at, ends_at, time_zone, agent_id, agent_name, customer_id, customer_name,
  max_participants, waiting_room, recording, agent_opens_at, customer_opens_at, closes_at, cancelled_at, updated_at,
  timed_events_emitted, next_timed_event_at`;

/** SCHEDULE_COLUMNS' placeholders from $first, with the casts Postgres cannot infer. */
export const schedulePlaceholders = (first: number) =>
  Array.from({ length: 19 }, (_, i) => {
    const cast = i === 0 ? `::"AppointmentStatus"` : i === 17 ? "::text[]" : "";
    return `$${first + i}${cast}`;
  }).join(", ");

/** The values of SCHEDULE_COLUMNS, in their order. */
export const scheduleValues = (
  f: ScheduleFields,
  timers: Pick<AppointmentRow, "timedEventsEmitted" | "nextTimedEventAt">,
  now: Date,
): unknown[] => [
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
  timers.timedEventsEmitted,
  timers.nextTimedEventAt,
];
