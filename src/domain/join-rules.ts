import { AppError, notFound } from "./errors.js";
import { type JoinWindow, opensAtFor, type ParticipantRole, roleOf } from "./join-window.js";

/**
 * Every check of API.md §3 after authentication and body validation, in the
 * contract's order. They come in two halves because the second needs the live
 * tokens, which are read (under the locks) only once the first has passed:
 * `checkWindow` (404, 409 cancelled, 403 blocked, 425 too early, 410 closed),
 * then `checkHolders` (425 waiting for the host, 409 active elsewhere, 409
 * participant limit). A check
 * added to §3 goes into the half whose facts it needs, at its place in the
 * order.
 */

export interface JoinableAppointment extends JoinWindow {
  id: string;
  status: "scheduled" | "cancelled";
  accessBlocked: boolean;
  agentId: string;
  customerId: string;
  maxParticipants: number;
  waitingRoom: boolean;
}

/** How soon a customer waiting for the host asks again (API.md §3: at most 10 s). */
export const WAITING_FOR_HOST_RETRY_SECONDS = 3;

/** A live (unrevoked, unexpired) token of the caller anywhere, or of anyone in the appointment. */
export interface LiveToken {
  appointmentId: string;
  /** Its appointment's externalId. */
  externalId: string;
  userId: string;
}

export interface Admission {
  role: ParticipantRole;
  /** The caller's opening time: the token's notBefore. */
  opensAt: Date;
}

/** The first half: who the caller is to this appointment, and whether its window is open to them now. */
export function checkWindow<A extends JoinableAppointment>(
  appointment: A | undefined,
  userId: string,
  now: Date,
): Admission & { appointment: A } {
  const role = appointment ? roleOf(appointment, userId) : null;
  // A stranger learns nothing, not even that the appointment exists.
  if (!appointment || !role) throw notFound("No such appointment.");
  if (appointment.status === "cancelled") throw new AppError("appointment_cancelled", "The appointment was cancelled.");
  if (appointment.accessBlocked) throw new AppError("access_blocked", "Access to this appointment is blocked by an operator.");
  const opensAt = opensAtFor(appointment, role);
  if (now.getTime() < opensAt.getTime()) {
    const retryAfter = Math.max(1, Math.ceil((opensAt.getTime() - now.getTime()) / 1000));
    throw new AppError(
      "too_early",
      `The join window opens at ${opensAt.toISOString()}.`,
      { opensAt: opensAt.toISOString() },
      { "retry-after": String(retryAfter) },
    );
  }
  if (now.getTime() >= appointment.closesAt.getTime()) {
    throw new AppError("join_window_closed", `The join window closed at ${appointment.closesAt.toISOString()}.`, {
      closedAt: appointment.closesAt.toISOString(),
    });
  }
  return { appointment, role, opensAt };
}

/** The second half: what the live tokens allow. */
export function checkHolders(
  appointment: JoinableAppointment,
  request: { userId: string; supersede: boolean },
  liveTokens: readonly LiveToken[],
): void {
  // The waiting room: the host is in once the agent holds a live token here. The agent is never held.
  if (
    appointment.waitingRoom &&
    request.userId !== appointment.agentId &&
    !liveTokens.some((t) => t.appointmentId === appointment.id && t.userId === appointment.agentId)
  ) {
    throw new AppError(
      "waiting_for_host",
      "The host has not joined yet; ask again after Retry-After seconds.",
      {},
      { "retry-after": String(WAITING_FOR_HOST_RETRY_SECONDS) },
    );
  }
  const elsewhere = liveTokens.find((t) => t.userId === request.userId && t.appointmentId !== appointment.id);
  if (elsewhere && !request.supersede) {
    throw new AppError(
      "active_elsewhere",
      "You hold a live join token for another appointment; join with supersede: true to leave it.",
      { otherAppointmentId: elsewhere.externalId },
    );
  }
  const others = new Set(
    liveTokens.filter((t) => t.appointmentId === appointment.id && t.userId !== request.userId).map((t) => t.userId),
  );
  if (others.size + 1 > appointment.maxParticipants) {
    throw new AppError("participant_limit", `The appointment allows ${appointment.maxParticipants} participant(s) at a time.`);
  }
}
