import { afterEach, describe, expect, it, vi } from "vitest";
import {
  backoffMs,
  createJoinClient,
  type JoinClientOptions,
  type JoinGrant,
  type JoinState,
  ServerClock,
  subjectOf,
} from "../../src/client/joinwindow.js";
import { appointmentAt, FakeService, FakeTime, grantFor, jwtFor, type Reply, settle, waitingForHost } from "./fakes.js";

const SECOND = 1000;
const MINUTE = 60 * SECOND;
// Deliberately not on a whole second: Date headers have whole seconds only.
const CLIENT_START = Date.parse("2026-11-23T13:00:00.000Z") + 437;

interface Setup {
  /** Server clock minus client clock. */
  skewMs?: number;
  /** Minutes from the server's now to the start (agent opens 10 min before, customer 5). */
  startsInMinutes?: number;
  user?: string;
  maxJoinAttempts?: number;
}

async function setup({ skewMs = 0, startsInMinutes = 30, user = "cust-42", maxJoinAttempts }: Setup = {}) {
  const time = new FakeTime(CLIENT_START);
  const service = new FakeService(time, skewMs, appointmentAt(CLIENT_START + skewMs, startsInMinutes));
  const grants: JoinGrant[] = [];
  const states: JoinState[] = [];
  const jwt = jwtFor(user);
  const client = createJoinClient({
    baseUrl: "https://join.example.com/",
    externalId: "appt-123",
    getToken: () => jwt,
    onToken: (grant) => {
      grants.push(grant);
    },
    now: time.now,
    fetch: service.fetch,
    setTimeout: time.setTimeout,
    clearTimeout: time.clearTimeout,
    random: () => 0,
    ...(maxJoinAttempts ? { maxJoinAttempts } : {}),
  });
  client.subscribe((state) => states.push(state));
  client.start();
  await settle();
  const join = async () => {
    client.join();
    await settle();
  };
  return { time, service, client, grants, states, jwt, join };
}

/** A customer's client on `service`, for tests that need their own service or options. */
function clientFor(time: FakeTime, service: FakeService, overrides: Partial<JoinClientOptions> = {}) {
  return createJoinClient({
    baseUrl: "",
    externalId: "appt-123",
    getToken: () => jwtFor("cust-42"),
    onToken: () => {},
    now: time.now,
    fetch: service.fetch,
    setTimeout: time.setTimeout,
    clearTimeout: time.clearTimeout,
    ...overrides,
  });
}

const waitingMs = (state: JoinState) => (state.status === "waiting" ? state.msUntilOpen : Number.NaN);

describe("the window follows the server's clock", () => {
  it("waits one minute, not eleven, when the client's clock is 10 minutes slow", async () => {
    // The customer opens at start − 5 min: 6 minutes from now on the server.
    const { client, time } = await setup({ skewMs: 10 * MINUTE, startsInMinutes: 6 });
    expect(client.state.status).toBe("waiting");
    expect(Math.abs(waitingMs(client.state) - MINUTE)).toBeLessThanOrEqual(SECOND / 2);
    expect(Math.abs(client.serverNow() - (time.clientNow + 10 * MINUTE))).toBeLessThanOrEqual(SECOND / 2);
    await time.advance(MINUTE + SECOND);
    expect(client.state.status).toBe("open");
  });

  it("keeps waiting when the client's clock is 10 minutes fast and says the window is long open", async () => {
    const { client, time } = await setup({ skewMs: -10 * MINUTE, startsInMinutes: 6 });
    expect(client.state.status).toBe("waiting");
    expect(Math.abs(waitingMs(client.state) - MINUTE)).toBeLessThanOrEqual(SECOND / 2);
    await time.advance(30 * SECOND);
    expect(client.state.status).toBe("waiting");
  });

  it("uses the agent's own opening time for the agent, read from the JWT's sub", async () => {
    // Starts in 7 min: the agent opened 3 min ago, the customer opens in 2.
    const agent = await setup({ startsInMinutes: 7, user: "agent-7" });
    expect(agent.client.state).toMatchObject({ status: "open", role: "moderator" });
    const customer = await setup({ startsInMinutes: 7, user: "cust-42" });
    expect(customer.client.state).toMatchObject({ status: "waiting", role: "participant" });
    expect(Math.abs(waitingMs(customer.client.state) - 2 * MINUTE)).toBeLessThanOrEqual(SECOND / 2);
  });

  it("counts down second by second, opens on time and closes at closesAt", async () => {
    const { client, time, states } = await setup({ startsInMinutes: 5 + 5 / 60 });
    const countdown = () => states.filter((s) => s.status === "waiting").map((s) => Math.ceil(waitingMs(s) / SECOND));
    expect(countdown()).toEqual([5]);
    await time.advance(3 * SECOND);
    expect(countdown()).toEqual([5, 4, 3, 2]);
    await time.advance(2 * SECOND + 600);
    expect(client.state.status).toBe("open");
    // 5 min before the start, 30 min long, 15 min grace.
    await time.advance(49 * MINUTE);
    expect(client.state.status).toBe("open");
    await time.advance(MINUTE + SECOND);
    expect(client.state).toMatchObject({ status: "closed" });
  });

  it("narrows the offset with every answer and starts again when a clock jumps", () => {
    let clientNow = 1_000_000;
    const clock = new ServerClock(() => clientNow);
    expect(clock.offsetMs).toBe(0);
    // Server 5 250 ms ahead: its Date headers read whole seconds.
    const header = (serverMs: number) => new Date(Math.floor(serverMs / SECOND) * SECOND).toUTCString();
    for (let i = 0; i < 20; i++) {
      clientNow += 137;
      clock.observe(header(clientNow + 5_250), clientNow, clientNow + 20);
    }
    expect(Math.abs(clock.offsetMs - 5_250)).toBeLessThanOrEqual(40);
    // The user sets the client clock back an hour: the old interval no longer fits.
    clientNow -= 3_600_000;
    clock.observe(header(clientNow + 3_600_000 + 5_250), clientNow, clientNow + 20);
    expect(Math.abs(clock.offsetMs - (3_600_000 + 5_250))).toBeLessThanOrEqual(SECOND / 2);
    clock.observe(null, clientNow, clientNow);
    clock.observe("not a date", clientNow, clientNow);
    expect(Math.abs(clock.offsetMs - (3_600_000 + 5_250))).toBeLessThanOrEqual(SECOND / 2);
  });
});

describe("joining", () => {
  it("hands the token to onToken and keeps it out of every state", async () => {
    const { client, service, grants, states, join } = await setup({ startsInMinutes: 1 });
    service.joinReplies.push({ status: 201, body: grantFor(service.appointment, "participant") });
    await join();
    expect(client.state).toMatchObject({ status: "joined", session: { sessionId: "ses_1", role: "participant" } });
    expect(grants).toHaveLength(1);
    expect(grants[0]?.token).toBe("provider-token-secret");
    expect(JSON.stringify(states)).not.toContain("provider-token-secret");
    expect(service.joins[0]).toMatchObject({
      url: "https://join.example.com/v1/appointments/appt-123/join-token",
      body: { supersede: false },
    });
  });

  it("sends the user's JWT only in the Authorization header, never in a URL, never to the console or storage", async () => {
    const logged = (["log", "info", "warn", "error", "debug"] as const).map((method) => vi.spyOn(console, method));
    const { service, jwt, join, time } = await setup({ startsInMinutes: 1 });
    service.joinReplies.push({ status: 503, body: { code: "provider_unavailable" } }, { status: 201, body: grantFor(service.appointment, "participant") });
    await join();
    await time.advance(2 * SECOND);
    expect(service.calls.length).toBeGreaterThanOrEqual(3);
    for (const call of service.calls) {
      expect(call.url).not.toContain(jwt);
      expect(call.headers.authorization).toBe(`Bearer ${jwt}`);
    }
    for (const spy of logged) expect(spy).not.toHaveBeenCalled();
    expect("localStorage" in globalThis).toBe(false);
  });

  it("on 425 waits for Retry-After, then tries again and joins", async () => {
    const { client, service, time, join } = await setup({ startsInMinutes: 5 });
    expect(client.state.status).toBe("open");
    service.joinReplies.push(
      { status: 425, body: { code: "too_early", opensAt: service.appointment.join.customerOpensAt }, headers: { "retry-after": "3" } },
      { status: 201, body: grantFor(service.appointment, "participant") },
    );
    await join();
    expect(client.state).toMatchObject({ status: "retrying", operation: "join", reason: "too_early" });
    if (client.state.status === "retrying") expect(client.state.retryAt.getTime()).toBe(time.clientNow + 3 * SECOND);
    await time.advance(3 * SECOND - 1);
    expect(service.joins).toHaveLength(1);
    await time.advance(1);
    expect(service.joins).toHaveLength(2);
    expect(client.state.status).toBe("joined");
  });

  it("on a 425 with a long Retry-After (a reschedule) reads the appointment again and goes back to waiting", async () => {
    const { client, service, join } = await setup({ startsInMinutes: 5 });
    service.appointment = appointmentAt(service.serverNow(), 65);
    service.joinReplies.push({
      status: 425,
      body: { code: "too_early", opensAt: service.appointment.join.customerOpensAt },
      headers: { "retry-after": "3600" },
    });
    await join();
    expect(client.state.status).toBe("waiting");
    expect(Math.abs(waitingMs(client.state) - 60 * MINUTE)).toBeLessThanOrEqual(SECOND);
  });

  it("on 409 active_elsewhere offers to leave the other appointment, and joins with supersede: true", async () => {
    const { client, service, grants, join } = await setup({ startsInMinutes: 1 });
    service.joinReplies.push(
      { status: 409, body: { code: "active_elsewhere", otherAppointmentId: "appt-9" } },
      { status: 201, body: grantFor(service.appointment, "participant") },
    );
    await join();
    expect(client.state).toMatchObject({ status: "collision", otherAppointmentId: "appt-9" });
    expect(grants).toHaveLength(0);
    client.confirmSupersede();
    await settle();
    expect(service.joins.map((call) => call.body)).toEqual([{ supersede: false }, { supersede: true }]);
    expect(client.state.status).toBe("joined");
  });

  it("reads the other appointment of a collision and names whom the caller meets there and when it starts", async () => {
    const { client, service, join } = await setup({ startsInMinutes: 1 });
    const other = appointmentAt(service.serverNow(), -10, {
      externalId: "appt 9/b",
      agent: { id: "agent-3", name: "Dr. Okafor" },
      customer: { id: "cust-42", name: "Pat Doe" },
    });
    service.elsewhere["appt 9/b"] = { status: 200, body: other };
    service.joinReplies.push({ status: 409, body: { code: "active_elsewhere", otherAppointmentId: "appt 9/b" } });
    await join();
    expect(client.state).toMatchObject({
      status: "collision",
      otherAppointmentId: "appt 9/b",
      otherAppointment: { externalId: "appt 9/b", counterpartName: "Dr. Okafor", startsAt: new Date(other.startsAt) },
    });
    // With the caller's own JWT, the id encoded as a path segment.
    expect(service.calls.at(-1)).toMatchObject({ method: "GET", url: "https://join.example.com/v1/appointments/appt%209%2Fb" });
    expect(service.calls.at(-1)?.headers.authorization).toBe(service.calls[0]?.headers.authorization);

    // The agent of the other appointment meets its customer there.
    const agent = await setup({ startsInMinutes: 1, user: "agent-7" });
    agent.service.elsewhere["appt-8"] = { status: 200, body: appointmentAt(agent.service.serverNow(), 0, { externalId: "appt-8" }) };
    agent.service.joinReplies.push({ status: 409, body: { code: "active_elsewhere", otherAppointmentId: "appt-8" } });
    await agent.join();
    expect(agent.client.state).toMatchObject({ status: "collision", otherAppointment: { counterpartName: "Pat Doe" } });
  });

  it.each([
    ["a 404", { status: 404, body: { code: "not_found" } }],
    ["a 503", { status: 503, body: { code: "not_ready" } }],
    ["a body that is no appointment", { status: 200, body: "<html>" }],
  ])("keeps the collision prompt neutral after %s for the other appointment, and does not retry it", async (_, reply) => {
    const { client, service, join, time } = await setup({ startsInMinutes: 1 });
    service.elsewhere["appt-9"] = reply;
    service.joinReplies.push({ status: 409, body: { code: "active_elsewhere", otherAppointmentId: "appt-9" } });
    await join();
    expect(client.state).toMatchObject({ status: "collision", otherAppointmentId: "appt-9", otherAppointment: null });
    await time.advance(10 * MINUTE);
    expect(service.calls.filter((call) => call.url.endsWith("/appt-9"))).toHaveLength(1);
    expect(client.state.status).toBe("collision");
  });

  it("ignores the other appointment's answer once the user has chosen", async () => {
    const time = new FakeTime(CLIENT_START);
    const service = new FakeService(time, 0, appointmentAt(CLIENT_START, 1));
    service.elsewhere["appt-9"] = { status: 200, body: appointmentAt(CLIENT_START, 0, { externalId: "appt-9" }) };
    let answerOther: () => void = () => {};
    const client = clientFor(time, service, {
      // The read of the other appointment is held back until the user has dismissed the prompt.
      fetch: (url, init) =>
        url.endsWith("/appt-9") ? new Promise((resolve) => (answerOther = () => resolve(service.fetch(url, init)))) : service.fetch(url, init),
    });
    client.start();
    await settle();
    service.joinReplies.push({ status: 409, body: { code: "active_elsewhere", otherAppointmentId: "appt-9" } });
    client.join();
    await settle();
    expect(client.state.status).toBe("collision");
    client.dismissCollision();
    answerOther();
    await settle();
    expect(client.state.status).toBe("open");
    expect("otherAppointment" in client.state).toBe(false);
  });

  it("stays in the other appointment when the user says so", async () => {
    const { client, service, join } = await setup({ startsInMinutes: 1 });
    service.joinReplies.push({ status: 409, body: { code: "active_elsewhere", otherAppointmentId: "appt-9" } });
    await join();
    client.dismissCollision();
    expect(client.state.status).toBe("open");
    expect(service.joins).toHaveLength(1);
  });

  it("on 503 backs off 1, 2, 4 s (longer when Retry-After says so) and joins when the provider is back", async () => {
    const { client, service, time, join } = await setup({ startsInMinutes: 1 });
    const unavailable = (retryAfter: string): Reply => ({
      status: 503,
      body: { code: "provider_unavailable" },
      headers: { "retry-after": retryAfter },
    });
    service.joinReplies.push(unavailable("1"), unavailable("1"), unavailable("9"), { status: 201, body: grantFor(service.appointment, "participant") });
    const start = time.clientNow;
    await join();
    expect(client.state).toMatchObject({ status: "retrying", reason: "provider_unavailable", attempt: 1 });
    await time.advance(20 * SECOND);
    expect(service.joins.map((call) => call.at - start)).toEqual([0, 1 * SECOND, 3 * SECOND, 12 * SECOND]);
    expect(client.state.status).toBe("joined");
  });

  it("gives up after the last attempt and lets the user try again", async () => {
    const { client, service, time, join } = await setup({ startsInMinutes: 1, maxJoinAttempts: 3 });
    service.joinFallback = { status: 503, body: { code: "provider_unavailable" }, headers: { "retry-after": "1" } };
    await join();
    await time.advance(MINUTE);
    expect(service.joins).toHaveLength(3);
    expect(client.state).toMatchObject({ status: "error", operation: "join", problem: { status: 503, code: "provider_unavailable" } });
    expect(time.pending).toBe(0);
    service.joinReplies.push({ status: 201, body: grantFor(service.appointment, "participant") });
    await join();
    expect(client.state.status).toBe("joined");
  });

  it("retries a network failure and a 429 after its Retry-After", async () => {
    const time = new FakeTime(CLIENT_START);
    const service = new FakeService(time, 0, appointmentAt(CLIENT_START, 1));
    let failures = 1;
    const client = clientFor(time, service, {
      random: () => 0,
      fetch: async (url, init) => {
        if (init.method === "POST" && failures-- > 0) throw new TypeError("Failed to fetch");
        return service.fetch(url, init);
      },
    });
    client.start();
    await settle();
    service.joinReplies.push(
      { status: 429, body: { code: "rate_limited" }, headers: { "retry-after": "7" } },
      { status: 201, body: grantFor(service.appointment, "participant") },
    );
    client.join();
    await settle();
    expect(client.state).toMatchObject({ status: "retrying", reason: "network_error" });
    await time.advance(SECOND);
    expect(client.state).toMatchObject({ status: "retrying", reason: "rate_limited" });
    await time.advance(7 * SECOND);
    expect(client.state.status).toBe("joined");
  });

  it.each([
    [{ status: 410, body: { code: "join_window_closed", closedAt: "2026-11-23T14:00:00.000Z" } }, "closed"],
    [{ status: 409, body: { code: "appointment_cancelled" } }, "cancelled"],
    [{ status: 403, body: { code: "access_blocked" } }, "blocked"],
    [{ status: 409, body: { code: "participant_limit" } }, "full"],
    [{ status: 404, body: { code: "not_found" } }, "not_found"],
    [{ status: 401, body: { code: "unauthenticated" } }, "unauthenticated"],
    [{ status: 400, body: { code: "invalid_request" } }, "error"],
  ] as const)("ends in the final state for %j", async (reply, status) => {
    const { client, service, time, join } = await setup({ startsInMinutes: 1 });
    service.joinReplies.push(reply);
    await join();
    expect(client.state.status).toBe(status);
    if (client.state.status === "closed") expect(client.state.closedAt?.toISOString()).toBe("2026-11-23T14:00:00.000Z");
    // Nothing is retried and nothing keeps running.
    expect(time.pending).toBe(0);
    await time.advance(10 * MINUTE);
    expect(service.joins).toHaveLength(1);
  });

  it("does not mistake a 200 or 201 without the expected body (a proxy's page) for an answer", async () => {
    const { client, service, grants, join } = await setup({ startsInMinutes: 1 });
    service.joinReplies.push({ status: 201, body: "<html>" });
    await join();
    expect(client.state).toMatchObject({ status: "error", operation: "join", problem: { status: 201, code: "unexpected_response" } });
    expect(grants).toHaveLength(0);

    const time = new FakeTime(CLIENT_START);
    const proxy = new FakeService(time, 0, appointmentAt(CLIENT_START, 1));
    proxy.readReply = () => ({ status: 200 });
    const reader = clientFor(time, proxy);
    reader.start();
    await settle();
    expect(reader.state).toMatchObject({ status: "error", operation: "load", problem: { code: "unexpected_response" } });
  });

  it("reports a failure of onToken (the video SDK did not start) and can try again", async () => {
    const time = new FakeTime(CLIENT_START);
    const service = new FakeService(time, 0, appointmentAt(CLIENT_START, 1));
    let attempts = 0;
    const client = clientFor(time, service, {
      onToken: () => {
        if (attempts++ === 0) throw new Error("camera denied");
      },
    });
    client.start();
    await settle();
    service.joinFallback = { status: 201, body: grantFor(service.appointment, "participant") };
    client.join();
    await settle();
    expect(client.state).toMatchObject({ status: "error", problem: { code: "video_start_failed" } });
    client.join();
    await settle();
    expect(client.state.status).toBe("joined");
    expect(service.joins[0]?.url).toBe("/v1/appointments/appt-123/join-token");
  });
});

describe("the waiting room", () => {
  it("waits for the host without an error, asks again every Retry-After, and joins once the host is in", async () => {
    const { client, service, time, grants, states, join } = await setup({ startsInMinutes: 1 });
    service.joinReplies.push(waitingForHost("3"), waitingForHost("3"), waitingForHost("3"), { status: 201, body: grantFor(service.appointment, "participant") });
    const start = time.clientNow;
    await join();
    expect(client.state).toMatchObject({ status: "waiting_for_host", role: "participant" });
    if (client.state.status === "waiting_for_host") expect(client.state.retryAt.getTime()).toBe(start + 3 * SECOND);
    expect(grants).toHaveLength(0);
    await time.advance(3 * SECOND - 1);
    expect(service.joins).toHaveLength(1);
    await time.advance(1);
    expect(service.joins).toHaveLength(2);
    expect(client.state.status).toBe("waiting_for_host");
    await time.advance(6 * SECOND);
    expect(service.joins.map((call) => call.at - start)).toEqual([0, 3 * SECOND, 6 * SECOND, 9 * SECOND]);
    expect(service.joins.map((call) => call.body)).toEqual(Array(4).fill({ supersede: false }));
    expect(client.state).toMatchObject({ status: "joined", session: { role: "participant" } });
    expect(grants).toHaveLength(1);
    // Asking again from the waiting room does not flash "joining" (nor anything else) every few seconds.
    const shown = states.map((state) => state.status).filter((status, i, all) => status !== all[i - 1]);
    expect(shown.slice(shown.indexOf("open"))).toEqual(["open", "joining", "waiting_for_host", "joined"]);
    expect(time.pending).toBe(0);
  });

  it("keeps waiting for as long as the host takes: the wait uses up none of the join attempts", async () => {
    const { client, service, time, join } = await setup({ startsInMinutes: 1, maxJoinAttempts: 2 });
    service.joinFallback = waitingForHost("3");
    await join();
    await time.advance(5 * MINUTE);
    expect(service.joins).toHaveLength(101);
    expect(client.state.status).toBe("waiting_for_host");
    // An outage on the way is retried as any other, and the wait goes on after it.
    service.joinReplies.push({ status: 503, body: { code: "provider_unavailable" }, headers: { "retry-after": "1" } });
    await time.advance(3 * SECOND);
    expect(client.state).toMatchObject({ status: "retrying", reason: "provider_unavailable" });
    await time.advance(SECOND);
    expect(client.state.status).toBe("waiting_for_host");
    service.joinFallback = { status: 201, body: grantFor(service.appointment, "participant") };
    await time.advance(3 * SECOND);
    expect(client.state.status).toBe("joined");
  });

  it.each([
    ["a Retry-After above the contract's 10 s", "120", 10 * SECOND],
    ["no Retry-After", undefined, SECOND],
    ["a Retry-After of 0", "0", SECOND],
  ])("asks again within 1–10 s, whatever the answer says: %s", async (_, retryAfter, expectedMs) => {
    const { service, time, join } = await setup({ startsInMinutes: 1 });
    const reply = waitingForHost();
    service.joinReplies.push(retryAfter === undefined ? { ...reply, headers: {} } : waitingForHost(retryAfter));
    service.joinFallback = { status: 201, body: grantFor(service.appointment, "participant") };
    await join();
    await time.advance(expectedMs - 1);
    expect(service.joins).toHaveLength(1);
    await time.advance(1);
    expect(service.joins).toHaveLength(2);
  });

  it("reads a Retry-After given as a date on the server's clock, as for too_early", async () => {
    // The client's clock is 10 minutes slow; the server asks for the next attempt 5 s from its own now.
    const { client, service, time, join } = await setup({ skewMs: 10 * MINUTE, startsInMinutes: 1 });
    const askAt = Math.floor(service.serverNow() / SECOND) * SECOND + 5 * SECOND;
    service.joinReplies.push(waitingForHost(new Date(askAt).toUTCString()));
    service.joinFallback = { status: 201, body: grantFor(service.appointment, "participant") };
    const start = time.clientNow;
    await join();
    expect(client.state.status).toBe("waiting_for_host");
    await time.advance(10 * SECOND);
    const waited = (service.joins[1]?.at ?? Number.NaN) - start;
    expect(Math.abs(waited - (askAt - (start + 10 * MINUTE)))).toBeLessThanOrEqual(SECOND);
    expect(client.state.status).toBe("joined");
  });

  it("tells too_early (wait for the opening time) from waiting_for_host (the host is not in yet)", async () => {
    const { client, service, time, join } = await setup({ startsInMinutes: 5 });
    service.joinReplies.push(
      { status: 425, body: { code: "too_early", opensAt: service.appointment.join.customerOpensAt }, headers: { "retry-after": "2" } },
      waitingForHost("3"),
      { status: 201, body: grantFor(service.appointment, "participant") },
    );
    await join();
    expect(client.state).toMatchObject({ status: "retrying", operation: "join", reason: "too_early" });
    await time.advance(2 * SECOND);
    expect(client.state.status).toBe("waiting_for_host");
    expect("reason" in client.state).toBe(false);
    await time.advance(3 * SECOND);
    expect(client.state.status).toBe("joined");

    // A long wait for the opening time goes back to the countdown; the waiting room never does.
    const far = await setup({ startsInMinutes: 5 });
    far.service.joinReplies.push(waitingForHost("3"), {
      status: 425,
      body: { code: "too_early", opensAt: far.service.appointment.join.customerOpensAt },
      headers: { "retry-after": "3600" },
    });
    far.service.appointment = appointmentAt(far.service.serverNow(), 65);
    await far.join();
    expect(far.client.state.status).toBe("waiting_for_host");
    await far.time.advance(3 * SECOND);
    expect(far.client.state.status).toBe("waiting");
  });

  it.each([
    [{ status: 410, body: { code: "join_window_closed", closedAt: "2026-11-23T14:00:00.000Z" } }, "closed"],
    [{ status: 409, body: { code: "appointment_cancelled" } }, "cancelled"],
    [{ status: 403, body: { code: "access_blocked" } }, "blocked"],
  ] as const)("ends the wait with what the server answers next: %j", async (reply, status) => {
    const { client, service, time, join } = await setup({ startsInMinutes: 1 });
    service.joinReplies.push(waitingForHost("3"), reply);
    await join();
    await time.advance(3 * SECOND);
    expect(client.state.status).toBe(status);
    expect(time.pending).toBe(0);
  });

  it("refresh() asks at once (a background tab's timers are throttled), keeping the choice to supersede", async () => {
    const { client, service, time, join } = await setup({ startsInMinutes: 1 });
    service.joinReplies.push({ status: 409, body: { code: "active_elsewhere", otherAppointmentId: "appt-9" } }, waitingForHost("10"));
    await join();
    client.confirmSupersede();
    await settle();
    expect(client.state.status).toBe("waiting_for_host");
    service.joinReplies.push({ status: 201, body: grantFor(service.appointment, "participant") });
    await time.advance(SECOND);
    client.refresh();
    await settle();
    expect(service.joins.map((call) => call.body)).toEqual([{ supersede: false }, { supersede: true }, { supersede: true }]);
    expect(client.state.status).toBe("joined");
    expect(time.pending).toBe(0);
  });

  it("stops asking on stop()", async () => {
    const { client, service, time, join } = await setup({ startsInMinutes: 1 });
    service.joinFallback = waitingForHost("3");
    await join();
    client.stop();
    expect(time.pending).toBe(0);
    await time.advance(MINUTE);
    expect(service.joins).toHaveLength(1);
  });

  it("hands over the room URL of the join answer, and null from a server that sends none", async () => {
    const { client, service, grants, join } = await setup({ startsInMinutes: 1 });
    service.joinReplies.push({ status: 201, body: { ...grantFor(service.appointment, "participant"), roomUrl: "https://acme.daily.co/appt-123" } });
    await join();
    expect(grants[0]?.roomUrl).toBe("https://acme.daily.co/appt-123");
    expect(client.state).toMatchObject({ status: "joined", session: { roomUrl: "https://acme.daily.co/appt-123" } });

    const older = await setup({ startsInMinutes: 1 });
    const { roomUrl: _roomUrl, ...withoutRoomUrl } = grantFor(older.service.appointment, "participant");
    older.service.joinReplies.push({ status: 201, body: withoutRoomUrl });
    await older.join();
    expect(older.grants[0]?.roomUrl).toBeNull();
  });
});

describe("reading the appointment", () => {
  it.each([
    ["cancelled", { status: "cancelled" as const }],
    ["blocked", { accessBlocked: true }],
  ])("shows %s from the appointment itself", async (status, overrides) => {
    const time = new FakeTime(CLIENT_START);
    const service = new FakeService(time, 0, appointmentAt(CLIENT_START, 1, overrides));
    const client = clientFor(time, service);
    client.start();
    await settle();
    expect(client.state.status).toBe(status);
    expect(time.pending).toBe(0);
  });

  it("shows closed after closesAt, and not_found / unauthenticated for a 404 / 401", async () => {
    expect((await setup({ startsInMinutes: -46 })).client.state.status).toBe("closed");
    const stranger = await setup({ user: "someone-else" });
    expect(stranger.client.state.role).toBeNull();

    const time = new FakeTime(CLIENT_START);
    for (const [reply, status] of [
      [{ status: 404, body: { code: "not_found" } }, "not_found"],
      [{ status: 401, body: { code: "unauthenticated" } }, "unauthenticated"],
    ] as const) {
      const service = new FakeService(time, 0, appointmentAt(CLIENT_START, 1));
      service.readReply = () => reply;
      const client = clientFor(time, service);
      client.start();
      await settle();
      expect(client.state.status).toBe(status);
    }
  });

  it("retries a failed first reading with backoff until the service answers", async () => {
    const time = new FakeTime(CLIENT_START);
    const service = new FakeService(time, 0, appointmentAt(CLIENT_START, 1));
    const outage = [{ status: 503, body: { code: "not_ready" }, headers: { "retry-after": "5" } }, { status: 502 }];
    service.readReply = () => outage.shift() ?? { status: 200, body: service.appointment };
    const client = clientFor(time, service, { random: () => 0 });
    client.start();
    await settle();
    expect(client.state).toMatchObject({ status: "retrying", operation: "load", reason: "not_ready" });
    await time.advance(5 * SECOND);
    expect(client.state).toMatchObject({ status: "retrying", operation: "load", reason: "provider_unavailable" });
    await time.advance(2 * SECOND);
    expect(client.state.status).toBe("open");
  });

  it("reads the appointment again while waiting, and follows a reschedule or a cancellation", async () => {
    const { client, service, time } = await setup({ startsInMinutes: 30 });
    const before = waitingMs(client.state);
    service.appointment = appointmentAt(service.serverNow(), 60);
    await time.advance(MINUTE);
    expect(waitingMs(client.state)).toBeGreaterThan(before + 28 * MINUTE);
    service.appointment = { ...service.appointment, status: "cancelled" };
    await time.advance(MINUTE);
    expect(client.state.status).toBe("cancelled");
    expect(time.pending).toBe(0);
  });

  it("refresh() reads the appointment at once, and a failed reading leaves the countdown as it was", async () => {
    const { client, service } = await setup({ startsInMinutes: 30 });
    service.appointment = appointmentAt(service.serverNow(), 10);
    client.refresh();
    await settle();
    expect(service.calls).toHaveLength(2);
    expect(Math.abs(waitingMs(client.state) - 5 * MINUTE)).toBeLessThanOrEqual(SECOND);
    service.readReply = () => ({ status: 502 });
    client.refresh();
    await settle();
    expect(service.calls).toHaveLength(3);
    expect(client.state.status).toBe("waiting");
  });

  it("stops every timer on stop(), and ignores answers that arrive afterwards", async () => {
    const { client, time, service, states } = await setup({ startsInMinutes: 30 });
    expect(time.pending).toBeGreaterThan(0);
    client.stop();
    expect(time.pending).toBe(0);
    const seen = states.length;
    await time.advance(10 * MINUTE);
    expect(states).toHaveLength(seen);
    expect(service.calls).toHaveLength(1);
  });
});

describe("helpers", () => {
  it("reads a JWT's sub without verifying it, and nothing from anything else", () => {
    expect(subjectOf(jwtFor("agent-7"))).toBe("agent-7");
    expect(subjectOf(jwtFor("Zoë ünicode"))).toBe("Zoë ünicode");
    expect(subjectOf("opaque-token")).toBeNull();
    expect(subjectOf("a.!!!.c")).toBeNull();
    expect(subjectOf(`a.${Buffer.from("[1]").toString("base64url")}.c`)).toBeNull();
  });

  it("backs off exponentially up to 30 s, with jitter on top, never below Retry-After", () => {
    expect([1, 2, 3, 4, 5, 6, 7].map((attempt) => backoffMs(attempt, 0, () => 0))).toEqual([
      1000, 2000, 4000, 8000, 16000, 30000, 30000,
    ]);
    expect(backoffMs(1, 0, () => 0.999)).toBeLessThanOrEqual(1250);
    expect(backoffMs(1, 9000, () => 0.5)).toBe(9000);
  });
});

afterEach(() => {
  vi.restoreAllMocks();
});
