import { describe, expect, it } from "vitest";
import { applyPresence, type Presence } from "../../src/domain/presence.js";

const t = (seconds: number) => new Date(Date.UTC(2026, 11, 7, 14, 0, seconds));
const never: Presence = { present: false, since: null, at: null };

/** Applies reports in order, as a source delivered them; the state after each. */
function replay(reports: { state: "joined" | "left"; at: Date }[]): Presence {
  return reports.reduce((current, report) => {
    const outcome = applyPresence(current, report);
    return outcome.kind === "stale" ? current : outcome.next;
  }, never);
}

describe("presence from reports (API.md §10)", () => {
  it("records a join and a leave, each as a change with the time it began", () => {
    const joined = applyPresence(never, { state: "joined", at: t(1) });
    expect(joined).toEqual({ kind: "changed", next: { present: true, since: t(1), at: t(1) } });
    if (joined.kind !== "changed") throw new Error("unreachable");
    expect(applyPresence(joined.next, { state: "left", at: t(9) })).toEqual({
      kind: "changed",
      next: { present: false, since: t(9), at: t(9) },
    });
  });

  it("a first report of `left` is a change too (the source has now spoken)", () => {
    expect(applyPresence(never, { state: "left", at: t(1) })).toEqual({ kind: "changed", next: { present: false, since: t(1), at: t(1) } });
  });

  it("ignores a redelivery and anything older than what it holds", () => {
    const held: Presence = { present: true, since: t(5), at: t(5) };
    expect(applyPresence(held, { state: "joined", at: t(5) })).toEqual({ kind: "stale" });
    expect(applyPresence(held, { state: "left", at: t(4) })).toEqual({ kind: "stale" });
    expect(applyPresence(held, { state: "joined", at: t(1) })).toEqual({ kind: "stale" });
  });

  it("keeps `since` when a newer report confirms the state", () => {
    const held: Presence = { present: true, since: t(5), at: t(5) };
    expect(applyPresence(held, { state: "joined", at: t(8) })).toEqual({ kind: "confirmed", next: { present: true, since: t(5), at: t(8) } });
  });

  it("ends in the same state whatever order the reports arrive in, `left` winning a tie", () => {
    const reports = [
      { state: "joined" as const, at: t(1) },
      { state: "left" as const, at: t(3) },
      { state: "joined" as const, at: t(3) },
    ];
    const orders = [
      [0, 1, 2],
      [0, 2, 1],
      [1, 0, 2],
      [1, 2, 0],
      [2, 0, 1],
      [2, 1, 0],
    ];
    for (const order of orders) {
      expect(replay(order.map((i) => reports[i] as (typeof reports)[number])).present).toBe(false);
    }
    // A later rejoin wins over everything before it, in any order.
    const rejoin = [...reports, { state: "joined" as const, at: t(7) }];
    expect(replay([rejoin[3], rejoin[1], rejoin[0], rejoin[2]] as typeof rejoin)).toMatchObject({ present: true, at: t(7) });
  });
});
