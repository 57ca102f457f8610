import type { ParticipantRole } from "./join-window.js";

/**
 * Timed events (API.md §9): `join_window.opened` for each role, at its
 * opening time; `join_window.closed` at `closesAt`; `appointment.no_show`
 * `NO_SHOW_MINUTES` after the start. Pure rules, no I/O. An appointment keeps
 * the kinds already emitted for its current times and the instant the next
 * one is due; the timed-events worker reads only that instant's index.
 */
export type TimedEventKind = "agent_opened" | "customer_opened" | "closed" | "no_show";

const KINDS: readonly TimedEventKind[] = ["agent_opened", "customer_opened", "closed", "no_show"];

export interface TimedEventPolicy {
  noShowMinutes: number;
}

export interface TimedEventTimes {
  startsAt: Date;
  agentOpensAt: Date;
  customerOpensAt: Date;
  closesAt: Date;
}

/** What is stored with an appointment about its timed events. */
export interface TimedEventState {
  timedEventsEmitted: TimedEventKind[];
  /** Null when none is left to emit (all emitted, or the appointment was cancelled). */
  nextTimedEventAt: Date | null;
}

const MINUTE_MS = 60_000;

export function instantOf(kind: TimedEventKind, times: TimedEventTimes, policy: TimedEventPolicy): Date {
  switch (kind) {
    case "agent_opened":
      return times.agentOpensAt;
    case "customer_opened":
      return times.customerOpensAt;
    case "closed":
      return times.closesAt;
    case "no_show":
      return new Date(times.startsAt.getTime() + policy.noShowMinutes * MINUTE_MS);
  }
}

export const isTimedEventKind = (value: string): value is TimedEventKind => (KINDS as readonly string[]).includes(value);

/** The state once `emitted` have been emitted: the earliest instant among the others, or null. */
export function timedEventState(times: TimedEventTimes, emitted: readonly TimedEventKind[], policy: TimedEventPolicy): TimedEventState {
  const pending = KINDS.filter((kind) => !emitted.includes(kind)).map((kind) => instantOf(kind, times, policy).getTime());
  return {
    timedEventsEmitted: KINDS.filter((kind) => emitted.includes(kind)),
    nextTimedEventAt: pending.length === 0 ? null : new Date(Math.min(...pending)),
  };
}

/**
 * After the times changed (a reschedule, or a cancelled appointment booked
 * again): a kind whose new instant is still ahead is emitted at that instant,
 * again if it had been emitted for the old times; one whose new instant has
 * passed is emitted at once, unless it was already emitted.
 */
export function timedEventsAfterReschedule(
  times: TimedEventTimes,
  emitted: readonly TimedEventKind[],
  now: Date,
  policy: TimedEventPolicy,
): TimedEventState {
  const stillEmitted = emitted.filter((kind) => instantOf(kind, times, policy).getTime() <= now.getTime());
  return timedEventState(times, stillEmitted, policy);
}

/** The kinds due at `now` and not yet emitted, oldest instant first. */
export function dueTimedEvents(
  times: TimedEventTimes,
  emitted: readonly TimedEventKind[],
  now: Date,
  policy: TimedEventPolicy,
): { kind: TimedEventKind; at: Date }[] {
  return KINDS.filter((kind) => !emitted.includes(kind))
    .map((kind) => ({ kind, at: instantOf(kind, times, policy) }))
    .filter(({ at }) => at.getTime() <= now.getTime())
    .sort((a, b) => a.at.getTime() - b.at.getTime());
}

/**
 * Who counts as missing for `appointment.no_show`: a role not present. Until
 * a presence source reports (§10), present means "was issued a token for the
 * appointment's current times".
 */
export function missingRoles(present: ReadonlySet<ParticipantRole>): ParticipantRole[] {
  return (["moderator", "participant"] as const).filter((role) => !present.has(role));
}
