import { createHmac, randomBytes } from "node:crypto";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { daily } from "../../src/providers/daily.js";
import {
  createDailyProvider,
  dailyRoomName,
  dailyUserId,
  WEBHOOK_TIMESTAMP_TOLERANCE_MS,
} from "../../src/providers/daily/provider.js";
import type { ProviderHttpError } from "../../src/providers/http-client.js";
import { createVideoProvider } from "../../src/providers/index.js";
import {
  CallbackRejectedError,
  type ProviderCall,
  type ProviderCallback,
  ProviderUnavailableError,
  type SessionRequest,
  type TokenRequest,
  type VideoProvider,
} from "../../src/providers/video-provider.js";
import {
  DAILY_VERIFICATION_PING,
  type FakeDaily,
  type FakeDailyParticipant,
  readMeetingToken,
  signDailyWebhook,
  startFakeDaily,
} from "../helpers/fake-daily.js";

const API_KEY = "4f9c1d7e2b8a6053c1e9d7f2a4b6c8e0d1f3a5b7c9e1f3a5b7c9d1e3f5a7b9c1";
const WEBHOOK_SECRET = randomBytes(32).toString("base64");
const HOUR = 3600_000;

/** A whole second an hour or more ahead, so that Daily's epoch seconds are exact. */
const wholeSecondAhead = (ms: number) => new Date(Math.ceil((Date.now() + ms) / 1000) * 1000);
const epoch = (at: Date) => Math.floor(at.getTime() / 1000);

function sessionRequest(overrides: Partial<SessionRequest> = {}): SessionRequest {
  return {
    externalId: "appt-2002",
    settings: { maxParticipants: 2, waitingRoom: true, recording: false },
    closesAt: wholeSecondAhead(2 * HOUR),
    ...overrides,
  };
}

function tokenRequest(sessionId: string, overrides: Partial<TokenRequest> = {}): TokenRequest {
  const now = new Date();
  return {
    sessionId,
    userId: "cust-42",
    role: "participant",
    tokenId: "0f3e8a52-4c1b-4d7e-9a6f-2b8c0d1e3f45",
    issuedAt: now,
    notBefore: new Date(now.getTime() - 60_000),
    expiresAt: wholeSecondAhead(2 * HOUR),
    ...overrides,
  };
}

let fake: FakeDaily;
let calls: ProviderCall[];

beforeAll(async () => {
  fake = await startFakeDaily({ apiKey: API_KEY, domain: "acme" });
});
afterAll(async () => {
  await fake?.close();
});
beforeEach(() => {
  calls = [];
});
afterEach(() => {
  fake.resetFaults();
  fake.requests.length = 0;
  fake.rooms.clear();
  fake.tokens.length = 0;
});

function provider(overrides: Partial<Parameters<typeof createDailyProvider>[0]> = {}): VideoProvider {
  return createDailyProvider({
    apiKey: API_KEY,
    apiBase: fake.url,
    webhookSecret: WEBHOOK_SECRET,
    timeoutMs: 2000,
    observe: (call) => calls.push(call),
    ...overrides,
  });
}

const budget = (ms = 10_000) => ({ deadline: Date.now() + ms });
const observed = () => calls.map((c) => `${c.operation}:${c.outcome}`);
const routes = () => fake.requests.map((r) => `${r.method} ${r.path}`);
const bodyOf = (index: number) => JSON.parse(fake.requests[index]!.body) as unknown;

async function failure(fn: () => Promise<unknown>) {
  const started = Date.now();
  const error = await fn().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(Error);
  return { error: error as ProviderHttpError, elapsed: Date.now() - started };
}

/** Nothing secret in what a log line would show of the error. */
function expectNoSecrets(error: Error) {
  const shown = `${error.message}\n${error.stack ?? ""}\n${JSON.stringify(error)}`;
  expect(shown).not.toContain(API_KEY);
  expect(shown).not.toContain(WEBHOOK_SECRET);
  expect(shown).not.toMatch(/Bearer|Authorization/i);
  expect(Object.keys(error)).not.toContain("config");
  expect(error.cause).toBeUndefined();
}

/** A room with the agent and the customer holding tokens for it. */
async function roomWithTokens(p: VideoProvider, closesAt = wholeSecondAhead(2 * HOUR)) {
  const { sessionId } = await p.createSession(sessionRequest({ closesAt }), budget());
  const notBefore = new Date(Date.now() - 60_000);
  const agent = await p.issueToken(
    tokenRequest(sessionId, { userId: "agent-7", role: "moderator", notBefore, expiresAt: closesAt }),
    budget(),
  );
  const customer = await p.issueToken(tokenRequest(sessionId, { notBefore, expiresAt: closesAt }), budget());
  return { sessionId, agentToken: agent.token, customerToken: customer.token };
}

function joined(result: ReturnType<FakeDaily["join"]>): FakeDailyParticipant {
  if (!result.joined) throw new Error(`not admitted: ${result.reason}`);
  return result.participant;
}

/** A webhook body as Daily sends it. */
const event = (type: string, payload: Record<string, unknown>, eventTs = Date.now() / 1000) =>
  JSON.stringify({ version: "1.0.0", type, id: `evt-${type}`, payload, event_ts: eventTs });

const callback = (rawBody: string, headers: Record<string, string | undefined> = {}): ProviderCallback => ({
  headers,
  rawBody,
  query: {},
});

/** The callback as the route hands it over, signed as Daily signs it. */
const signed = (rawBody: string, options: { secret?: string; timestamp?: string } = {}) =>
  callback(rawBody, signDailyWebhook(options.secret ?? WEBHOOK_SECRET, rawBody, options.timestamp));

describe("createSession", () => {
  it("creates a private room that expires (and ejects) at closesAt, and returns its name and URL", async () => {
    const p = provider();
    expect(p.name).toBe("daily");
    expect(p.applicationId).toBeNull();
    expect(p.remote).toEqual({ sessions: true, tokens: true });
    // A fraction of a second: Daily's exp is whole epoch seconds, rounded down.
    const closesAt = new Date(wholeSecondAhead(2 * HOUR).getTime() + 750);

    const session = await p.createSession(sessionRequest({ closesAt }), budget());

    const name = dailyRoomName("appt-2002");
    expect(session).toEqual({ sessionId: name, roomUrl: `https://acme.daily.co/${name}` });
    expect(routes()).toEqual(["POST /rooms"]);
    const [request] = fake.requests;
    expect(request!.headers.authorization).toBe(`Bearer ${API_KEY}`);
    expect(request!.headers["content-type"]).toBe("application/json");
    expect(bodyOf(0)).toEqual({
      name,
      privacy: "private",
      properties: { max_participants: 2, exp: epoch(closesAt), eject_at_room_exp: true },
    });
    expect(fake.rooms.get(name)).toMatchObject({ privacy: "private" });
    expect(observed()).toEqual(["create_session:ok"]);
  });

  it("passes the participant cap through", async () => {
    await provider().createSession(
      sessionRequest({ settings: { maxParticipants: 5, waitingRoom: false, recording: true } }),
      budget(),
    );
    expect(bodyOf(0)).toMatchObject({ properties: { max_participants: 5 } });
  });

  it("names rooms from the external id: stable, in Daily's characters, never one room for two ids", async () => {
    const ids = [
      "appt-123",
      "APPT-123",
      "a/b",
      "a?b",
      "Termin für Müller #7",
      "???",
      "x".repeat(200),
      "tenant:42/appointment:9",
    ];
    const names = ids.map(dailyRoomName);
    for (const name of names) expect(name).toMatch(/^[A-Za-z0-9_-]{1,40}$/);
    expect(new Set(names).size).toBe(ids.length);
    expect(ids.map(dailyRoomName)).toEqual(names);
    expect(dailyRoomName("appt-123")).toMatch(/^jw-appt-123-[0-9a-f]{20}$/);

    // Daily (the fake, as strict as Daily about names) takes every one of them.
    const p = provider();
    for (const externalId of ids) await p.createSession(sessionRequest({ externalId }), budget());
    expect([...fake.rooms.keys()].sort()).toEqual([...names].sort());
  });

  it("uses the room it made when Daily's answer was lost, instead of making a second one", async () => {
    fake.loseAnswers("createRoom");
    const session = await provider().createSession(sessionRequest(), budget());

    const name = dailyRoomName("appt-2002");
    expect(session).toEqual({ sessionId: name, roomUrl: `https://acme.daily.co/${name}` });
    expect(fake.rooms.size).toBe(1);
    expect(routes()).toEqual(["POST /rooms", "POST /rooms", `POST /rooms/${name}`]);
    expect(observed()).toEqual(["create_session:network", "create_session:http_400", "reuse_session:ok"]);
  });

  it("gives a second creation for the appointment the same room, with this booking's expiry", async () => {
    const p = provider();
    const first = await p.createSession(sessionRequest({ closesAt: wholeSecondAhead(HOUR) }), budget());
    const laterClose = wholeSecondAhead(5 * HOUR);
    fake.requests.length = 0;

    const second = await p.createSession(sessionRequest({ closesAt: laterClose }), budget());

    expect(second).toEqual(first);
    expect(fake.rooms.size).toBe(1);
    expect(routes()).toEqual(["POST /rooms", `POST /rooms/${first.sessionId}`]);
    expect(bodyOf(1)).toEqual({
      privacy: "private",
      properties: { max_participants: 2, exp: epoch(laterClose), eject_at_room_exp: true },
    });
    expect(fake.rooms.get(first.sessionId)!.properties.exp).toBe(epoch(laterClose));
  });

  it("keeps a 400 for a payload Daily refuses (no room of that name exists)", async () => {
    const { error } = await failure(() =>
      provider().createSession(
        sessionRequest({ settings: { maxParticipants: 500, waitingRoom: true, recording: false } }),
        budget(),
      ),
    );
    expect(error).toBeInstanceOf(ProviderUnavailableError);
    expect(error.message).toBe("daily create session: HTTP 400");
    expect(observed()).toEqual(["create_session:http_400", "reuse_session:http_404"]);
    expect(fake.rooms.size).toBe(0);
  });

  it("retries a 5xx and a 429 (after its Retry-After) and succeeds", async () => {
    fake.createRoom.fail(503, { times: 1 }).fail(429, { times: 1, retryAfter: "1" });
    const { sessionId } = await provider().createSession(sessionRequest(), budget());
    expect(fake.rooms.has(sessionId)).toBe(true);
    expect(observed()).toEqual(["create_session:http_503", "create_session:http_429", "create_session:ok"]);
    const [, limited, retried] = fake.requests;
    expect(retried!.at - limited!.at).toBeGreaterThanOrEqual(990);
  });

  it("throws ProviderUnavailableError after a persistent outage, without secrets", async () => {
    fake.createRoom.fail(500);
    const { error } = await failure(() => provider().createSession(sessionRequest(), budget()));
    expect(error).toBeInstanceOf(ProviderUnavailableError);
    expect(error.message).toBe("daily create session: HTTP 500 after 3 attempts");
    expect(fake.requests).toHaveLength(3);
    expectNoSecrets(error);
  });

  it("abandons a hanging call at the budget's deadline", async () => {
    fake.createRoom.hang();
    const { error, elapsed } = await failure(() => provider().createSession(sessionRequest(), budget(800)));
    expect(error).toBeInstanceOf(ProviderUnavailableError);
    expect(elapsed).toBeLessThan(800 + 250);
    expect(error.outcome).toBe("budget_exhausted");
  });

  it("is refused, not retried, with an API key Daily does not know (401)", async () => {
    const wrongKey = "0".repeat(64);
    const { error } = await failure(() => provider({ apiKey: wrongKey }).createSession(sessionRequest(), budget()));
    expect(error.message).toBe("daily create session: HTTP 401");
    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0]!.headers.authorization).toBe(`Bearer ${wrongKey}`);
    expect(error.message).not.toContain(wrongKey);
    expectNoSecrets(error);
  });

  it("treats an answer without the room's url as invalid", async () => {
    fake.createRoom.missingId({ times: 1 });
    const { error } = await failure(() => provider().createSession(sessionRequest(), budget()));
    expect(error.message).toBe("daily create session: invalid answer");
  });
});

describe("updateSession", () => {
  it("moves the room's exp to the new closesAt, so that people can join at the new time", async () => {
    const p = provider();
    const oldClose = wholeSecondAhead(HOUR);
    const newClose = new Date(oldClose.getTime() + 24 * HOUR);
    const { sessionId } = await p.createSession(sessionRequest({ closesAt: oldClose }), budget());
    const opensAt = new Date(newClose.getTime() - HOUR);
    const { token } = await p.issueToken(tokenRequest(sessionId, { notBefore: opensAt, expiresAt: newClose }), budget());
    const duringNewWindow = new Date(newClose.getTime() - 30 * 60_000);
    // The bug this prevents: a room still expiring at the old time keeps everyone out of the new one.
    expect(fake.join(sessionId, token, duringNewWindow)).toEqual({ joined: false, reason: "room expired" });
    fake.requests.length = 0;

    await p.updateSession!({ sessionId, closesAt: newClose }, budget());

    expect(routes()).toEqual([`POST /rooms/${sessionId}`]);
    expect(bodyOf(0)).toEqual({ properties: { exp: epoch(newClose), eject_at_room_exp: true } });
    const room = fake.rooms.get(sessionId)!;
    expect(room.properties).toEqual({ max_participants: 2, exp: epoch(newClose), eject_at_room_exp: true });
    expect(room.privacy).toBe("private");
    expect(fake.join(sessionId, token, duringNewWindow)).toMatchObject({ joined: true });
    expect(fake.join(sessionId, token, newClose)).toEqual({ joined: false, reason: "room expired" });
    expect(observed()).toEqual(["create_session:ok", "issue_token:ok", "update_session:ok"]);
  });

  it("brings back, under the same name and URL, a room Daily deleted after it expired", async () => {
    const p = provider();
    const created = await p.createSession(sessionRequest(), budget());
    fake.rooms.delete(created.sessionId);
    const newClose = wholeSecondAhead(30 * HOUR);
    fake.requests.length = 0;

    await p.updateSession!({ sessionId: created.sessionId, closesAt: newClose }, budget());

    expect(routes()).toEqual([`POST /rooms/${created.sessionId}`, "POST /rooms"]);
    const room = fake.rooms.get(created.sessionId)!;
    expect(room.url).toBe(created.roomUrl);
    expect(room.privacy).toBe("private");
    expect(room.properties).toEqual({ exp: epoch(newClose), eject_at_room_exp: true });
  });

  it("throws ProviderUnavailableError after a persistent outage", async () => {
    const p = provider();
    const { sessionId } = await p.createSession(sessionRequest(), budget());
    fake.updateRoom.fail(502);
    const { error } = await failure(() => p.updateSession!({ sessionId, closesAt: wholeSecondAhead(HOUR) }, budget()));
    expect(error).toBeInstanceOf(ProviderUnavailableError);
    expect(error.message).toBe("daily update session: HTTP 502 after 3 attempts");
    expectNoSecrets(error);
  });
});

describe("issueToken", () => {
  for (const [role, owner] of [
    ["moderator", true],
    ["participant", false],
  ] as const) {
    it(`asks for a meeting token for the room, user and window (${role} → is_owner ${owner})`, async () => {
      const p = provider();
      const { sessionId } = await p.createSession(sessionRequest(), budget());
      const notBefore = new Date(wholeSecondAhead(HOUR).getTime() + 400);
      const expiresAt = new Date(wholeSecondAhead(2 * HOUR).getTime() + 999);
      const request = tokenRequest(sessionId, { role, userId: `user-${role}`, notBefore, expiresAt });
      fake.requests.length = 0;

      const { token } = await p.issueToken(request, budget());

      expect(token).toBe(fake.tokens.at(-1));
      expect(routes()).toEqual(["POST /meeting-tokens"]);
      expect(fake.requests[0]!.headers.authorization).toBe(`Bearer ${API_KEY}`);
      expect(bodyOf(0)).toEqual({
        properties: {
          room_name: sessionId,
          user_id: `user-${role}`,
          is_owner: owner,
          nbf: epoch(notBefore),
          exp: epoch(expiresAt),
          eject_at_token_exp: true,
        },
      });
      // What Daily puts in the token it signs (its abbreviated claims).
      expect(readMeetingToken(token, API_KEY)).toMatchObject({
        r: sessionId,
        ud: `user-${role}`,
        o: owner,
        nbf: epoch(notBefore),
        exp: epoch(expiresAt),
        ejt: true,
        d: fake.domainId,
      });
    });
  }

  it("admits its holder from notBefore until closesAt, and not outside", async () => {
    const p = provider();
    const closesAt = wholeSecondAhead(3 * HOUR);
    const { sessionId } = await p.createSession(sessionRequest({ closesAt }), budget());
    const notBefore = wholeSecondAhead(HOUR);
    const { token } = await p.issueToken(tokenRequest(sessionId, { notBefore, expiresAt: closesAt }), budget());

    expect(fake.join(sessionId, token, new Date(notBefore.getTime() - 1000))).toEqual({
      joined: false,
      reason: "token not yet valid",
    });
    const participant = joined(fake.join(sessionId, token, notBefore));
    expect(participant).toMatchObject({ userId: "cust-42", owner: false });
    expect(fake.join(sessionId, token, closesAt)).toMatchObject({ joined: false });
    expect(fake.join("another-room", token, notBefore)).toEqual({ joined: false, reason: "token is for another room" });
  });

  it("gives Daily a user id longer than its 36 characters as a stable 36-character digest, and ejects by the same", async () => {
    const p = provider();
    const { sessionId } = await p.createSession(sessionRequest(), budget());
    const email = "patricia.doe-longname@clinic.example.org";
    expect(email.length).toBeGreaterThan(36);
    const digest = dailyUserId(email);
    expect(digest).toMatch(/^h-[A-Za-z0-9_-]{34}$/);
    expect(dailyUserId(email)).toBe(digest);
    expect(dailyUserId(`${email}x`)).not.toBe(digest);
    expect(p.identityOf?.(email)).toBe(digest);
    // A short id is passed through as it is.
    expect(dailyUserId("u".repeat(36))).toBe("u".repeat(36));

    fake.requests.length = 0;
    const { token } = await p.issueToken(tokenRequest(sessionId, { userId: email }), budget());
    expect(readMeetingToken(token, API_KEY)).toMatchObject({ ud: digest });
    await p.eject?.({ sessionId, userId: email, role: "participant", connectionIds: [], byIdentity: true }, budget());
    expect(fake.requests.map((r) => JSON.parse(r.body || "{}"))).toContainEqual({ user_ids: [digest] });
  });

  it("retries a 503, and throws ProviderUnavailableError after a persistent outage", async () => {
    const p = provider();
    const { sessionId } = await p.createSession(sessionRequest(), budget());
    fake.meetingTokens.fail(503, { times: 2 });
    await p.issueToken(tokenRequest(sessionId), budget());
    expect(observed()).toEqual(["create_session:ok", "issue_token:http_503", "issue_token:http_503", "issue_token:ok"]);

    fake.meetingTokens.fail(500);
    const { error } = await failure(() => p.issueToken(tokenRequest(sessionId), budget()));
    expect(error).toBeInstanceOf(ProviderUnavailableError);
    expect(error.message).toBe("daily issue token: HTTP 500 after 3 attempts");
    expectNoSecrets(error);
  });

  it("treats an answer without a token as invalid", async () => {
    const p = provider();
    const { sessionId } = await p.createSession(sessionRequest(), budget());
    fake.meetingTokens.missingId({ times: 1 });
    const { error } = await failure(() => p.issueToken(tokenRequest(sessionId), budget()));
    expect(error.message).toBe("daily issue token: invalid answer");
  });
});

describe("eject", () => {
  const ejectRequest = (sessionId: string, userId = "cust-42") => ({
    sessionId,
    userId,
    role: "participant" as const,
    connectionIds: [],
    byIdentity: true,
  });

  it("removes the participant by user id and leaves the others in", async () => {
    const p = provider();
    const { sessionId, agentToken, customerToken } = await roomWithTokens(p);
    const agent = joined(fake.join(sessionId, agentToken));
    joined(fake.join(sessionId, customerToken));
    fake.requests.length = 0;

    expect(await p.eject!(ejectRequest(sessionId), budget())).toEqual({ removed: true });

    expect(routes()).toEqual([`POST /rooms/${sessionId}/eject`]);
    expect(fake.requests[0]!.headers.authorization).toBe(`Bearer ${API_KEY}`);
    expect(bodyOf(0)).toEqual({ user_ids: ["cust-42"] });
    expect(fake.rooms.get(sessionId)!.participants).toEqual([agent]);
    expect(observed().at(-1)).toBe("eject:ok");
  });

  it("removes only the recorded sessions, by their ids, when the user has come back with a new token", async () => {
    const p = provider();
    const { sessionId, customerToken } = await roomWithTokens(p);
    const before = joined(fake.join(sessionId, customerToken));
    const after = joined(fake.join(sessionId, customerToken));
    fake.requests.length = 0;

    const request = { ...ejectRequest(sessionId), connectionIds: [before.sessionId], byIdentity: false };
    expect(await p.eject!(request, budget())).toEqual({ removed: true });

    expect(bodyOf(0)).toEqual({ ids: [before.sessionId] });
    expect(fake.rooms.get(sessionId)!.participants).toEqual([after]);
  });

  it("reports not present when nobody with that id is in the room, and for a room Daily does not know (404)", async () => {
    const p = provider();
    const { sessionId } = await roomWithTokens(p);
    expect(await p.eject!(ejectRequest(sessionId), budget())).toEqual({ removed: false });
    expect(await p.eject!(ejectRequest("jw-no-such-room"), budget())).toEqual({ removed: false });
    expect(observed().slice(-2)).toEqual(["eject:ok", "eject:http_404"]);
  });

  it("takes a 2xx that does not list whom it ejected as removed", async () => {
    const p = provider();
    const { sessionId } = await roomWithTokens(p);
    fake.eject.missingId({ times: 1 });
    expect(await p.eject!(ejectRequest(sessionId), budget())).toEqual({ removed: true });
  });

  it("retries a transient failure and ejects", async () => {
    const p = provider();
    const { sessionId, customerToken } = await roomWithTokens(p);
    joined(fake.join(sessionId, customerToken));
    fake.eject.fail(503, { times: 1 });
    expect(await p.eject!(ejectRequest(sessionId), budget())).toEqual({ removed: true });
    expect(observed().slice(-2)).toEqual(["eject:http_503", "eject:ok"]);
    expect(fake.rooms.get(sessionId)!.participants).toEqual([]);
  });

  it("throws ProviderUnavailableError after a persistent outage, without secrets", async () => {
    const p = provider();
    const { sessionId, customerToken } = await roomWithTokens(p);
    joined(fake.join(sessionId, customerToken));
    fake.eject.fail(502);
    const { error } = await failure(() => p.eject!(ejectRequest(sessionId), budget()));
    expect(error).toBeInstanceOf(ProviderUnavailableError);
    expect(error.message).toBe("daily eject: HTTP 502 after 3 attempts");
    expect(fake.rooms.get(sessionId)!.participants).toHaveLength(1);
    expectNoSecrets(error);
  });

  it("is refused, not retried and not a ProviderUnavailableError, with a key Daily does not know", async () => {
    const p = provider();
    const { sessionId, customerToken } = await roomWithTokens(p);
    joined(fake.join(sessionId, customerToken));
    fake.requests.length = 0;
    const { error } = await failure(() => provider({ apiKey: "f".repeat(64) }).eject!(ejectRequest(sessionId), budget()));
    expect(error).not.toBeInstanceOf(ProviderUnavailableError);
    expect(error.message).toBe("daily eject: HTTP 401");
    expect(fake.requests).toHaveLength(1);
    expectNoSecrets(error);
  });
});

describe("readCallback", () => {
  async function rejection(p: VideoProvider, received: ProviderCallback) {
    const error = await p.readCallback!(received).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CallbackRejectedError);
    expectNoSecrets(error as Error);
    return error as CallbackRejectedError;
  }

  /** A room with the customer in it, joined at a time with milliseconds. */
  async function customerInRoom(p: VideoProvider) {
    const { sessionId, customerToken } = await roomWithTokens(p);
    const joinedAt = new Date(Math.floor(Date.now() / 1000) * 1000 - 30_000 + 250);
    const participant = joined(fake.join(sessionId, customerToken, joinedAt));
    return { sessionId, participant, joinedAt };
  }

  it("reports a signed participant.joined: the room, the user id, Daily's join time and its session id", async () => {
    const p = provider();
    const { sessionId, participant, joinedAt } = await customerInRoom(p);
    const body = fake.presenceEvent("participant.joined", sessionId, participant);

    expect(await p.readCallback!(signed(body))).toEqual([
      { sessionId, state: "joined", at: joinedAt, userId: "cust-42", connectionId: participant.sessionId },
    ]);
  });

  it("reports a signed participant.left at joined_at + duration, not when the webhook was sent", async () => {
    const p = provider();
    const { sessionId, participant, joinedAt } = await customerInRoom(p);
    const leftAt = new Date(joinedAt.getTime() + 95_600);
    const duration = fake.leave(sessionId, participant, leftAt);
    const body = fake.presenceEvent("participant.left", sessionId, participant, {
      leftAt,
      sentAt: new Date(leftAt.getTime() + 30_000),
    });

    expect(await p.readCallback!(signed(body))).toEqual([
      {
        sessionId,
        state: "left",
        at: new Date(joinedAt.getTime() + duration * 1000),
        userId: "cust-42",
        connectionId: participant.sessionId,
      },
    ]);
  });

  it("falls back to event_ts when the payload carries no time of its own", async () => {
    const body = event("participant.left", { room: "jw-room", user_id: "agent-7" }, 1_900_000_000.125);
    expect(await provider().readCallback!(signed(body))).toEqual([
      { sessionId: "jw-room", state: "left", at: new Date(1_900_000_000_125), userId: "agent-7" },
    ]);
  });

  it("answers [] for events that are not presence, and for Daily's check of the endpoint", async () => {
    const p = provider();
    for (const type of ["meeting.started", "meeting.ended", "recording.ready-to-download", "waiting-participant.joined"]) {
      expect(await p.readCallback!(signed(event(type, { room: "jw-room", user_id: "cust-42", joined_at: 1 })))).toEqual(
        [],
      );
    }
    expect(await p.readCallback!(callback(DAILY_VERIFICATION_PING))).toEqual([]);
    expect(await p.readCallback!(signed(DAILY_VERIFICATION_PING))).toEqual([]);
  });

  it("answers [] for a signed event it cannot place (no room, no user id, not JSON)", async () => {
    const p = provider();
    expect(await p.readCallback!(signed(event("participant.joined", { user_id: "cust-42", joined_at: 1 })))).toEqual([]);
    expect(await p.readCallback!(signed(event("participant.joined", { room: "jw-room", joined_at: 1 })))).toEqual([]);
    expect(await p.readCallback!(signed("not json"))).toEqual([]);
  });

  it("rejects a callback without Daily's signature headers", async () => {
    const p = provider();
    const body = event("participant.joined", { room: "jw-room", user_id: "cust-42", joined_at: 1 });
    const { "x-webhook-signature": signature, "x-webhook-timestamp": timestamp } = signDailyWebhook(WEBHOOK_SECRET, body);
    await rejection(p, callback(body));
    await rejection(p, callback(body, { "x-webhook-signature": signature }));
    await rejection(p, callback(body, { "x-webhook-timestamp": timestamp }));
  });

  it("rejects a signature made with another secret", async () => {
    const body = event("participant.joined", { room: "jw-room", user_id: "cust-42", joined_at: 1 });
    await rejection(provider(), signed(body, { secret: randomBytes(32).toString("base64") }));
  });

  it("rejects a body or a timestamp that is not the one signed", async () => {
    const p = provider();
    const body = event("participant.joined", { room: "jw-room", user_id: "cust-42", joined_at: 1 });
    const headers = signDailyWebhook(WEBHOOK_SECRET, body);
    await rejection(p, callback(body.replace("cust-42", "agent-7"), headers));
    await rejection(p, callback(`${body} `, headers));
    const later = String(Number(headers["x-webhook-timestamp"]) + 1);
    await rejection(p, callback(body, { ...headers, "x-webhook-timestamp": later }));
  });

  it("rejects a garbled signature: truncated, hex, empty, not base64", async () => {
    const p = provider();
    const body = event("participant.joined", { room: "jw-room", user_id: "cust-42", joined_at: 1 });
    const headers = signDailyWebhook(WEBHOOK_SECRET, body);
    const timestamp = headers["x-webhook-timestamp"];
    const hex = createHmac("sha256", Buffer.from(WEBHOOK_SECRET, "base64")).update(`${timestamp}.${body}`).digest("hex");
    for (const signature of [headers["x-webhook-signature"].slice(0, 20), hex, "", "!!not base64!!"]) {
      await rejection(p, callback(body, { "x-webhook-signature": signature, "x-webhook-timestamp": timestamp }));
    }
    // A signed check of the endpoint is checked like any other callback.
    await rejection(p, callback(DAILY_VERIFICATION_PING, { ...headers, "x-webhook-signature": hex }));
  });

  it(`rejects a correctly signed callback more than ${WEBHOOK_TIMESTAMP_TOLERANCE_MS / 60_000} minutes from now`, async () => {
    const p = provider();
    const body = event("participant.joined", { room: "jw-room", user_id: "cust-42", joined_at: 1 });
    const seconds = Math.floor(Date.now() / 1000);
    const tolerance = WEBHOOK_TIMESTAMP_TOLERANCE_MS / 1000;
    await rejection(p, signed(body, { timestamp: String(seconds - tolerance - 60) }));
    await rejection(p, signed(body, { timestamp: String(seconds + tolerance + 60) }));
    await rejection(p, signed(body, { timestamp: "yesterday" }));
    expect(await p.readCallback!(signed(body, { timestamp: String(seconds - tolerance + 60) }))).toHaveLength(1);
    // Measured on the provider's clock.
    const tomorrow = provider({ now: () => new Date(Date.now() + 24 * HOUR) });
    await rejection(tomorrow, signed(body));
  });

  it("reads X-Webhook-Timestamp in milliseconds too (Daily's docs do not name its unit)", async () => {
    const body = event("participant.joined", { room: "jw-room", user_id: "cust-42", joined_at: 1 });
    expect(await provider().readCallback!(signed(body, { timestamp: String(Date.now()) }))).toHaveLength(1);
  });

  it("rejects every callback when no usable secret is configured", async () => {
    const body = event("participant.joined", { room: "jw-room", user_id: "cust-42", joined_at: 1 });
    for (const webhookSecret of [undefined, "", "not base64!"]) {
      const p = provider({ webhookSecret });
      await rejection(p, signed(body));
      await rejection(p, callback(DAILY_VERIFICATION_PING));
    }
  });
});

describe("configuration", () => {
  const settings = {
    DAILY_API_KEY: API_KEY,
    DAILY_API_BASE: "https://api.daily.co/v1",
    DAILY_WEBHOOK_SECRET: undefined as string | undefined,
  };

  it("requires the API key; the webhook secret is optional but must be base64", () => {
    expect(daily.configProblems(settings)).toEqual([]);
    expect(daily.configProblems({ ...settings, DAILY_WEBHOOK_SECRET: WEBHOOK_SECRET })).toEqual([]);
    expect(daily.configProblems({ ...settings, DAILY_API_KEY: undefined })).toEqual([
      "DAILY_API_KEY is required with VIDEO_PROVIDER=daily",
    ]);
    const problems = daily.configProblems({ ...settings, DAILY_WEBHOOK_SECRET: "s3cret with spaces" });
    expect(problems).toEqual(["DAILY_WEBHOOK_SECRET must be base64, as Daily's webhook `hmac` is"]);
    expect(problems.join()).not.toContain("s3cret");
  });

  it("declares what Daily can do", () => {
    expect(daily.capabilities).toEqual({
      remoteSessions: true,
      remoteTokens: true,
      eject: true,
      presence: true,
      sessionExpiry: true,
      providerWaitingRoom: false,
    });
  });

  it("is built from the environment through the registry, with the key and the secret it was given", async () => {
    const config = loadConfig({
      VIDEO_PROVIDER: "daily",
      DAILY_API_KEY: API_KEY,
      DAILY_API_BASE: fake.url,
      DAILY_WEBHOOK_SECRET: WEBHOOK_SECRET,
    });
    const { provider: built } = await createVideoProvider(config, {} as never, () => new Date());
    expect(built.name).toBe("daily");

    const { sessionId, roomUrl } = await built.createSession(sessionRequest(), budget());
    expect(roomUrl).toBe(`https://acme.daily.co/${sessionId}`);
    expect(fake.requests[0]!.headers.authorization).toBe(`Bearer ${API_KEY}`);
    const body = event("participant.joined", { room: sessionId, user_id: "cust-42", joined_at: 1_900_000_000 });
    expect(await built.readCallback!(signed(body))).toEqual([
      { sessionId, state: "joined", at: new Date(1_900_000_000_000), userId: "cust-42" },
    ]);
  });
});
