import { describe, expect, it } from "vitest";
import type { ParticipantRole } from "../../src/domain/join-window.js";
import { timedEvent } from "../../src/domain/outbound-events.js";
import {
  dueTimedEvents,
  instantOf,
  isTimedEventKind,
  missingRoles,
  type TimedEventKind,
  type TimedEventTimes,
  timedEventsAfterReschedule,
  timedEventState,
} from "../../src/domain/timed-events.js";

const at = (iso: string) => new Date(iso);
const MINUTE = 60_000;
const plus = (date: Date, minutes: number) => new Date(date.getTime() + minutes * MINUTE);

const policy = { noShowMinutes: 10 };
const noShowAtStart = { noShowMinutes: 0 };

/** 14:00–14:30 with the default policy: agent opens 13:50, customer 13:55, no-show 14:10, closes 14:45. */
const times: TimedEventTimes = {
  startsAt: at("2026-11-23T14:00:00.000Z"),
  agentOpensAt: at("2026-11-23T13:50:00.000Z"),
  customerOpensAt: at("2026-11-23T13:55:00.000Z"),
  closesAt: at("2026-11-23T14:45:00.000Z"),
};
const ALL: TimedEventKind[] = ["agent_opened", "customer_opened", "closed", "no_show"];

/** The same appointment moved by `minutes` (a reschedule). */
const moved = (minutes: number): TimedEventTimes => ({
  startsAt: plus(times.startsAt, minutes),
  agentOpensAt: plus(times.agentOpensAt, minutes),
  customerOpensAt: plus(times.customerOpensAt, minutes),
  closesAt: plus(times.closesAt, minutes),
});

describe("instantOf", () => {
  it("puts each opening at its role's opening time and the closing at closesAt", () => {
    expect(instantOf("agent_opened", times, policy)).toEqual(at("2026-11-23T13:50:00.000Z"));
    expect(instantOf("customer_opened", times, policy)).toEqual(at("2026-11-23T13:55:00.000Z"));
    expect(instantOf("closed", times, policy)).toEqual(at("2026-11-23T14:45:00.000Z"));
  });

  it("puts the no-show NO_SHOW_MINUTES after the start", () => {
    expect(instantOf("no_show", times, policy)).toEqual(at("2026-11-23T14:10:00.000Z"));
    expect(instantOf("no_show", times, { noShowMinutes: 1 })).toEqual(at("2026-11-23T14:01:00.000Z"));
  });

  it("accepts NO_SHOW_MINUTES 0: the no-show is at the start itself", () => {
    expect(instantOf("no_show", times, noShowAtStart)).toEqual(times.startsAt);
  });

  it("does not depend on the policy for the window's own instants", () => {
    for (const kind of ["agent_opened", "customer_opened", "closed"] as const) {
      expect(instantOf(kind, times, policy)).toEqual(instantOf(kind, times, noShowAtStart));
    }
  });

  it("answers a new Date for the no-show, never a shared one the caller could change", () => {
    const instant = instantOf("no_show", times, noShowAtStart);
    instant.setTime(0);
    expect(times.startsAt).toEqual(at("2026-11-23T14:00:00.000Z"));
  });
});

describe("isTimedEventKind", () => {
  it("recognises exactly the four kinds", () => {
    for (const kind of ALL) expect(isTimedEventKind(kind)).toBe(true);
    for (const other of ["", "opened", "join_window.opened", "AGENT_OPENED", "no-show", "closed "]) {
      expect(isTimedEventKind(other)).toBe(false);
    }
  });
});

describe("timedEventState", () => {
  it("is due first at the agent's opening when nothing was emitted", () => {
    expect(timedEventState(times, [], policy)).toEqual({ timedEventsEmitted: [], nextTimedEventAt: times.agentOpensAt });
  });

  it("takes the earliest instant not yet emitted, whatever the order of the kinds", () => {
    expect(timedEventState(times, ["agent_opened"], policy).nextTimedEventAt).toEqual(times.customerOpensAt);
    expect(timedEventState(times, ["agent_opened", "customer_opened"], policy).nextTimedEventAt).toEqual(at("2026-11-23T14:10:00.000Z"));
    expect(timedEventState(times, ["no_show", "customer_opened", "agent_opened"], policy).nextTimedEventAt).toEqual(times.closesAt);
    // Something emitted out of order (a later kind first) does not hide the earlier ones.
    expect(timedEventState(times, ["closed"], policy).nextTimedEventAt).toEqual(times.agentOpensAt);
    expect(timedEventState(times, ["closed", "agent_opened"], policy).nextTimedEventAt).toEqual(times.customerOpensAt);
  });

  it("is null once every kind was emitted", () => {
    expect(timedEventState(times, ALL, policy)).toEqual({ timedEventsEmitted: ALL, nextTimedEventAt: null });
    expect(timedEventState(times, [...ALL].reverse(), noShowAtStart).nextTimedEventAt).toBeNull();
  });

  it("with NO_SHOW_MINUTES 0 the no-show falls at the start, before the closing", () => {
    const state = timedEventState(times, ["agent_opened", "customer_opened"], noShowAtStart);
    expect(state.nextTimedEventAt).toEqual(times.startsAt);
    expect(timedEventState(times, ["agent_opened", "customer_opened", "no_show"], noShowAtStart).nextTimedEventAt).toEqual(times.closesAt);
  });

  it("when the no-show comes before an opening (a long early join and NO_SHOW 0), it is next in time order", () => {
    const late: TimedEventTimes = { ...times, customerOpensAt: plus(times.startsAt, 5) };
    expect(timedEventState(late, ["agent_opened"], noShowAtStart).nextTimedEventAt).toEqual(times.startsAt);
    expect(timedEventState(late, ["agent_opened", "no_show"], noShowAtStart).nextTimedEventAt).toEqual(late.customerOpensAt);
  });

  it("stores the emitted kinds in one canonical order, each once", () => {
    expect(timedEventState(times, ["no_show", "agent_opened", "no_show"], policy).timedEventsEmitted).toEqual(["agent_opened", "no_show"]);
    expect(timedEventState(times, ["closed", "customer_opened", "agent_opened", "no_show"], policy).timedEventsEmitted).toEqual(ALL);
  });

  it("does not change the array it was given", () => {
    const emitted: TimedEventKind[] = ["closed", "agent_opened"];
    timedEventState(times, emitted, policy);
    expect(emitted).toEqual(["closed", "agent_opened"]);
  });

  it("answers the earliest pending instant for every subset of emitted kinds", () => {
    const instants = new Map(ALL.map((kind) => [kind, instantOf(kind, times, policy).getTime()]));
    for (let mask = 0; mask < 16; mask++) {
      const emitted = ALL.filter((_, i) => (mask >> i) & 1);
      const pending = ALL.filter((kind) => !emitted.includes(kind)).map((kind) => instants.get(kind) ?? NaN);
      const state = timedEventState(times, emitted, policy);
      expect(state.nextTimedEventAt?.getTime() ?? null).toBe(pending.length === 0 ? null : Math.min(...pending));
      expect([...state.timedEventsEmitted].sort()).toEqual([...emitted].sort());
    }
  });
});

describe("timedEventsAfterReschedule", () => {
  const beforeAny = at("2026-11-23T13:00:00.000Z");
  const afterOpenings = at("2026-11-23T13:56:00.000Z");

  it("moved later: every kind emitted for the old times is armed again at its new instant", () => {
    const later = moved(24 * 60);
    const state = timedEventsAfterReschedule(later, ["agent_opened", "customer_opened"], afterOpenings, policy);
    expect(state).toEqual({ timedEventsEmitted: [], nextTimedEventAt: later.agentOpensAt });
  });

  it("moved later after everything was emitted: all four are armed again", () => {
    const later = moved(24 * 60);
    const state = timedEventsAfterReschedule(later, ALL, at("2026-11-23T15:00:00.000Z"), policy);
    expect(state).toEqual({ timedEventsEmitted: [], nextTimedEventAt: later.agentOpensAt });
  });

  it("moved a little later: only the kinds whose new instant is still ahead are armed again", () => {
    // 20 minutes later, at 13:56: the new agent opening (14:10) is ahead; all are re-armed.
    const later = moved(20);
    expect(timedEventsAfterReschedule(later, ["agent_opened", "customer_opened"], afterOpenings, policy)).toEqual({
      timedEventsEmitted: [],
      nextTimedEventAt: later.agentOpensAt,
    });
    // 4 minutes later, at 13:56: the agent's new opening (13:54) has passed, the customer's (13:59) is ahead.
    const slightly = moved(4);
    expect(timedEventsAfterReschedule(slightly, ["agent_opened", "customer_opened"], afterOpenings, policy)).toEqual({
      timedEventsEmitted: ["agent_opened"],
      nextTimedEventAt: slightly.customerOpensAt,
    });
  });

  it("moved earlier so that instants have passed: those already emitted stay emitted", () => {
    const earlier = moved(-3);
    const state = timedEventsAfterReschedule(earlier, ["agent_opened", "customer_opened"], afterOpenings, policy);
    expect(state).toEqual({ timedEventsEmitted: ["agent_opened", "customer_opened"], nextTimedEventAt: plus(earlier.startsAt, 10) });
    expect(dueTimedEvents(earlier, state.timedEventsEmitted, afterOpenings, policy)).toEqual([]);
  });

  it("moved earlier: a kind not yet emitted whose new instant has passed is due at once", () => {
    // At 13:56 the agent opening was emitted; moved 20 minutes earlier the customer's (13:35) and the no-show (13:50) have passed.
    const earlier = moved(-20);
    const state = timedEventsAfterReschedule(earlier, ["agent_opened"], afterOpenings, policy);
    expect(state.timedEventsEmitted).toEqual(["agent_opened"]);
    expect(state.nextTimedEventAt).toEqual(earlier.customerOpensAt);
    expect(state.nextTimedEventAt!.getTime()).toBeLessThanOrEqual(afterOpenings.getTime());
    expect(dueTimedEvents(earlier, state.timedEventsEmitted, afterOpenings, policy)).toEqual([
      { kind: "customer_opened", at: earlier.customerOpensAt },
      { kind: "no_show", at: plus(earlier.startsAt, 10) },
    ]);
  });

  it("moved earlier after the window closed: nothing is emitted twice", () => {
    const now = at("2026-11-23T15:00:00.000Z");
    const state = timedEventsAfterReschedule(moved(-60), ALL, now, policy);
    expect(state).toEqual({ timedEventsEmitted: ALL, nextTimedEventAt: null });
    expect(dueTimedEvents(moved(-60), state.timedEventsEmitted, now, policy)).toEqual([]);
  });

  it("a kind whose new instant is exactly now counts as passed (kept emitted, or due now)", () => {
    const now = times.agentOpensAt;
    expect(timedEventsAfterReschedule(times, ["agent_opened"], now, policy).timedEventsEmitted).toEqual(["agent_opened"]);
    expect(timedEventsAfterReschedule(times, [], now, policy).nextTimedEventAt).toEqual(now);
  });

  it("with nothing emitted it is the state of a new appointment", () => {
    for (const now of [beforeAny, afterOpenings, at("2026-11-24T00:00:00.000Z")]) {
      expect(timedEventsAfterReschedule(moved(30), [], now, policy)).toEqual(timedEventState(moved(30), [], policy));
    }
  });

  it("the same times again (a rebook of a cancelled one) keep what has passed and re-arm what has not", () => {
    const state = timedEventsAfterReschedule(times, ["agent_opened", "customer_opened", "no_show"], at("2026-11-23T14:05:00.000Z"), policy);
    // The no-show (14:10) is still ahead: it is emitted again at its instant.
    expect(state).toEqual({ timedEventsEmitted: ["agent_opened", "customer_opened"], nextTimedEventAt: at("2026-11-23T14:10:00.000Z") });
  });

  it("with NO_SHOW 0 the no-show instant moves with the start", () => {
    const later = moved(60);
    const state = timedEventsAfterReschedule(later, ["agent_opened", "customer_opened", "no_show"], at("2026-11-23T14:05:00.000Z"), noShowAtStart);
    expect(state).toEqual({ timedEventsEmitted: [], nextTimedEventAt: later.agentOpensAt });
  });
});

describe("dueTimedEvents", () => {
  it("nothing is due before the agent's opening", () => {
    expect(dueTimedEvents(times, [], plus(times.agentOpensAt, -0.001), policy)).toEqual([]);
  });

  it("a kind is due at its instant exactly", () => {
    expect(dueTimedEvents(times, [], times.agentOpensAt, policy)).toEqual([{ kind: "agent_opened", at: times.agentOpensAt }]);
  });

  it("answers each due kind with its own instant, oldest first", () => {
    const now = at("2026-11-23T16:00:00.000Z");
    expect(dueTimedEvents(times, [], now, policy)).toEqual([
      { kind: "agent_opened", at: at("2026-11-23T13:50:00.000Z") },
      { kind: "customer_opened", at: at("2026-11-23T13:55:00.000Z") },
      { kind: "no_show", at: at("2026-11-23T14:10:00.000Z") },
      { kind: "closed", at: at("2026-11-23T14:45:00.000Z") },
    ]);
  });

  it("orders by instant, not by kind: a no-show at the start comes before a late customer opening", () => {
    const late: TimedEventTimes = { ...times, customerOpensAt: plus(times.startsAt, 5) };
    expect(dueTimedEvents(late, [], at("2026-11-23T16:00:00.000Z"), noShowAtStart).map(({ kind }) => kind)).toEqual([
      "agent_opened",
      "no_show",
      "customer_opened",
      "closed",
    ]);
  });

  it("leaves out the kinds already emitted", () => {
    const now = at("2026-11-23T16:00:00.000Z");
    expect(dueTimedEvents(times, ["agent_opened", "closed"], now, policy)).toEqual([
      { kind: "customer_opened", at: times.customerOpensAt },
      { kind: "no_show", at: at("2026-11-23T14:10:00.000Z") },
    ]);
    expect(dueTimedEvents(times, ALL, now, policy)).toEqual([]);
  });

  it("stops at now: the kinds still ahead are not due", () => {
    expect(dueTimedEvents(times, [], at("2026-11-23T14:09:59.999Z"), policy).map(({ kind }) => kind)).toEqual(["agent_opened", "customer_opened"]);
    expect(dueTimedEvents(times, [], at("2026-11-23T14:10:00.000Z"), policy).map(({ kind }) => kind)).toEqual([
      "agent_opened",
      "customer_opened",
      "no_show",
    ]);
  });

  it("after the due kinds are emitted, the next instant is the first one after now", () => {
    const now = at("2026-11-23T14:00:00.000Z");
    const due = dueTimedEvents(times, [], now, policy);
    const state = timedEventState(times, due.map(({ kind }) => kind), policy);
    expect(state.nextTimedEventAt).toEqual(at("2026-11-23T14:10:00.000Z"));
    expect(state.nextTimedEventAt!.getTime()).toBeGreaterThan(now.getTime());
  });

  it("walking the clock through every instant emits each kind exactly once", () => {
    const emitted: TimedEventKind[] = [];
    const seen: TimedEventKind[] = [];
    for (let minute = -30; minute <= 90; minute++) {
      const now = plus(times.startsAt, minute);
      const due = dueTimedEvents(times, emitted, now, policy);
      for (const { kind, at: instant } of due) {
        expect(instant.getTime()).toBeLessThanOrEqual(now.getTime());
        seen.push(kind);
        emitted.push(kind);
      }
      const { nextTimedEventAt } = timedEventState(times, emitted, policy);
      if (nextTimedEventAt) expect(nextTimedEventAt.getTime()).toBeGreaterThan(now.getTime());
    }
    expect(seen).toEqual(["agent_opened", "customer_opened", "no_show", "closed"]);
    expect(timedEventState(times, emitted, policy).nextTimedEventAt).toBeNull();
  });
});

describe("missingRoles", () => {
  const present = (...roles: ParticipantRole[]) => new Set<ParticipantRole>(roles);

  it("names every role not present, moderator first", () => {
    expect(missingRoles(present())).toEqual(["moderator", "participant"]);
    expect(missingRoles(present("moderator"))).toEqual(["participant"]);
    expect(missingRoles(present("participant"))).toEqual(["moderator"]);
    expect(missingRoles(present("participant", "moderator"))).toEqual([]);
  });
});

describe("timedEvent", () => {
  const instant = at("2026-11-23T13:50:00.000Z");
  const nobody = new Set<ParticipantRole>();
  const both = new Set<ParticipantRole>(["moderator", "participant"]);

  it("the agent's opening is join_window.opened with role moderator, at its instant", () => {
    expect(timedEvent("agent_opened", "appt-1", instant, nobody)).toEqual({
      type: "join_window.opened",
      externalId: "appt-1",
      at: instant,
      data: { role: "moderator" },
    });
  });

  it("the customer's opening is join_window.opened with role participant", () => {
    expect(timedEvent("customer_opened", "appt-1", instant, both)).toEqual({
      type: "join_window.opened",
      externalId: "appt-1",
      at: instant,
      data: { role: "participant" },
    });
  });

  it("the closing is join_window.closed with no member of its own", () => {
    expect(timedEvent("closed", "appt-1", instant, both)).toEqual({ type: "join_window.closed", externalId: "appt-1", at: instant, data: {} });
  });

  it("the openings and the closing do not depend on who is present", () => {
    for (const kind of ["agent_opened", "customer_opened", "closed"] as const) {
      expect(timedEvent(kind, "appt-1", instant, nobody)).toEqual(timedEvent(kind, "appt-1", instant, both));
    }
  });

  it("a no-show with nobody present names both roles", () => {
    expect(timedEvent("no_show", "appt-1", instant, nobody)).toEqual({
      type: "appointment.no_show",
      externalId: "appt-1",
      at: instant,
      data: { missing: ["moderator", "participant"] },
    });
  });

  it("a no-show names only the role that was not present", () => {
    expect(timedEvent("no_show", "appt-1", instant, new Set<ParticipantRole>(["moderator"]))?.data).toEqual({ missing: ["participant"] });
    expect(timedEvent("no_show", "appt-1", instant, new Set<ParticipantRole>(["participant"]))?.data).toEqual({ missing: ["moderator"] });
  });

  it("with both present there is no no-show event at all", () => {
    expect(timedEvent("no_show", "appt-1", instant, both)).toBeNull();
  });

  it("never carries a token or anything but the type's own members", () => {
    for (const kind of ALL) {
      const event = timedEvent(kind, "appt-1", instant, nobody);
      expect(event).not.toBeNull();
      expect(Object.keys(event!.data).every((key) => key === "role" || key === "missing")).toBe(true);
    }
  });
});
