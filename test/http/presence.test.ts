import { randomUUID } from "node:crypto";
import type { LightMyRequestResponse } from "fastify";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp, TestClock } from "../helpers/app.js";
import { liveKitParticipantEvent, signLiveKitWebhook } from "../helpers/fake-livekit.js";
import { bearer, OPERATOR_SCOPES, type ScheduleOptions, scheduledEvent, userJwt } from "../helpers/fixtures.js";
import {
  type AuditEntry,
  closeFlow,
  connectSql,
  deliver,
  eventAt,
  readAppointment,
  requestJoinToken,
  subscribe,
  undeliveredCount,
  userJwtAt,
} from "../helpers/flow.js";
import { createMigratedDatabase } from "../helpers/postgres.js";
import { type ReceivedEvent, type Receiver, startReceiver } from "../helpers/receiver.js";

/**
 * Presence from the video gateway (API.md §10, local provider):
 * `POST /v1/presence` with a token or its tokenId and `joined` / `left`,
 * stored on the Appointment, audited with the gateway as actor and emitted
 * as `participant.joined` / `participant.left` with `via: "gateway"`. A
 * `joined` for a token that is not active is 409 `token_inactive` and
 * changes nothing. A database of this file's own (its subscription must get
 * only this file's events), a real receiver on loopback, and a TestClock to
 * make tokens expire or not be valid yet without waiting.
 */

const MINUTE = 60_000;
const GATEWAY = "gw-presence";
const PRESENCE_EVENTS = ["participant.joined", "participant.left"];
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

interface Appointment {
  externalId: string;
  agent: { id: string };
  customer: { id: string };
  join: { agentOpensAt: string; customerOpensAt: string; closesAt: string };
  presence: { agent: { present: boolean; since: string | null }; customer: { present: boolean; since: string | null } };
}

interface Issued {
  token: string;
  tokenId: string;
  role: string;
}

const NOBODY = { agent: { present: false, since: null }, customer: { present: false, since: null } };

describe("POST /v1/presence (API.md §10, local provider)", () => {
  let database: { name: string; url: string };
  let t: TestApp;
  let receiver: Receiver;
  let client: pg.Client;
  const clock = new TestClock();
  /** Every token handed out: none may appear in an answer, an audit entry or an event. */
  const tokens: string[] = [];

  /** A JWT valid at the test clock's time. */
  const jwtAt = (sub: string, scope?: string) => userJwtAt(clock, sub, scope);
  const operator = () => bearer(jwtAt("ops-presence", OPERATOR_SCOPES));
  const gateway = () => bearer(jwtAt(GATEWAY, "tokens:introspect"));

  beforeAll(async () => {
    database = await createMigratedDatabase();
    receiver = await startReceiver();
    t = await startApp({ DATABASE_URL: database.url, SUBSCRIPTIONS_ALLOW_PRIVATE_TARGETS: "true", RATE_LIMIT_JOIN_PER_MINUTE: "0" }, { clock });
    await subscribe(t, bearer(jwtAt("ops-presence", "subscriptions:manage")), receiver, {
      path: "/events",
      events: PRESENCE_EVENTS,
      description: "presence test",
    });
    client = await connectSql(database.url);
  });
  afterAll(() => closeFlow({ sql: client, app: t, receiver, database }));

  async function schedule(options: ScheduleOptions = {}): Promise<Appointment> {
    const res = await deliver(t, eventAt(clock, options));
    expect(res.statusCode).toBe(200);
    return res.json().appointment;
  }

  async function join(externalId: string, userId: string): Promise<Issued> {
    const res = await requestJoinToken(t, externalId, bearer(jwtAt(userId)));
    expect(res.statusCode, res.body).toBe(201);
    const issued = res.json() as Issued;
    tokens.push(issued.token);
    return issued;
  }

  /** An appointment whose window is open, with a token for each of them. */
  async function bothJoined(options: ScheduleOptions = {}) {
    const a = await schedule(options);
    const agent = await join(a.externalId, a.agent.id);
    const customer = await join(a.externalId, a.customer.id);
    return { a, agent, customer };
  }

  type Body = Record<string, unknown>;
  function report(body: Body, options: { form?: boolean; headers?: Record<string, string> } = {}) {
    const headers = options.headers ?? gateway();
    return options.form
      ? t.app.inject({
          method: "POST",
          url: "/v1/presence",
          headers: { ...headers, "content-type": "application/x-www-form-urlencoded" },
          payload: new URLSearchParams(body as Record<string, string>).toString(),
        })
      : t.app.inject({ method: "POST", url: "/v1/presence", headers, payload: body as object });
  }

  async function reported(body: Body, options: { form?: boolean } = {}) {
    const res = await report(body, options);
    expect(res.statusCode, res.body).toBe(200);
    for (const token of tokens) expect(res.body).not.toContain(token);
    return res.json();
  }

  function expectProblem(res: LightMyRequestResponse, status: number, code: string) {
    expect(res.statusCode, res.body).toBe(status);
    expect(res.headers["content-type"]).toContain("application/problem+json");
    const body = res.json();
    expect(body).toMatchObject({ status, code });
    for (const token of tokens) expect(res.body).not.toContain(token);
    return body;
  }

  async function inactive(body: Body, reason: string, options: { form?: boolean } = {}) {
    const problem = expectProblem(await report(body, options), 409, "token_inactive");
    expect(problem.reason).toBe(reason);
  }

  const read = (externalId: string): Promise<Appointment> => readAppointment(t, externalId, operator());
  const presenceOf = async (externalId: string) => (await read(externalId)).presence;

  async function participantEntries(externalId: string): Promise<AuditEntry[]> {
    const res = await t.app.inject({ method: "GET", url: `/v1/appointments/${encodeURIComponent(externalId)}/events`, headers: operator() });
    expect(res.statusCode).toBe(200);
    for (const token of tokens) expect(res.body).not.toContain(token);
    return (res.json().events as AuditEntry[]).filter((e) => e.type.startsWith("participant."));
  }

  /** Waits until everything written for the appointment has been delivered, then answers its presence events by sequence. */
  async function delivered(externalId: string): Promise<ReceivedEvent[]> {
    await expect.poll(() => undeliveredCount(client, externalId), { timeout: 10_000, interval: 50 }).toBe(0);
    const events = receiver
      .of(externalId)
      .filter((e) => PRESENCE_EVENTS.includes(e.type))
      .sort((x, y) => x.data.sequence - y.data.sequence);
    for (const event of events) {
      expect(event.verified).toBe(true);
      for (const token of tokens) expect(event.request.body).not.toContain(token);
    }
    return events;
  }

  async function presenceReports(result: string): Promise<number> {
    const res = await t.app.inject({ method: "GET", url: "/metrics" });
    const line = new RegExp(`^joinwindow_presence_reports_total\\{via="gateway",result="${result}"\\} (\\d+)$`, "m").exec(res.body);
    return line ? Number(line[1]) : 0;
  }

  /** Nothing about presence was stored, audited or emitted for the appointment. */
  async function expectNothingStored(externalId: string) {
    expect(await presenceOf(externalId)).toEqual(NOBODY);
    expect(await participantEntries(externalId)).toEqual([]);
    expect(await delivered(externalId)).toEqual([]);
  }

  it("takes joined and left by token and by tokenId, as JSON and as a form, and answers whose they were", async () => {
    const { a, agent, customer } = await bothJoined();
    expect(await presenceOf(a.externalId)).toEqual(NOBODY);

    const before = clock.now().getTime();
    expect(await reported({ token: agent.token, state: "joined" })).toEqual({
      appointmentId: a.externalId,
      userId: a.agent.id,
      role: "moderator",
      state: "joined",
    });
    expect(await reported({ tokenId: customer.tokenId, state: "joined" }, { form: true })).toEqual({
      appointmentId: a.externalId,
      userId: a.customer.id,
      role: "participant",
      state: "joined",
    });
    const after = clock.now().getTime();
    const joinedPresence = await presenceOf(a.externalId);
    expect(joinedPresence).toEqual({
      agent: { present: true, since: expect.stringMatching(ISO_UTC) },
      customer: { present: true, since: expect.stringMatching(ISO_UTC) },
    });
    for (const { since } of [joinedPresence.agent, joinedPresence.customer]) {
      expect(Date.parse(since!)).toBeGreaterThanOrEqual(before);
      expect(Date.parse(since!)).toBeLessThanOrEqual(after);
    }

    clock.advance(2 * MINUTE);
    expect(await reported({ token: customer.token, state: "left" }, { form: true })).toEqual({
      appointmentId: a.externalId,
      userId: a.customer.id,
      role: "participant",
      state: "left",
    });
    expect(await reported({ tokenId: agent.tokenId, state: "left" })).toMatchObject({ userId: a.agent.id, role: "moderator", state: "left" });
    const leftPresence = await presenceOf(a.externalId);
    expect(leftPresence.agent.present).toBe(false);
    expect(leftPresence.customer.present).toBe(false);
    expect(Date.parse(leftPresence.agent.since!)).toBeGreaterThanOrEqual(before + 2 * MINUTE);
    expect(Date.parse(leftPresence.customer.since!)).toBeGreaterThanOrEqual(before + 2 * MINUTE);
  });

  it("audits each change as participant.joined / participant.left with the gateway as actor, never the token", async () => {
    const { a, agent, customer } = await bothJoined();
    await reported({ token: agent.token, state: "joined" });
    await reported({ token: customer.token, state: "joined" }, { form: true });
    clock.advance(MINUTE);
    await reported({ tokenId: customer.tokenId, state: "left" });

    const presence = await presenceOf(a.externalId);
    const entries = await participantEntries(a.externalId);
    expect(entries.map(({ type, actor, outcome, detail }) => ({ type, actor, outcome, detail }))).toEqual([
      {
        type: "participant.joined",
        actor: `gateway:${GATEWAY}`,
        outcome: "present",
        detail: { userId: a.agent.id, role: "moderator", via: "gateway", tokenId: agent.tokenId, reportedAt: presence.agent.since },
      },
      {
        type: "participant.joined",
        actor: `gateway:${GATEWAY}`,
        outcome: "present",
        detail: { userId: a.customer.id, role: "participant", via: "gateway", tokenId: customer.tokenId, reportedAt: expect.stringMatching(ISO_UTC) },
      },
      {
        type: "participant.left",
        actor: `gateway:${GATEWAY}`,
        outcome: "absent",
        detail: { userId: a.customer.id, role: "participant", via: "gateway", tokenId: customer.tokenId, reportedAt: presence.customer.since },
      },
    ]);
  });

  it("emits participant.joined and participant.left with via gateway to a subscriber", async () => {
    const { a, agent, customer } = await bothJoined();
    await reported({ token: agent.token, state: "joined" });
    await reported({ tokenId: customer.tokenId, state: "joined" });
    clock.advance(MINUTE);
    await reported({ token: agent.token, state: "left" }, { form: true });
    const presence = await presenceOf(a.externalId);

    const events = await delivered(a.externalId);
    expect(events.map((e) => ({ type: e.type, data: e.data }))).toEqual([
      {
        type: "participant.joined",
        data: { appointmentId: a.externalId, sequence: expect.any(Number), at: expect.stringMatching(ISO_UTC), userId: a.agent.id, role: "moderator", via: "gateway" },
      },
      {
        type: "participant.joined",
        data: { appointmentId: a.externalId, sequence: expect.any(Number), at: presence.customer.since, userId: a.customer.id, role: "participant", via: "gateway" },
      },
      {
        type: "participant.left",
        data: { appointmentId: a.externalId, sequence: expect.any(Number), at: presence.agent.since, userId: a.agent.id, role: "moderator", via: "gateway" },
      },
    ]);
    expect(new Set(events.map((e) => e.webhookId)).size).toBe(3);
  });

  it("changes nothing on a second identical joined: no second audit entry, no second event, the same since", async () => {
    const { a, agent } = await bothJoined();
    await reported({ token: agent.token, state: "joined" });
    const first = await presenceOf(a.externalId);
    clock.advance(MINUTE);
    await reported({ token: agent.token, state: "joined" });
    await reported({ tokenId: agent.tokenId, state: "joined" }, { form: true });

    expect(await presenceOf(a.externalId)).toEqual(first);
    expect((await participantEntries(a.externalId)).map((e) => e.type)).toEqual(["participant.joined"]);
    expect((await delivered(a.externalId)).map((e) => e.type)).toEqual(["participant.joined"]);

    // Leaving and coming back are two changes, the return with its own since.
    clock.advance(MINUTE);
    await reported({ token: agent.token, state: "left" });
    await reported({ token: agent.token, state: "left" });
    clock.advance(MINUTE);
    await reported({ token: agent.token, state: "joined" });
    const back = await presenceOf(a.externalId);
    expect(back.agent.present).toBe(true);
    expect(Date.parse(back.agent.since!)).toBeGreaterThan(Date.parse(first.agent.since!) + 2 * MINUTE - 1000);
    expect((await participantEntries(a.externalId)).map((e) => e.type)).toEqual(["participant.joined", "participant.left", "participant.joined"]);
    expect((await delivered(a.externalId)).map((e) => e.type)).toEqual(["participant.joined", "participant.left", "participant.joined"]);
  });

  it("answers joined for a revoked token with 409 token_inactive reason revoked, storing nothing; takes left for it", async () => {
    const { a, agent, customer } = await bothJoined();
    const revoked = await t.app.inject({ method: "POST", url: "/v1/tokens/revoke", headers: operator(), payload: { tokenId: customer.tokenId } });
    expect(revoked.statusCode).toBe(200);

    const refusedBefore = await presenceReports("token_inactive");
    await inactive({ token: customer.token, state: "joined" }, "revoked");
    await inactive({ tokenId: customer.tokenId, state: "joined" }, "revoked", { form: true });
    expect(await presenceReports("token_inactive")).toBe(refusedBefore + 2);
    await expectNothingStored(a.externalId);

    // A replaced token is revoked too: the gateway must admit only the newest.
    const renewed = await join(a.externalId, a.agent.id);
    await inactive({ token: agent.token, state: "joined" }, "revoked");
    await expectNothingStored(a.externalId);
    await reported({ token: renewed.token, state: "joined" });

    // `left` is taken whatever the token's state: the gateway saw the revoked holder go.
    clock.advance(MINUTE);
    await reported({ token: customer.token, state: "left" });
    const presence = await presenceOf(a.externalId);
    expect(presence.customer).toEqual({ present: false, since: expect.stringMatching(ISO_UTC) });
    expect(presence.agent.present).toBe(true);
    expect((await participantEntries(a.externalId)).map((e) => [e.type, e.detail.role])).toEqual([
      ["participant.joined", "moderator"],
      ["participant.left", "participant"],
    ]);
    expect((await delivered(a.externalId)).map((e) => [e.type, e.data.role])).toEqual([
      ["participant.joined", "moderator"],
      ["participant.left", "participant"],
    ]);
  });

  it("does not let a replaced customer's late `left` mark the current customer absent", async () => {
    const { a, customer: replaced } = await bothJoined({ revision: 1 });
    await reported({ token: replaced.token, state: "joined" });
    // The scheduler gives the appointment to another customer (same times): the first one's token is revoked (reassigned).
    const newCustomerId = `${a.customer.id}-new`;
    const res = await deliver(
      t,
      scheduledEvent({ externalId: a.externalId, agentId: a.agent.id, customerId: newCustomerId, revision: 2, now: new Date(Date.parse(a.join.agentOpensAt) + 10 * MINUTE) }),
    );
    expect(res.json().appointment.customer.id).toBe(newCustomerId);
    const current = await join(a.externalId, newCustomerId);
    clock.advance(MINUTE);
    await reported({ token: current.token, state: "joined" });
    const withNewCustomer = await presenceOf(a.externalId);
    expect(withNewCustomer.customer.present).toBe(true);

    // The gateway removes the replaced customer (told by token.revoked) and says so, after the new one came in.
    clock.advance(MINUTE);
    await report({ token: replaced.token, state: "left" });
    expect((await presenceOf(a.externalId)).customer).toEqual(withNewCustomer.customer);
  });

  it("answers joined for an unknown token or tokenId with 409 token_inactive reason unknown", async () => {
    const { a, agent } = await bothJoined();
    const forged = `${agent.token.slice(0, -4)}AAAA`;
    for (const body of [
      { token: "not-a-token", state: "joined" },
      { token: forged, state: "joined" },
      { tokenId: randomUUID(), state: "joined" },
      { tokenId: "not-a-uuid", state: "joined" },
      { tokenId: "00000000-0000-0000-0000-000000000000", state: "joined" },
    ]) {
      await inactive(body, "unknown");
      await inactive(body, "unknown", { form: true });
    }
    // Nor is a `left` about nobody taken: there is no appointment to store it on.
    await inactive({ tokenId: randomUUID(), state: "left" }, "unknown");
    await expectNothingStored(a.externalId);
  });

  it("answers joined for a token not valid yet with 409 token_inactive reason not_yet_valid, storing nothing", async () => {
    // Agent opened 10 minutes ago, customer 5: both hold tokens.
    const { a, agent, customer } = await bothJoined({ startsInMinutes: 0 });
    // A replica whose clock is 7 minutes behind: before the customer's notBefore, after the agent's.
    clock.advance(-7 * MINUTE);
    try {
      const introspected = await t.app.inject({ method: "POST", url: "/v1/tokens/introspect", headers: operator(), payload: { token: customer.token } });
      expect(introspected.json()).toEqual({ active: false, reason: "not_yet_valid" });
      await inactive({ token: customer.token, state: "joined" }, "not_yet_valid");
      await inactive({ tokenId: customer.tokenId, state: "joined" }, "not_yet_valid", { form: true });
      await expectNothingStored(a.externalId);
      const agentIntrospected = await t.app.inject({ method: "POST", url: "/v1/tokens/introspect", headers: operator(), payload: { token: agent.token } });
      expect(agentIntrospected.json().active).toBe(true);
    } finally {
      clock.advance(7 * MINUTE);
    }
    await reported({ token: customer.token, state: "joined" });
  });

  it("answers joined for an expired token with 409 token_inactive reason expired, storing nothing; takes left for it", async () => {
    // Ended 9 minutes ago: the window closes in 6 (15 minutes' grace).
    const { a, agent, customer } = await bothJoined({ startsInMinutes: -10, durationMinutes: 1 });
    await reported({ token: agent.token, state: "joined" });
    clock.advance(7 * MINUTE);
    expect(Date.parse(a.join.closesAt)).toBeLessThan(clock.now().getTime());

    await inactive({ token: customer.token, state: "joined" }, "expired");
    await inactive({ tokenId: customer.tokenId, state: "joined" }, "expired", { form: true });
    let presence = await presenceOf(a.externalId);
    expect(presence.customer).toEqual({ present: false, since: null });

    await reported({ tokenId: agent.tokenId, state: "left" });
    presence = await presenceOf(a.externalId);
    expect(presence.agent).toEqual({ present: false, since: expect.stringMatching(ISO_UTC) });
    expect((await participantEntries(a.externalId)).map((e) => [e.type, e.detail.role])).toEqual([
      ["participant.joined", "moderator"],
      ["participant.left", "moderator"],
    ]);
    expect((await delivered(a.externalId)).map((e) => [e.type, e.data.role])).toEqual([
      ["participant.joined", "moderator"],
      ["participant.left", "moderator"],
    ]);
  });

  it("requires scope tokens:introspect: 401 without a valid JWT, 403 insufficient_scope without the scope", async () => {
    const { a, agent } = await bothJoined();
    const body = { token: agent.token, state: "joined" };
    expectProblem(await report(body, { headers: {} }), 401, "unauthenticated");
    expectProblem(await report(body, { headers: { authorization: `Bearer ${agent.token}` } }), 401, "unauthenticated");
    const expired = userJwt(GATEWAY, { scope: "tokens:introspect", claims: { exp: Math.floor(clock.now().getTime() / 1000) - 60 } });
    expectProblem(await report(body, { headers: bearer(expired) }), 401, "unauthenticated");
    for (const scope of [undefined, "tokens:revoke appointments:read subscriptions:manage", "tokens:introspection", "Tokens:Introspect"]) {
      expectProblem(await report(body, { headers: bearer(jwtAt(GATEWAY, scope)) }), 403, "insufficient_scope");
      expectProblem(await report(body, { headers: bearer(jwtAt(GATEWAY, scope)), form: true }), 403, "insufficient_scope");
    }
    // The holder of the token cannot report themselves.
    expectProblem(await report(body, { headers: bearer(jwtAt(a.agent.id)) }), 403, "insufficient_scope");
    await expectNothingStored(a.externalId);
  });

  it("answers 400 invalid_request for both token and tokenId, for neither, and for a state that is not joined or left", async () => {
    const { a, agent } = await bothJoined();
    for (const form of [false, true]) {
      for (const body of [
        { token: agent.token, tokenId: agent.tokenId, state: "joined" },
        { state: "joined" },
        { token: agent.token },
        { token: agent.token, state: "present" },
        { token: agent.token, state: "" },
        { tokenId: agent.tokenId, state: "JOINED" },
      ]) {
        const problem = expectProblem(await report(body, { form }), 400, "invalid_request");
        expect(problem.errors?.length, JSON.stringify(body)).toBeGreaterThan(0);
      }
    }
    await expectNothingStored(a.externalId);
  });

  it("has no provider callbacks: POST /v1/providers/livekit/events is 404 problem+json", async () => {
    const body = liveKitParticipantEvent({
      event: "participant_joined",
      room: "joinwindow-x",
      identity: "someone",
      createdAt: clock.now(),
      joinedAt: clock.now(),
    });
    const signed = await signLiveKitWebhook(body, { apiKey: "APIkey", apiSecret: "a-secret-that-is-long-enough-0123456789" });
    for (const [provider, headers] of [
      ["livekit", signed.headers],
      ["livekit", { "content-type": "application/json" }],
      ["daily", { "content-type": "application/json" }],
      ["vonage", { "content-type": "application/json" }],
      ["local", { "content-type": "application/json" }],
    ] as const) {
      const res = await t.app.inject({ method: "POST", url: `/v1/providers/${provider}/events`, headers, payload: body });
      expectProblem(res, 404, "not_found");
    }
  });
});
