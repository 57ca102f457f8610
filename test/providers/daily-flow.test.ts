import { randomBytes } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp, TestClock } from "../helpers/app.js";
import {
  DAILY_VERIFICATION_PING,
  type FakeDaily,
  type FakeDailyParticipant,
  type MeetingTokenClaims,
  readMeetingToken,
  signDailyWebhook,
  startFakeDaily,
} from "../helpers/fake-daily.js";
import type { RecordedRequest } from "../helpers/fake-server.js";
import { cancelledEvent, OPERATOR_SCOPES, type ScheduleOptions, type scheduledEvent } from "../helpers/fixtures.js";
import * as flow from "../helpers/flow.js";
import { EJECT_WAIT_MS, EJECT_WITHIN_MS, HOUR, MINUTE, PRESENCE_EVENTS, SECOND } from "../helpers/flow.js";
import { type AuditEntry, bearerAt, closeFlow, flowEnv, requestJoinToken, sleep, subscribe, until } from "../helpers/flow.js";
import { createMigratedDatabase } from "../helpers/postgres.js";
import { type Receiver, startReceiver } from "../helpers/receiver.js";

/**
 * The whole service with VIDEO_PROVIDER=daily against the fake Daily API
 * (test/helpers/fake-daily.ts, a real HTTP server on loopback): rooms and
 * meeting tokens, outages, reschedules that must move the room's expiry,
 * the waiting room, presence from Daily's signed webhooks, and ejections.
 * The file has its own database: its background workers (session
 * reconciler, timed events, ejections) see every row of it, and its one
 * TestClock only ever moves forward, so each test schedules relative to it
 * and looks only at its own appointment's room.
 */

const API_KEY = "daily-flow-api-key-5c1e9d7f2a4b6c8e0d1f3a5b7c9e1f3a";
const WEBHOOK_SECRET = randomBytes(32).toString("base64");
/** How long "nothing (more) happens" is watched: three worker passes and a dispatch. */
const QUIET_MS = 3 * SECOND;

const epoch = (at: string | number | Date) => Math.floor(new Date(at).getTime() / 1000);
/**
 * Daily's meeting tokens carry no nonce: the same properties in the same
 * second (its `iat`) make the same JWT. The double-click test below asks
 * the service to cope with that; the other tests that need two tokens for
 * one user wait for the next second, so that they test what they name.
 */
const nextSecond = () => sleep(SECOND - (Date.now() % SECOND) + 10);

interface Scheduled {
  /** The appointment.scheduled event that made it. */
  event: ReturnType<typeof scheduledEvent>;
  externalId: string;
  agentId: string;
  customerId: string;
  /** The room's name: the session id. */
  room: string;
  appointment: {
    join: { agentOpensAt: string; customerOpensAt: string; closesAt: string };
    session: { provider: string; id: string | null; status: string; roomUrl: string | null };
  } & Record<string, unknown>;
}

interface Issued {
  token: string;
  tokenId: string;
  sessionId: string;
  roomUrl: string | null;
  role: string;
  notBefore: string;
  expiresAt: string;
}

describe("VIDEO_PROVIDER=daily end to end (API.md §8, §10)", () => {
  let database: { name: string; url: string };
  let fake: FakeDaily;
  let receiver: Receiver;
  let t: TestApp;
  const clock = new TestClock();
  const env = () =>
    flowEnv(database.url, {
      VIDEO_PROVIDER: "daily",
      DAILY_API_KEY: API_KEY,
      DAILY_API_BASE: fake.url,
      DAILY_WEBHOOK_SECRET: WEBHOOK_SECRET,
      PROVIDER_TIMEOUT_MS: "3000",
      RATE_LIMIT_PER_MINUTE: "0",
    });

  /** JWTs are checked against the app's clock: they are made valid at its time. */
  const jwtAt = (sub: string, scope?: string) => bearerAt(clock, sub, scope, HOUR / SECOND);
  const operator = () => jwtAt("ops-daily", `${OPERATOR_SCOPES} subscriptions:manage`);

  beforeAll(async () => {
    database = await createMigratedDatabase();
    fake = await startFakeDaily({ apiKey: API_KEY, domain: "acme-clinic" });
    receiver = await startReceiver();
    t = await startApp(env(), { clock });
    await subscribe(t, operator(), receiver, { path: "/events", events: PRESENCE_EVENTS, description: "daily flow test" });
  });
  afterEach(() => {
    fake.resetFaults();
  });
  afterAll(() => closeFlow({ app: t, receiver, fake, database }));

  // --- the service's side -------------------------------------------------------------------------------------

  const deliver = (body: unknown) => flow.deliver(t, body);

  const eventAt = (options: ScheduleOptions = {}) => flow.eventAt(clock, options);

  /** A new appointment whose session is ready (200), with times relative to the test clock. */
  async function schedule(options: ScheduleOptions = {}): Promise<Scheduled> {
    const event = eventAt(options);
    const res = await deliver(event);
    expect(res.statusCode).toBe(200);
    const appointment = res.json().appointment as Scheduled["appointment"];
    expect(appointment.session.status).toBe("ready");
    return {
      event,
      externalId: event.data.externalId,
      agentId: event.data.agent.id,
      customerId: event.data.customer.id,
      room: appointment.session.id as string,
      appointment,
    };
  }

  /** The same appointment with new times (a reschedule: its tokens are revoked). */
  async function reschedule(a: Scheduled, startsInMinutes: number, durationMinutes: number) {
    const res = await deliver(
      eventAt({ externalId: a.externalId, agentId: a.agentId, customerId: a.customerId, startsInMinutes, durationMinutes }),
    );
    expect(res.statusCode).toBe(200);
    const appointment = res.json().appointment as Scheduled["appointment"];
    expect(appointment.join.closesAt).not.toBe(a.appointment.join.closesAt);
    return appointment;
  }

  const join = (externalId: string, userId: string, body?: object) => requestJoinToken(t, externalId, jwtAt(userId), body);

  async function joined(externalId: string, userId: string, body?: object): Promise<Issued> {
    const res = await join(externalId, userId, body);
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as Issued;
  }

  const readAppointment = async (externalId: string) =>
    (await t.app.inject({ method: "GET", url: `/v1/appointments/${encodeURIComponent(externalId)}`, headers: operator() })).json();

  const auditOf = (externalId: string): Promise<AuditEntry[]> => flow.auditOf(t, externalId, operator());

  const storedTokens = (externalId: string) => t.db.prisma.joinToken.count({ where: { appointment: { externalId } } });

  // --- Daily's side -------------------------------------------------------------------------------------------

  const bodyOf = (request: RecordedRequest) => JSON.parse(request.body) as Record<string, unknown> & { properties?: Record<string, unknown> };

  /** POST /rooms/:name (an update of the room), in order, from request `from` on. */
  const roomUpdates = (room: string, from = 0) =>
    fake.requests
      .map((request, index) => ({ request, index }))
      .filter(({ request, index }) => index >= from && request.method === "POST" && request.path === `/rooms/${room}`)
      .map(({ request, index }) => ({ index, exp: bodyOf(request).properties?.exp }));

  /** POST /meeting-tokens for this room, from request `from` on. */
  const tokenRequests = (room: string, from = 0) =>
    fake.requests
      .map((request, index) => ({ request, index }))
      .filter(({ request, index }) => index >= from && request.method === "POST" && request.path === "/meeting-tokens")
      .filter(({ request }) => bodyOf(request).properties?.room_name === room)
      .map(({ request, index }) => ({ index, userId: bodyOf(request).properties?.user_id }));

  /** POST /rooms/:name/eject for this room: when they arrived and whom they named. */
  const ejectCalls = (room: string) =>
    fake.requests
      .filter((request) => request.method === "POST" && request.path === `/rooms/${room}/eject`)
      .map((request) => ({ at: request.at, userIds: (bodyOf(request).user_ids ?? []) as string[] }));

  const claimsOf = (token: string): MeetingTokenClaims => {
    const claims = readMeetingToken(token, API_KEY);
    expect(claims, "a meeting token signed with the API key").toBeDefined();
    return claims as MeetingTokenClaims;
  };

  /** The participant Daily admits with this token at `at`; fails the test when Daily would not. */
  function enterRoom(room: string, token: string, at: Date = clock.now()): FakeDailyParticipant {
    const result = fake.join(room, token, at);
    if (!result.joined) throw new Error(`Daily would not admit the participant: ${result.reason}`);
    return result.participant;
  }

  const inRoom = (room: string, participant: FakeDailyParticipant) =>
    (fake.rooms.get(room)?.participants ?? []).some((p) => p.sessionId === participant.sessionId);

  /** Waits for an eject call naming each of `dailyUserIds`, and checks each came within 5 s of `answeredAt`. */
  async function expectEjected(room: string, dailyUserIds: string[], answeredAt: number) {
    const firstFor = (id: string) => ejectCalls(room).find((call) => call.userIds.includes(id));
    await until(`ejection of ${dailyUserIds.join(", ")} from ${room}`, () => dailyUserIds.every((id) => firstFor(id)), EJECT_WAIT_MS);
    for (const id of dailyUserIds) {
      expect((firstFor(id)?.at ?? Infinity) - answeredAt, `ms from the revoking answer to the eject of ${id}`).toBeLessThan(
        EJECT_WITHIN_MS,
      );
    }
  }

  /** Daily's webhook call: the body signed with `secret` at the app's time, unless headers are given. */
  function sendDaily(rawBody: string, headers: Record<string, string> = signDailyWebhook(WEBHOOK_SECRET, rawBody, String(epoch(clock.now())))) {
    return t.app.inject({
      method: "POST",
      url: "/v1/providers/daily/events",
      headers: { "content-type": "application/json", ...headers },
      payload: rawBody,
    });
  }

  const eventsOf = (externalId: string, type: string) => flow.eventsOf(receiver, externalId, type);

  // --- 1. the core flow -------------------------------------------------------------------------------------------

  describe("core flow", () => {
    it("creates a private room that expires at closesAt, hands out meeting tokens for it, and introspects and revokes them", async () => {
      const a = await schedule({ settings: { maxParticipants: 2, waitingRoom: false } });
      const { closesAt, agentOpensAt, customerOpensAt } = a.appointment.join;
      const room = fake.rooms.get(a.room);
      expect(room, "the room named by the session id").toBeDefined();
      expect(room?.privacy).toBe("private");
      expect(room?.properties).toEqual({ max_participants: 2, exp: epoch(closesAt), eject_at_room_exp: true });
      expect(a.appointment.session).toEqual({ provider: "daily", id: room?.name, status: "ready", roomUrl: room?.url });
      expect(room?.url).toMatch(/^https:\/\/acme-clinic\.daily\.co\//);
      expect((await readAppointment(a.externalId)).session.roomUrl).toBe(room?.url);

      const agent = await joined(a.externalId, a.agentId);
      expect(agent).toMatchObject({ provider: "daily", applicationId: null, sessionId: a.room, roomUrl: room?.url, role: "moderator" });
      expect(agent.expiresAt).toBe(closesAt);
      expect(fake.tokens).toContain(agent.token);
      expect(claimsOf(agent.token)).toMatchObject({
        r: a.room,
        ud: a.agentId,
        o: true,
        nbf: epoch(agentOpensAt),
        exp: epoch(closesAt),
        ejt: true,
      });

      const customer = await joined(a.externalId, a.customerId);
      expect(customer).toMatchObject({ sessionId: a.room, roomUrl: room?.url, role: "participant" });
      const customerClaims = claimsOf(customer.token);
      expect(customerClaims).toMatchObject({ r: a.room, ud: a.customerId, o: false, nbf: epoch(customerOpensAt), exp: epoch(closesAt), ejt: true });

      // Daily admits both now, and nobody once the room and the tokens have expired.
      enterRoom(a.room, agent.token);
      enterRoom(a.room, customer.token);
      expect(fake.join(a.room, customer.token, new Date(Date.parse(closesAt) + SECOND))).toMatchObject({ joined: false });

      const introspect = (token: string) =>
        t.app.inject({ method: "POST", url: "/v1/tokens/introspect", headers: operator(), payload: { token } });
      const active = await introspect(customer.token);
      expect(active.statusCode).toBe(200);
      expect(active.json()).toMatchObject({
        active: true,
        jti: customer.tokenId,
        sub: a.customerId,
        role: "participant",
        appointmentId: a.externalId,
        sessionId: a.room,
        provider: "daily",
        nbf: epoch(customerOpensAt),
        exp: epoch(closesAt),
      });

      const revoked = await t.app.inject({ method: "POST", url: "/v1/tokens/revoke", headers: operator(), payload: { token: customer.token } });
      expect(revoked.statusCode).toBe(200);
      expect((await introspect(customer.token)).json()).toMatchObject({ active: false, reason: "revoked", revocationReason: "operator" });
    });

    it("gives a user who asks twice within one second (a double click, a second tab) the same live token, not a 500", async () => {
      const a = await schedule();
      // Both requests inside one second: the meeting-token properties and Daily's `iat` are then the same.
      await nextSecond();
      const first = await join(a.externalId, a.agentId);
      const second = await join(a.externalId, a.agentId);
      expect([first.statusCode, second.statusCode]).toEqual([201, 201]);
      // Daily answers the same token for the same properties in the same second: the second request gets the first answer.
      expect(second.json()).toEqual(first.json());
      const introspect = async (token: string) =>
        (await t.app.inject({ method: "POST", url: "/v1/tokens/introspect", headers: operator(), payload: { token } })).json();
      expect(await introspect(second.json().token)).toMatchObject({ active: true, jti: first.json().tokenId });
      // Revoked, then asked for again in the same second: a new token, from the next second.
      await t.app.inject({ method: "POST", url: "/v1/tokens/revoke", headers: operator(), payload: { tokenId: first.json().tokenId } });
      const third = await join(a.externalId, a.agentId);
      expect(third.statusCode).toBe(201);
      expect(third.json().token).not.toBe(first.json().token);
      expect(await introspect(third.json().token)).toMatchObject({ active: true, jti: third.json().tokenId });
    });
  });

  // --- 2. outages ---------------------------------------------------------------------------------------------------

  describe("outages", () => {
    it("stores the appointment pending (202) while room creation is down, answers joins 503 with Retry-After, and the reconciler creates the room", async () => {
      fake.createRoom.fail(503);
      const event = eventAt();
      const externalId = event.data.externalId;
      const scheduled = await deliver(event);
      expect(scheduled.statusCode).toBe(202);
      expect(scheduled.json()).toMatchObject({ applied: true, appointment: { session: { provider: "daily", status: "pending", id: null, roomUrl: null } } });

      const refused = await join(externalId, event.data.agent.id);
      expect(refused.statusCode).toBe(503);
      expect(refused.json().code).toBe("provider_unavailable");
      expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0);
      expect(await storedTokens(externalId)).toBe(0);

      fake.createRoom.reset();
      // Past the backoff of the failed attempts: the reconciler's turn, with no join to help it.
      clock.advance(2 * MINUTE);
      await expect.poll(async () => (await readAppointment(externalId)).session.status, { timeout: 10_000 }).toBe("ready");
      const appointment = await readAppointment(externalId);
      const room = fake.rooms.get(appointment.session.id);
      expect(room?.privacy).toBe("private");
      expect(room?.properties).toMatchObject({ exp: epoch(appointment.join.closesAt), eject_at_room_exp: true });
      expect(appointment.session.roomUrl).toBe(room?.url);
      const types = (await auditOf(externalId)).map((e) => `${e.type}:${e.outcome}`);
      expect(types).toContain("session.failed:pending");
      expect(types).toContain("session.created:ready");

      const issued = await joined(externalId, event.data.agent.id);
      expect(issued.roomUrl).toBe(room?.url);
    });

    it("keeps the room whose creation answer was lost: the retry finds it taken and reuses it", async () => {
      fake.loseAnswers("createRoom", 1);
      const event = eventAt();
      const res = await deliver(event);
      expect(res.statusCode).toBe(200);
      const { session, join: window } = res.json().appointment;
      expect(session.status).toBe("ready");
      const room = fake.rooms.get(session.id);
      expect(session.roomUrl).toBe(room?.url);
      expect(room?.properties).toMatchObject({ exp: epoch(window.closesAt), eject_at_room_exp: true });
      expect([...fake.rooms.keys()].filter((name) => name === session.id)).toHaveLength(1);
    });

    it("answers a join 503 with Retry-After and stores nothing while the meeting-token endpoint is down", async () => {
      const a = await schedule();
      const auditBefore = (await auditOf(a.externalId)).length;
      fake.meetingTokens.fail(503);
      const refused = await join(a.externalId, a.agentId);
      expect(refused.statusCode).toBe(503);
      expect(refused.json().code).toBe("provider_unavailable");
      expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0);
      expect(refused.body).not.toContain(API_KEY);
      expect(await storedTokens(a.externalId)).toBe(0);
      expect((await auditOf(a.externalId)).filter((e) => e.type.startsWith("token."))).toEqual([]);
      expect((await auditOf(a.externalId)).length).toBe(auditBefore);

      fake.meetingTokens.reset();
      await joined(a.externalId, a.agentId);
      expect(await storedTokens(a.externalId)).toBe(1);
    });
  });

  // --- 3. reschedule --------------------------------------------------------------------------------------------------

  describe("reschedule", () => {
    it("moves the room's exp to the new closesAt before any token is issued, so the participant gets in at the new time", async () => {
      const a = await schedule({ startsInMinutes: 0, durationMinutes: 30 });
      const oldToken = (await joined(a.externalId, a.agentId)).token;
      const mark = fake.requests.length;

      // Two hours later: the old room would have expired 45 minutes from now.
      const moved = await reschedule(a, 120, 30);
      const newExp = epoch(moved.join.closesAt);
      // The reconciler moves it on its own, before anyone asks for a token.
      await until("the room's exp follows closesAt", () => fake.rooms.get(a.room)?.properties.exp === newExp, 5000);
      expect(roomUpdates(a.room, mark).map((u) => u.exp)).toContain(newExp);
      expect(tokenRequests(a.room, mark)).toEqual([]);
      expect(fake.rooms.get(a.room)?.properties).toMatchObject({ eject_at_room_exp: true });
      // Same room, same URL.
      expect((await readAppointment(a.externalId)).session).toMatchObject({ id: a.room, roomUrl: a.appointment.session.roomUrl });

      clock.advance(120 * MINUTE);
      const agent = await joined(a.externalId, a.agentId);
      expect(agent.expiresAt).toBe(moved.join.closesAt);
      expect(claimsOf(agent.token)).toMatchObject({ exp: newExp, nbf: epoch(moved.join.agentOpensAt) });
      const firstUpdate = roomUpdates(a.room, mark).find((u) => u.exp === newExp);
      expect(firstUpdate!.index).toBeLessThan(tokenRequests(a.room, mark)[0]!.index);

      // The lock-out bug: at the new time Daily admits the new token (room and token both valid), not the old one.
      const at = clock.now();
      enterRoom(a.room, agent.token, at);
      expect(fake.join(a.room, oldToken, at)).toEqual({ joined: false, reason: "token expired" });
      const customer = await joined(a.externalId, a.customerId);
      enterRoom(a.room, customer.token, new Date(Date.parse(moved.join.closesAt) - MINUTE));
    });

    it("a join updates the room first when the reconciler has not yet (room update down at the reschedule), answering 503 meanwhile", async () => {
      const a = await schedule({ startsInMinutes: 0, durationMinutes: 30 });
      await joined(a.externalId, a.agentId);
      const oldExp = epoch(a.appointment.join.closesAt);
      expect(fake.rooms.get(a.room)?.properties.exp).toBe(oldExp);
      fake.updateRoom.fail(503);
      const mark = fake.requests.length;
      const liveBefore = await storedTokens(a.externalId);

      // Still open now, but closing 65 minutes later than before.
      const moved = await reschedule(a, 5, 90);
      const newExp = epoch(moved.join.closesAt);
      const refused = await join(a.externalId, a.agentId);
      expect(refused.statusCode).toBe(503);
      expect(refused.json().code).toBe("provider_unavailable");
      expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0);
      // No token for a room that would lock its holder out 65 minutes early.
      expect(tokenRequests(a.room, mark)).toEqual([]);
      expect(await storedTokens(a.externalId)).toBe(liveBefore);
      expect(roomUpdates(a.room, mark).length).toBeGreaterThan(0);
      expect(fake.rooms.get(a.room)?.properties.exp).toBe(oldExp);

      const back = fake.requests.length;
      fake.updateRoom.reset();
      const agent = await joined(a.externalId, a.agentId);
      expect(agent.expiresAt).toBe(moved.join.closesAt);
      expect(fake.rooms.get(a.room)?.properties.exp).toBe(newExp);
      const update = roomUpdates(a.room, back).find((u) => u.exp === newExp);
      expect(update, "a successful update of the room once Daily is back").toBeDefined();
      expect(update!.index).toBeLessThan(tokenRequests(a.room, back)[0]!.index);

      // Between the old and the new closesAt Daily lets the participant in.
      enterRoom(a.room, agent.token, new Date((oldExp + 10 * 60) * SECOND));
    });
  });

  // --- 4. waiting room ------------------------------------------------------------------------------------------------

  it("holds the customer (425 waiting_for_host, Retry-After) until the agent has a token, then issues theirs", async () => {
    const a = await schedule({ settings: { waitingRoom: true } });
    for (let i = 0; i < 2; i++) {
      const held = await join(a.externalId, a.customerId);
      expect(held.statusCode).toBe(425);
      expect(held.json().code).toBe("waiting_for_host");
      const retryAfter = Number(held.headers["retry-after"]);
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(10);
    }
    // Nothing was asked of Daily for the held customer.
    expect(tokenRequests(a.room)).toEqual([]);
    expect(await storedTokens(a.externalId)).toBe(0);

    await joined(a.externalId, a.agentId);
    const customer = await joined(a.externalId, a.customerId);
    expect(customer.role).toBe("participant");
    expect(claimsOf(customer.token)).toMatchObject({ ud: a.customerId, o: false });
  });

  // --- 5. presence ----------------------------------------------------------------------------------------------------

  describe("presence from Daily's webhooks", () => {
    it("records participant.joined and participant.left once each: appointment, audit and subscribers", async () => {
      const a = await schedule();
      const agent = await joined(a.externalId, a.agentId);
      const joinedAt = new Date(Math.floor(clock.now().getTime() / SECOND) * SECOND);
      const participant = enterRoom(a.room, agent.token, joinedAt);
      const joinedBody = fake.presenceEvent("participant.joined", a.room, participant);

      const taken = await sendDaily(joinedBody);
      expect(taken.statusCode).toBe(200);
      expect(taken.json()).toEqual({ taken: 1, ignored: 0 });
      expect((await readAppointment(a.externalId)).presence).toEqual({
        agent: { present: true, since: joinedAt.toISOString() },
        customer: { present: false, since: null },
      });
      // Daily redelivers: nothing changes.
      expect((await sendDaily(joinedBody)).statusCode).toBe(200);

      const leftAt = new Date(joinedAt.getTime() + 120 * SECOND);
      fake.leave(a.room, participant, leftAt);
      const leftBody = fake.presenceEvent("participant.left", a.room, participant, { leftAt });
      expect((await sendDaily(leftBody)).json()).toEqual({ taken: 1, ignored: 0 });
      expect((await sendDaily(leftBody)).statusCode).toBe(200);
      // The join redelivered after the leave is older than it: presence never flips back.
      expect((await sendDaily(joinedBody)).statusCode).toBe(200);
      expect((await readAppointment(a.externalId)).presence.agent).toEqual({ present: false, since: leftAt.toISOString() });

      const audit = await auditOf(a.externalId);
      const presenceEntries = audit.filter((e) => e.type.startsWith("participant."));
      expect(presenceEntries.map((e) => `${e.type}:${e.outcome}:${e.actor}`)).toEqual([
        "participant.joined:present:provider:daily",
        "participant.left:absent:provider:daily",
      ]);
      expect(presenceEntries[0]?.detail).toMatchObject({ userId: a.agentId, role: "moderator", via: "daily", connectionId: participant.sessionId });

      await receiver.waitFor(() => eventsOf(a.externalId, "participant.left").length > 0);
      await sleep(QUIET_MS);
      const joinedEvents = eventsOf(a.externalId, "participant.joined");
      const leftEvents = eventsOf(a.externalId, "participant.left");
      expect(new Set(joinedEvents.map((e) => e.webhookId)).size).toBe(1);
      expect(new Set(leftEvents.map((e) => e.webhookId)).size).toBe(1);
      expect(joinedEvents[0]?.data).toMatchObject({ userId: a.agentId, role: "moderator", via: "daily", at: joinedAt.toISOString() });
      expect(leftEvents[0]?.data).toMatchObject({ userId: a.agentId, role: "moderator", via: "daily", at: leftAt.toISOString() });
      expect(joinedEvents[0]?.verified).toBe(true);
    });

    it("takes reports by Daily's event time: a leave that arrives before its join leaves the participant absent", async () => {
      const a = await schedule();
      const customer = await joined(a.externalId, a.customerId);
      const joinedAt = new Date(Math.floor(clock.now().getTime() / SECOND) * SECOND);
      const participant = enterRoom(a.room, customer.token, joinedAt);
      const leftAt = new Date(joinedAt.getTime() + 30 * SECOND);
      fake.leave(a.room, participant, leftAt);

      expect((await sendDaily(fake.presenceEvent("participant.left", a.room, participant, { leftAt }))).statusCode).toBe(200);
      expect((await sendDaily(fake.presenceEvent("participant.joined", a.room, participant))).statusCode).toBe(200);
      expect((await readAppointment(a.externalId)).presence.customer).toEqual({ present: false, since: leftAt.toISOString() });
      expect((await auditOf(a.externalId)).filter((e) => e.type === "participant.joined")).toEqual([]);

      // A later visit is a new join, and counts.
      const again = enterRoom(a.room, customer.token, new Date(leftAt.getTime() + 60 * SECOND));
      expect((await sendDaily(fake.presenceEvent("participant.joined", a.room, again))).json()).toEqual({ taken: 1, ignored: 0 });
      expect((await readAppointment(a.externalId)).presence.customer).toEqual({ present: true, since: again.joinedAt.toISOString() });
    });

    it("keeps a participant present while another of their entries (a second tab) is still in the room", async () => {
      const a = await schedule();
      const agent = await joined(a.externalId, a.agentId);
      const tabOne = enterRoom(a.room, agent.token);
      const tabTwo = enterRoom(a.room, agent.token, new Date(tabOne.joinedAt.getTime() + 5 * SECOND));
      for (const tab of [tabOne, tabTwo]) expect((await sendDaily(fake.presenceEvent("participant.joined", a.room, tab))).statusCode).toBe(200);

      const firstLeft = new Date(tabOne.joinedAt.getTime() + 60 * SECOND);
      fake.leave(a.room, tabOne, firstLeft);
      expect((await sendDaily(fake.presenceEvent("participant.left", a.room, tabOne, { leftAt: firstLeft }))).statusCode).toBe(200);
      expect((await readAppointment(a.externalId)).presence.agent).toEqual({ present: true, since: tabOne.joinedAt.toISOString() });

      const lastLeft = new Date(tabOne.joinedAt.getTime() + 90 * SECOND);
      fake.leave(a.room, tabTwo, lastLeft);
      expect((await sendDaily(fake.presenceEvent("participant.left", a.room, tabTwo, { leftAt: lastLeft }))).statusCode).toBe(200);
      expect((await readAppointment(a.externalId)).presence.agent).toEqual({ present: false, since: lastLeft.toISOString() });
      expect((await auditOf(a.externalId)).filter((e) => e.type.startsWith("participant.")).map((e) => e.type)).toEqual([
        "participant.joined",
        "participant.left",
      ]);
    });

    it("refuses unsigned, forged, wrong-secret and stale callbacks with 401 and changes nothing", async () => {
      const a = await schedule();
      const agent = await joined(a.externalId, a.agentId);
      const participant = enterRoom(a.room, agent.token);
      const body = fake.presenceEvent("participant.joined", a.room, participant);
      const now = String(epoch(clock.now()));
      const attempts: [string, string, Record<string, string>][] = [
        ["unsigned", body, {}],
        ["wrong secret", body, signDailyWebhook(randomBytes(32).toString("base64"), body, now)],
        ["signature of another body", body.replace(a.room, "jw-elsewhere"), signDailyWebhook(WEBHOOK_SECRET, body, now)],
        ["another timestamp than signed", body, { ...signDailyWebhook(WEBHOOK_SECRET, body, now), "x-webhook-timestamp": String(Number(now) + 1) }],
        ["two hours old", body, signDailyWebhook(WEBHOOK_SECRET, body, String(Number(now) - 2 * 3600))],
        ["garbled signature", body, { ...signDailyWebhook(WEBHOOK_SECRET, body, now), "x-webhook-signature": "not-a-signature" }],
      ];
      for (const [what, rawBody, headers] of attempts) {
        const res = await sendDaily(rawBody, headers);
        expect(res.statusCode, what).toBe(401);
        expect(res.json().code, what).toBe("invalid_signature");
        expect(res.body, what).not.toContain(WEBHOOK_SECRET);
      }
      expect((await readAppointment(a.externalId)).presence.agent).toEqual({ present: false, since: null });
      expect((await auditOf(a.externalId)).filter((e) => e.type.startsWith("participant."))).toEqual([]);
      const metrics = (await t.app.inject({ method: "GET", url: "/metrics" })).body;
      expect(metrics).toMatch(/joinwindow_presence_reports_total\{via="daily",result="rejected"\} \d+/);
      await sleep(QUIET_MS);
      expect(receiver.of(a.externalId)).toEqual([]);
    });

    it("acknowledges Daily's endpoint check and ignores an unknown room (200)", async () => {
      const ping = await sendDaily(DAILY_VERIFICATION_PING, {});
      expect(ping.statusCode).toBe(200);
      expect(ping.json()).toEqual({ taken: 0, ignored: 0 });

      const stranger: FakeDailyParticipant = { sessionId: "0b1c2d3e-0000-4000-8000-000000000000", userId: "agent-x", owner: true, joinedAt: clock.now() };
      const unknown = await sendDaily(fake.presenceEvent("participant.joined", "jw-no-such-room-0123456789", stranger));
      expect(unknown.statusCode).toBe(200);
      expect(unknown.json()).toEqual({ taken: 0, ignored: 1 });
    });

    it("works end to end for a user id longer than Daily's 36 characters (an e-mail), known to Daily by a digest", async () => {
      const email = "dr.leonora.castellanos-whitfield@clinic.example.org";
      expect(email.length).toBeGreaterThan(36);
      const a = await schedule({ agentId: email });
      const first = await joined(a.externalId, email);
      const dailyId = claimsOf(first.token).ud as string;
      expect(dailyId.length).toBeLessThanOrEqual(36);
      expect(dailyId).not.toBe(email);
      // The same digest every time: Daily's callbacks carry it back.
      await nextSecond();
      const agent = await joined(a.externalId, email);
      expect(claimsOf(agent.token).ud).toBe(dailyId);

      const participant = enterRoom(a.room, agent.token);
      expect(participant.userId).toBe(dailyId);
      expect((await sendDaily(fake.presenceEvent("participant.joined", a.room, participant))).json()).toEqual({ taken: 1, ignored: 0 });
      expect((await readAppointment(a.externalId)).presence.agent.present).toBe(true);
      await receiver.waitFor(() => eventsOf(a.externalId, "participant.joined").length > 0);
      expect(eventsOf(a.externalId, "participant.joined")[0]?.data).toMatchObject({ userId: email, role: "moderator", via: "daily" });

      const revoked = await t.app.inject({ method: "POST", url: "/v1/tokens/revoke", headers: operator(), payload: { tokenId: agent.tokenId } });
      expect(revoked.statusCode).toBe(200);
      await expectEjected(a.room, [dailyId], Date.now());
      await until("the agent is out of the room", () => !inRoom(a.room, participant), 5000);
      await receiver.waitFor(() => eventsOf(a.externalId, "participant.ejected").length > 0);
      expect(eventsOf(a.externalId, "participant.ejected")[0]?.data).toMatchObject({ userId: email, role: "moderator", reason: "operator" });
    });
  });

  // --- 6. ejections ---------------------------------------------------------------------------------------------------

  describe("ejections", () => {
    /** An appointment with both participants holding tokens and inside the room. */
    async function bothInRoom(options: ScheduleOptions = {}) {
      const a = await schedule(options);
      const agent = await joined(a.externalId, a.agentId);
      const customer = await joined(a.externalId, a.customerId);
      return { a, agent, customer, agentIn: enterRoom(a.room, agent.token), customerIn: enterRoom(a.room, customer.token) };
    }

    it.each([
      {
        reason: "rescheduled",
        ejected: ["agent", "customer"],
        revoke: async (a: Scheduled) => {
          await reschedule(a, 5, 60);
        },
      },
      {
        reason: "cancelled",
        ejected: ["agent", "customer"],
        revoke: async (a: Scheduled) => {
          const res = await deliver(cancelledEvent(a.externalId));
          expect(res.statusCode).toBe(200);
        },
      },
      {
        reason: "reassigned",
        ejected: ["customer"],
        revoke: async (a: Scheduled) => {
          // The same times: only the customer changes.
          const res = await deliver({ ...a.event, data: { ...a.event.data, customer: { id: `${a.customerId}-new`, name: "Sam Roe" } } });
          expect(res.statusCode).toBe(200);
        },
      },
      {
        reason: "operator",
        ejected: ["agent", "customer"],
        revoke: async (a: Scheduled) => {
          const res = await t.app.inject({ method: "POST", url: `/v1/appointments/${a.externalId}/revoke`, headers: operator(), payload: { reason: "test" } });
          expect(res.json().revoked).toBe(2);
        },
      },
      {
        reason: "blocked",
        ejected: ["agent", "customer"],
        revoke: async (a: Scheduled) => {
          const res = await t.app.inject({
            method: "POST",
            url: `/v1/appointments/${a.externalId}/revoke`,
            headers: operator(),
            payload: { reason: "kill switch test", block: true },
          });
          expect(res.json()).toMatchObject({ revoked: 2, appointment: { accessBlocked: true } });
        },
      },
    ])("ejects after a revocation ($reason) within 5 s of the answer", async ({ reason, ejected, revoke }) => {
      const { a, agentIn, customerIn } = await bothInRoom();
      const ids = ejected.map((who) => (who === "agent" ? a.agentId : a.customerId));
      await revoke(a);
      const answeredAt = Date.now();
      await expectEjected(a.room, ids, answeredAt);
      await until("the revoked participants are out of the room", () => ejected.every((who) => !inRoom(a.room, who === "agent" ? agentIn : customerIn)), 5000);
      if (!ejected.includes("agent")) expect(inRoom(a.room, agentIn)).toBe(true);

      await receiver.waitFor(() => eventsOf(a.externalId, "participant.ejected").length >= ids.length);
      expect(eventsOf(a.externalId, "participant.ejected").map((e) => e.data).sort((x, y) => String(x.userId).localeCompare(String(y.userId)))).toEqual(
        ids.sort().map((userId) => expect.objectContaining({ userId, reason })),
      );
      await until(
        "the ejections audited",
        async () => (await auditOf(a.externalId)).filter((e) => e.type === "participant.ejected" && e.outcome === "removed").length === ids.length,
        5000,
      );
    });

    it("ejects a participant who superseded their token from the other appointment's room within 5 s", async () => {
      const { a, customerIn } = await bothInRoom();
      const other = await schedule({ customerId: a.customerId });
      const refused = await join(other.externalId, a.customerId);
      expect(refused.statusCode).toBe(409);
      expect(refused.json()).toMatchObject({ code: "active_elsewhere", otherAppointmentId: a.externalId });

      await joined(other.externalId, a.customerId, { supersede: true });
      const answeredAt = Date.now();
      await expectEjected(a.room, [a.customerId], answeredAt);
      await until("the customer is out of the first room", () => !inRoom(a.room, customerIn), 5000);
      expect(ejectCalls(other.room)).toEqual([]);
      await receiver.waitFor(() => eventsOf(a.externalId, "participant.ejected").length > 0);
      expect(eventsOf(a.externalId, "participant.ejected")[0]?.data).toMatchObject({ userId: a.customerId, role: "participant", reason: "superseded" });
    });

    it("does not eject a participant whose token was replaced by their own new one", async () => {
      const a = await schedule();
      const first = await joined(a.externalId, a.agentId);
      const inside = enterRoom(a.room, first.token);
      await nextSecond();
      await joined(a.externalId, a.agentId);
      const audit = await auditOf(a.externalId);
      expect(audit.some((e) => e.type === "token.revoked" && e.detail.reason === "replaced")).toBe(true);
      await sleep(QUIET_MS);
      expect(ejectCalls(a.room)).toEqual([]);
      expect(inRoom(a.room, inside)).toBe(true);
    });

    it("ejects everyone who had a token when the window closes (TestClock at closesAt)", async () => {
      const { a, agentIn, customerIn } = await bothInRoom({ startsInMinutes: 0, durationMinutes: 1 });
      clock.advance(Date.parse(a.appointment.join.closesAt) + SECOND - clock.now().getTime());
      const closedAt = Date.now();
      await until("both ejected", () => [a.agentId, a.customerId].every((id) => ejectCalls(a.room).some((c) => c.userIds.includes(id))), EJECT_WAIT_MS);
      // The timed event is due within 5 s of its instant; the removal follows it within the worker's next pass.
      for (const call of ejectCalls(a.room)) expect(call.at - closedAt).toBeLessThan(EJECT_WITHIN_MS + SECOND);
      expect(inRoom(a.room, agentIn) || inRoom(a.room, customerIn)).toBe(false);
      await receiver.waitFor(() => eventsOf(a.externalId, "participant.ejected").length >= 2);
      expect(eventsOf(a.externalId, "participant.ejected").map((e) => e.data.reason)).toEqual(["window_closed", "window_closed"]);
    });

    it("retries an ejection through an eject outage and removes the participant once Daily answers", async () => {
      const { a, customer, customerIn } = await bothInRoom();
      fake.eject.fail(503);
      const revoked = await t.app.inject({ method: "POST", url: "/v1/tokens/revoke", headers: operator(), payload: { tokenId: customer.tokenId } });
      expect(revoked.statusCode).toBe(200);
      const answeredAt = Date.now();
      // A first attempt (one call: the job retries by itself, deciding afresh), then its retry a second or so later.
      await until("several failed eject calls", () => ejectCalls(a.room).length >= 2, EJECT_WAIT_MS);
      expect(ejectCalls(a.room)[0]!.at - answeredAt).toBeLessThan(EJECT_WITHIN_MS);
      expect(inRoom(a.room, customerIn)).toBe(true);
      const failedCalls = ejectCalls(a.room).length;

      fake.eject.reset();
      await until("the customer is out of the room", () => !inRoom(a.room, customerIn), 10_000);
      expect(ejectCalls(a.room).length).toBeGreaterThan(failedCalls);
      expect(ejectCalls(a.room).every((c) => c.userIds.length === 1 && c.userIds[0] === a.customerId)).toBe(true);
      await until(
        "the removal audited",
        async () => (await auditOf(a.externalId)).some((e) => e.type === "participant.ejected" && e.outcome === "removed"),
        5000,
      );
      await receiver.waitFor(() => eventsOf(a.externalId, "participant.ejected").length > 0);
      expect(eventsOf(a.externalId, "participant.ejected")[0]?.data).toMatchObject({ userId: a.customerId, reason: "operator" });
      const metrics = (await t.app.inject({ method: "GET", url: "/metrics" })).body;
      expect(metrics).toMatch(/joinwindow_ejections_total\{outcome="retry"\} [1-9]/);
      expect(metrics).toMatch(/joinwindow_ejections_total\{outcome="removed"\} [1-9]/);
    });

    it("ejects someone Daily still admits with a revoked token, once Daily reports them in (no_live_token)", async () => {
      const { a, customer, customerIn } = await bothInRoom();
      await t.app.inject({ method: "POST", url: "/v1/tokens/revoke", headers: operator(), payload: { tokenId: customer.tokenId } });
      await until("the revoked customer is out of the room", () => !inRoom(a.room, customerIn), EJECT_WAIT_MS);
      const ejectsBefore = ejectCalls(a.room).length;

      // Daily checks only the token's own times: the revoked token still opens the room.
      const back = enterRoom(a.room, customer.token);
      const reported = await sendDaily(fake.presenceEvent("participant.joined", a.room, back));
      expect(reported.statusCode).toBe(200);
      const answeredAt = Date.now();
      await until("a second ejection", () => ejectCalls(a.room).length > ejectsBefore, EJECT_WAIT_MS);
      expect(ejectCalls(a.room)[ejectsBefore]).toMatchObject({ userIds: [a.customerId] });
      expect(ejectCalls(a.room)[ejectsBefore]!.at - answeredAt).toBeLessThan(EJECT_WITHIN_MS);
      await until("the customer is out again", () => !inRoom(a.room, back), 5000);
      await receiver.waitFor(() => eventsOf(a.externalId, "participant.ejected").some((e) => e.data.reason === "no_live_token"));
    });

    it("an ejection retried after the participant came back with a new token removes the old entry, not the new one", async () => {
      // Only the customer is in (the room holds two): their old entry and their new one.
      const a = await schedule();
      const customer = await joined(a.externalId, a.customerId);
      const customerIn = enterRoom(a.room, customer.token);
      expect((await sendDaily(fake.presenceEvent("participant.joined", a.room, customerIn))).json()).toEqual({ taken: 1, ignored: 0 });
      fake.eject.fail(503);
      await t.app.inject({ method: "POST", url: "/v1/tokens/revoke", headers: operator(), payload: { tokenId: customer.tokenId } });
      await until("a failed eject call", () => ejectCalls(a.room).length > 0, EJECT_WAIT_MS);

      // Meanwhile the customer is given a new token (the revocation did not block) and enters with it.
      const again = await joined(a.externalId, a.customerId);
      const rejoined = enterRoom(a.room, again.token);
      expect((await sendDaily(fake.presenceEvent("participant.joined", a.room, rejoined))).json()).toEqual({ taken: 1, ignored: 0 });

      fake.eject.reset();
      await until("the old entry is removed", () => !inRoom(a.room, customerIn), 12_000);
      expect(inRoom(a.room, rejoined), "the entry made with the new, live token").toBe(true);
    });

    it("ejects once with two replicas running the worker", async () => {
      const replica = await startApp(env(), { clock });
      try {
        const { a, agent, agentIn } = await bothInRoom();
        // A slow answer keeps the job in flight while both replicas' workers pass over it.
        fake.eject.delay(1200);
        const res = await replica.app.inject({ method: "POST", url: "/v1/tokens/revoke", headers: operator(), payload: { tokenId: agent.tokenId } });
        expect(res.statusCode).toBe(200);
        await expectEjected(a.room, [a.agentId], Date.now());
        await until("the agent is out of the room", () => !inRoom(a.room, agentIn), 5000);
        await sleep(QUIET_MS);
        expect(ejectCalls(a.room)).toHaveLength(1);
        const audited = (await auditOf(a.externalId)).filter((e) => e.type === "participant.ejected");
        expect(audited).toHaveLength(1);
        expect(new Set(eventsOf(a.externalId, "participant.ejected").map((e) => e.webhookId)).size).toBe(1);
      } finally {
        await replica.close();
      }
    });
  });
});
