/**
 * Presence (API.md §10): what a source last said of one participant, and how
 * a new report changes it. Sources redeliver and reorder their callbacks, so
 * a report is taken by the source's own time of the event, never by arrival:
 * an older report changes nothing, and of two reports with the same time
 * `left` wins (whatever order they arrive in, the outcome is the same).
 */

export type PresenceState = "joined" | "left";

export interface Presence {
  present: boolean;
  /** When the current state began (null: never reported). */
  since: Date | null;
  /** The source's time of the last report taken (null: none yet). */
  at: Date | null;
}

export interface PresenceReportAt {
  state: PresenceState;
  at: Date;
}

export type PresenceOutcome =
  /** The state flipped: stored, audited and emitted. */
  | { kind: "changed"; next: Presence }
  /** A newer report of the state already held (another connection, a reconnect): its time is kept, nothing is emitted. */
  | { kind: "confirmed"; next: Presence }
  /** Older than what is held, or a redelivery: nothing changes. */
  | { kind: "stale" };

export function applyPresence(current: Presence, report: PresenceReportAt): PresenceOutcome {
  const present = report.state === "joined";
  if (current.at !== null) {
    const age = report.at.getTime() - current.at.getTime();
    if (age < 0) return { kind: "stale" };
    // Same instant: only a `left` can still win (it does over a `joined` of the same time).
    if (age === 0 && (present || !current.present)) return { kind: "stale" };
  }
  if (present === current.present && current.at !== null) {
    return { kind: "confirmed", next: { present, since: current.since, at: report.at } };
  }
  return { kind: "changed", next: { present, since: report.at, at: report.at } };
}
