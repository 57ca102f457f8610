import { describe, expect, it } from "vitest";
import { joinWindowFor, maxTokenLifetimeMs, opensAtFor, roleOf } from "../../src/domain/join-window.js";

const MINUTE = 60_000;
const policy = { earlyJoinMinutesAgent: 10, earlyJoinMinutesCustomer: 5, graceMinutes: 15 };
const startsAt = new Date("2026-11-23T14:00:00.000Z");
const endsAt = new Date("2026-11-23T14:30:00.000Z");

describe("the join window (API.md §1)", () => {
  it("opens for the agent and the customer at start minus their leads and closes at end plus the grace", () => {
    expect(joinWindowFor({ startsAt, endsAt }, policy)).toEqual({
      agentOpensAt: new Date("2026-11-23T13:50:00.000Z"),
      customerOpensAt: new Date("2026-11-23T13:55:00.000Z"),
      closesAt: new Date("2026-11-23T14:45:00.000Z"),
    });
  });

  it("accepts zero leads and no grace: the window is the appointment itself", () => {
    const window = joinWindowFor({ startsAt, endsAt }, { earlyJoinMinutesAgent: 0, earlyJoinMinutesCustomer: 0, graceMinutes: 0 });
    expect(window).toEqual({ agentOpensAt: startsAt, customerOpensAt: startsAt, closesAt: endsAt });
  });

  it("keeps every instant exact to the millisecond", () => {
    const odd = new Date("2026-03-29T00:59:59.999Z");
    const window = joinWindowFor({ startsAt: odd, endsAt: new Date(odd.getTime() + 1) }, policy);
    expect(window.agentOpensAt.getTime()).toBe(odd.getTime() - 10 * MINUTE);
    expect(window.closesAt.getTime()).toBe(odd.getTime() + 1 + 15 * MINUTE);
  });

  it("says how long a token can live at most: the earliest opening to the close of the longest appointment", () => {
    expect(maxTokenLifetimeMs(policy, 24 * 60 * MINUTE)).toBe((10 + 24 * 60 + 15) * MINUTE);
    expect(maxTokenLifetimeMs({ ...policy, earlyJoinMinutesCustomer: 30 }, 60 * MINUTE)).toBe((30 + 60 + 15) * MINUTE);
  });

  it("names the agent moderator and the customer participant, and nobody else anything", () => {
    const appointment = { agentId: "agent-7", customerId: "cust-42" };
    expect(roleOf(appointment, "agent-7")).toBe("moderator");
    expect(roleOf(appointment, "cust-42")).toBe("participant");
    expect(roleOf(appointment, "someone")).toBeNull();
    expect(roleOf(appointment, "AGENT-7")).toBeNull();
  });

  it("opens for each role at its own time", () => {
    const window = joinWindowFor({ startsAt, endsAt }, policy);
    expect(opensAtFor(window, "moderator")).toEqual(window.agentOpensAt);
    expect(opensAtFor(window, "participant")).toEqual(window.customerOpensAt);
  });
});
