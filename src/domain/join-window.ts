import { AppError } from "../errors.js";
import type { ParticipantRole } from "../providers/video-provider.js";

export interface JoinPolicy {
  earlyJoinMinutesAgent: number;
  earlyJoinMinutesCustomer: number;
  graceMinutes: number;
}

export interface JoinWindow {
  agentOpensAt: Date;
  customerOpensAt: Date;
  closesAt: Date;
}

const MINUTE_MS = 60_000;

/** API.md §1: agent opens at start − early(agent), customer at start − early(customer), both close at end + grace. */
export function joinWindowFor(times: { startsAt: Date; endsAt: Date }, policy: JoinPolicy): JoinWindow {
  return {
    agentOpensAt: new Date(times.startsAt.getTime() - policy.earlyJoinMinutesAgent * MINUTE_MS),
    customerOpensAt: new Date(times.startsAt.getTime() - policy.earlyJoinMinutesCustomer * MINUTE_MS),
    closesAt: new Date(times.endsAt.getTime() + policy.graceMinutes * MINUTE_MS),
  };
}

/**
 * The longest a join token can live: it is issued no earlier than the
 * earliest opening time and expires at closesAt, and an appointment lasts at
 * most 24 h. Signing keys stay published this long after they stop signing.
 */
export function maxTokenLifetimeMs(policy: JoinPolicy, maxAppointmentMs: number): number {
  return (
    Math.max(policy.earlyJoinMinutesAgent, policy.earlyJoinMinutesCustomer) * MINUTE_MS +
    maxAppointmentMs +
    policy.graceMinutes * MINUTE_MS
  );
}

export interface JoinableAppointment extends JoinWindow {
  status: "scheduled" | "cancelled";
  accessBlocked: boolean;
  agentId: string;
  customerId: string;
}

export function roleOf(appointment: Pick<JoinableAppointment, "agentId" | "customerId">, userId: string) {
  if (appointment.agentId === userId) return "moderator" as const;
  if (appointment.customerId === userId) return "participant" as const;
  return null;
}

export const opensAtFor = (window: JoinWindow, role: ParticipantRole) =>
  role === "moderator" ? window.agentOpensAt : window.customerOpensAt;

/**
 * The first rows of API.md §3, in the contract's order, for a known caller:
 * 404 for a stranger (existence is not revealed), 409 cancelled, 403 blocked,
 * 425 too early, 410 closed. Returns the caller's role when they may go on.
 */
export function checkJoinWindow(
  appointment: JoinableAppointment | null,
  userId: string,
  now: Date,
): { role: ParticipantRole; opensAt: Date } {
  const role = appointment ? roleOf(appointment, userId) : null;
  if (!appointment || !role) throw new AppError(404, "not_found", "Not Found", "No such appointment.");
  if (appointment.status === "cancelled") {
    throw new AppError(409, "appointment_cancelled", "Conflict", "The appointment was cancelled.");
  }
  if (appointment.accessBlocked) {
    throw new AppError(403, "access_blocked", "Forbidden", "Access to this appointment is blocked by an operator.");
  }
  const opensAt = opensAtFor(appointment, role);
  if (now.getTime() < opensAt.getTime()) {
    const retryAfter = Math.max(1, Math.ceil((opensAt.getTime() - now.getTime()) / 1000));
    throw new AppError(
      425,
      "too_early",
      "Too Early",
      `The join window opens at ${opensAt.toISOString()}.`,
      { opensAt: opensAt.toISOString() },
      { "retry-after": String(retryAfter) },
    );
  }
  if (now.getTime() >= appointment.closesAt.getTime()) {
    throw new AppError(
      410,
      "join_window_closed",
      "Gone",
      `The join window closed at ${appointment.closesAt.toISOString()}.`,
      { closedAt: appointment.closesAt.toISOString() },
    );
  }
  return { role, opensAt };
}
