import { describe, expect, it } from "vitest";
import { AppError } from "../../src/domain/errors.js";
import { checkHolders, checkWindow, type JoinableAppointment, type LiveToken } from "../../src/domain/join-rules.js";

const at = (iso: string) => new Date(iso);
const appointment = (overrides: Partial<JoinableAppointment> = {}): JoinableAppointment => ({
  id: "a1",
  status: "scheduled",
  accessBlocked: false,
  agentId: "agent",
  customerId: "cust",
  maxParticipants: 2,
  // The waiting room has its own tests below; elsewhere the customer may be first.
  waitingRoom: false,
  agentOpensAt: at("2026-11-23T13:50:00.000Z"),
  customerOpensAt: at("2026-11-23T13:55:00.000Z"),
  closesAt: at("2026-11-23T14:45:00.000Z"),
  ...overrides,
});

function refusal(fn: () => unknown): AppError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
    return error as AppError;
  }
  throw new Error("expected a refusal, but the request was admitted");
}

const open = at("2026-11-23T14:00:00.000Z");

describe("the first half of API.md §3: the appointment and its window", () => {
  it("admits the agent and the customer inside their windows, with their opening time", () => {
    expect(checkWindow(appointment(), "agent", open)).toMatchObject({ role: "moderator", opensAt: at("2026-11-23T13:50:00.000Z") });
    expect(checkWindow(appointment(), "cust", open)).toMatchObject({ role: "participant", opensAt: at("2026-11-23T13:55:00.000Z") });
  });

  it("answers 404 for an unknown appointment and for a stranger alike", () => {
    expect(refusal(() => checkWindow(undefined, "agent", open))).toMatchObject({ status: 404, code: "not_found" });
    expect(refusal(() => checkWindow(appointment(), "someone", open))).toMatchObject({ status: 404, code: "not_found" });
    // A stranger learns nothing else either: not that it was cancelled, nor that it is closed.
    const cancelled = appointment({ status: "cancelled", accessBlocked: true });
    expect(refusal(() => checkWindow(cancelled, "someone", at("2030-01-01T00:00:00Z"))).code).toBe("not_found");
  });

  it("checks in the contract's order: cancelled, then blocked, then too early, then closed", () => {
    const everything = appointment({ status: "cancelled", accessBlocked: true });
    const early = at("2026-11-23T13:00:00.000Z");
    const late = at("2026-11-24T00:00:00.000Z");
    expect(refusal(() => checkWindow(everything, "agent", early))).toMatchObject({ status: 409, code: "appointment_cancelled" });
    expect(refusal(() => checkWindow(appointment({ accessBlocked: true }), "agent", early))).toMatchObject({ status: 403, code: "access_blocked" });
    expect(refusal(() => checkWindow(appointment({ accessBlocked: true }), "agent", late)).code).toBe("access_blocked");
    expect(refusal(() => checkWindow(appointment(), "cust", early))).toMatchObject({ status: 425, code: "too_early" });
    expect(refusal(() => checkWindow(appointment(), "cust", late))).toMatchObject({ status: 410, code: "join_window_closed" });
  });

  it("says when it opens (opensAt, Retry-After in whole seconds, at least 1) and when it closed", () => {
    const tooEarly = refusal(() => checkWindow(appointment(), "cust", at("2026-11-23T13:54:58.500Z")));
    expect(tooEarly.extra).toEqual({ opensAt: "2026-11-23T13:55:00.000Z" });
    expect(tooEarly.headers).toEqual({ "retry-after": "2" });
    expect(refusal(() => checkWindow(appointment(), "cust", at("2026-11-23T13:54:59.999Z"))).headers).toEqual({ "retry-after": "1" });
    const closed = refusal(() => checkWindow(appointment(), "agent", at("2026-11-23T15:00:00.000Z")));
    expect(closed.extra).toEqual({ closedAt: "2026-11-23T14:45:00.000Z" });
  });

  it("opens at its opening instant exactly and closes at closesAt exactly", () => {
    expect(checkWindow(appointment(), "cust", at("2026-11-23T13:55:00.000Z")).role).toBe("participant");
    expect(refusal(() => checkWindow(appointment(), "cust", at("2026-11-23T13:54:59.999Z"))).code).toBe("too_early");
    expect(checkWindow(appointment(), "agent", at("2026-11-23T14:44:59.999Z")).role).toBe("moderator");
    expect(refusal(() => checkWindow(appointment(), "agent", at("2026-11-23T14:45:00.000Z"))).code).toBe("join_window_closed");
  });

  it("lets the agent in while the customer still waits", () => {
    const between = at("2026-11-23T13:52:00.000Z");
    expect(checkWindow(appointment(), "agent", between).role).toBe("moderator");
    expect(refusal(() => checkWindow(appointment(), "cust", between)).code).toBe("too_early");
  });
});

describe("the second half of API.md §3: who holds live tokens", () => {
  const token = (userId: string, appointmentId = "a1", externalId = "appt-1"): LiveToken => ({ userId, appointmentId, externalId });

  it("admits a caller whose only live token is their own in this appointment (a replacement)", () => {
    expect(() => checkHolders(appointment(), { userId: "cust", supersede: false }, [token("cust")])).not.toThrow();
  });

  it("refuses a caller live in another appointment, naming it, unless they supersede", () => {
    const live = [token("cust", "a2", "appt-2")];
    const error = refusal(() => checkHolders(appointment(), { userId: "cust", supersede: false }, live));
    expect(error).toMatchObject({ status: 409, code: "active_elsewhere", extra: { otherAppointmentId: "appt-2" } });
    expect(() => checkHolders(appointment(), { userId: "cust", supersede: true }, live)).not.toThrow();
  });

  it("caps the participants holding live tokens, not counting the caller's own", () => {
    const single = appointment({ maxParticipants: 1 });
    expect(refusal(() => checkHolders(single, { userId: "cust", supersede: false }, [token("agent")]))).toMatchObject({
      status: 409,
      code: "participant_limit",
    });
    expect(() => checkHolders(single, { userId: "agent", supersede: false }, [token("agent")])).not.toThrow();
    expect(() => checkHolders(appointment(), { userId: "cust", supersede: false }, [token("agent"), token("cust")])).not.toThrow();
  });

  it("checks active elsewhere before the participant limit", () => {
    const single = appointment({ maxParticipants: 1 });
    const live = [token("agent"), token("cust", "a2", "appt-2")];
    expect(refusal(() => checkHolders(single, { userId: "cust", supersede: false }, live)).code).toBe("active_elsewhere");
    expect(refusal(() => checkHolders(single, { userId: "cust", supersede: true }, live)).code).toBe("participant_limit");
  });
});

describe("the waiting room (API.md §3)", () => {
  const token = (userId: string, appointmentId = "a1", externalId = "appt-1"): LiveToken => ({ userId, appointmentId, externalId });
  const waiting = appointment({ waitingRoom: true });

  it("holds the customer with 425 waiting_for_host and a Retry-After of at most 10 s until the agent holds a live token", () => {
    const error = refusal(() => checkHolders(waiting, { userId: "cust", supersede: false }, []));
    expect(error).toMatchObject({ status: 425, code: "waiting_for_host" });
    const retryAfter = Number(error.headers["retry-after"]);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(10);
    expect(() => checkHolders(waiting, { userId: "cust", supersede: false }, [token("agent")])).not.toThrow();
  });

  it("never holds the agent, and does not count the agent's token in another appointment", () => {
    expect(() => checkHolders(waiting, { userId: "agent", supersede: false }, [])).not.toThrow();
    const elsewhere = [token("agent", "a2", "appt-2")];
    expect(refusal(() => checkHolders(waiting, { userId: "cust", supersede: false }, elsewhere)).code).toBe("waiting_for_host");
  });

  it("comes before active elsewhere, so a customer's supersede while waiting changes nothing", () => {
    const live = [token("cust", "a2", "appt-2")];
    expect(refusal(() => checkHolders(waiting, { userId: "cust", supersede: true }, live)).code).toBe("waiting_for_host");
    expect(refusal(() => checkHolders(waiting, { userId: "cust", supersede: false }, live)).code).toBe("waiting_for_host");
  });

  it("lets the customer in first when the waiting room is off", () => {
    expect(() => checkHolders(appointment({ waitingRoom: false }), { userId: "cust", supersede: false }, [])).not.toThrow();
  });
});
