// The livekit provider against a fake LiveKit server on loopback
// (test/helpers/fake-livekit.ts). Where the fake differs from LiveKit:
// - it speaks Twirp JSON only (LiveKit also takes application/protobuf), and
//   only CreateRoom and RemoveParticipant (others are bad_route);
// - rooms never close: LiveKit closes a room empty_timeout seconds after its
//   creation if nobody joined, departure_timeout seconds after the last
//   participant left, and creates one again when someone joins it;
// - participants are whoever the test puts in with join(); there is no media,
//   no join-token check, no max_participants enforcement, no webhook sending;
// - refusing an empty room name is an assumption (LiveKit's CreateRoom checks
//   only the name's length); RemoveParticipant's revoke_token_ts (LiveKit
//   Cloud: tokens of that identity with an earlier nbf stop working) is read
//   but has no effect.
import { decodeProtectedHeader, SignJWT } from "jose";
import { AccessToken, RoomServiceClient, TokenVerifier } from "livekit-server-sdk";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { Config } from "../../src/config.js";
import type { ProviderHttpError } from "../../src/providers/http-client.js";
import { type LiveKitSettings, livekit } from "../../src/providers/livekit.js";
import { createLiveKitProvider, type LiveKitProvider, liveKitRoomName } from "../../src/providers/livekit/provider.js";
import {
  CallbackRejectedError,
  type EjectRequest,
  type ProviderCall,
  type ProviderCallback,
  ProviderUnavailableError,
  type SessionRequest,
  type TokenRequest,
} from "../../src/providers/video-provider.js";
import {
  type FakeLiveKit,
  liveKitParticipantEvent,
  type ParticipantEventOptions,
  signLiveKitWebhook,
  startFakeLiveKit,
} from "../helpers/fake-livekit.js";
import { startFakeServer } from "../helpers/fake-server.js";

const API_KEY = "APIq7Xv2mK9pLr4";
const API_SECRET = "Zt8wQ3nV6yB1cR5uH0jE7kM2fA9sD4gL6pX3vN8bT1q";
const CREDENTIALS = { apiKey: API_KEY, apiSecret: API_SECRET };
const verifier = new TokenVerifier(API_KEY, API_SECRET);

const closesAt = () => new Date(Date.now() + 2 * 3600_000);
const session = (overrides: Partial<SessionRequest> = {}): SessionRequest => ({
  externalId: "appt-3003",
  settings: { maxParticipants: 2, waitingRoom: true, recording: false },
  closesAt: closesAt(),
  ...overrides,
});

let fake: FakeLiveKit;
let calls: ProviderCall[];

beforeAll(async () => {
  fake = await startFakeLiveKit(CREDENTIALS);
});
afterAll(async () => {
  await fake?.close();
});
beforeEach(() => {
  calls = [];
});
afterEach(() => {
  fake.reset();
});

function provider(overrides: Partial<Parameters<typeof createLiveKitProvider>[0]> = {}): LiveKitProvider {
  return createLiveKitProvider({
    url: fake.url,
    ...CREDENTIALS,
    timeoutMs: 5000,
    observe: (call) => calls.push(call),
    ...overrides,
  });
}

const budget = (ms = 10_000) => ({ deadline: Date.now() + ms });
const outcomes = () => calls.map((c) => c.outcome);
const bearer = (index: number) => /^Bearer (.+)$/.exec(fake.requests[index]?.headers.authorization ?? "")?.[1] ?? "";

async function failure(fn: () => Promise<unknown>) {
  const error = await fn().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ProviderUnavailableError);
  return error as ProviderHttpError;
}

/** Nothing secret in what a log line would show of the error. */
function expectNoSecrets(error: Error) {
  const shown = `${error.message}\n${error.stack ?? ""}\n${JSON.stringify(error)}`;
  expect(shown).not.toContain(API_SECRET);
  expect(shown).not.toMatch(/Bearer|Authorization|eyJ/i);
  expect(error.cause).toBeUndefined();
}

describe("createSession", () => {
  it("creates the room over Twirp: the cap, an empty timeout until closesAt, a roomCreate admin JWT", async () => {
    const request = session();
    const { sessionId, roomUrl } = await provider().createSession(request, budget());

    expect(sessionId).toBe("joinwindow-appt-3003");
    expect(roomUrl).toBeUndefined();
    expect(fake.requests).toHaveLength(1);
    const sent = fake.requests[0]!;
    expect(sent.method).toBe("POST");
    expect(sent.path).toBe("/twirp/livekit.RoomService/CreateRoom");
    expect(sent.headers["content-type"]).toBe("application/json");
    const body = JSON.parse(sent.body) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(["empty_timeout", "max_participants", "name"]);
    expect(body.name).toBe(sessionId);
    expect(body.max_participants).toBe(2);
    const untilClose = (request.closesAt.getTime() - sent.at) / 1000;
    expect(body.empty_timeout).toBeGreaterThanOrEqual(Math.floor(untilClose));
    expect(body.empty_timeout).toBeLessThanOrEqual(Math.ceil(untilClose) + 1);

    const room = fake.rooms.get(sessionId)!;
    expect(room).toMatchObject({ maxParticipants: 2, emptyTimeout: body.empty_timeout, departureTimeout: 20 });

    const claims = await verifier.verify(bearer(0));
    expect(claims.video).toEqual({ roomCreate: true });
    expect(claims.iss).toBe(API_KEY);
    expect(claims.sub).toBeUndefined();
    expect(claims.exp! - claims.nbf!).toBe(300);
    expect(Math.abs(claims.nbf! - Date.now() / 1000)).toBeLessThan(5);
    expect(decodeProtectedHeader(bearer(0)).alg).toBe("HS256");

    expect(calls).toEqual([
      { provider: "livekit", operation: "create_session", outcome: "ok", durationMs: expect.any(Number) },
    ]);
  });

  it("sends the settings' cap, and no empty_timeout once closesAt has passed", async () => {
    const request = session({
      settings: { maxParticipants: 1, waitingRoom: false, recording: false },
      closesAt: new Date(Date.now() - 1000),
    });
    await provider().createSession(request, budget());
    expect(JSON.parse(fake.requests[0]!.body)).toEqual({ name: "joinwindow-appt-3003", max_participants: 1 });
    expect(fake.rooms.get("joinwindow-appt-3003")).toMatchObject({ maxParticipants: 1, emptyTimeout: 300 });
  });

  it("names the room after the appointment, so creating it again lands on the same room", async () => {
    const p = provider();
    const first = await p.createSession(session(), budget());
    const sid = fake.rooms.get(first.sessionId)!.sid;
    const second = await p.createSession(session(), budget());
    expect(second.sessionId).toBe(first.sessionId);
    expect([...fake.rooms.keys()]).toEqual([first.sessionId]);
    expect(fake.rooms.get(first.sessionId)!.sid).toBe(sid);

    const other = await p.createSession(session({ externalId: "appt-3004" }), budget());
    expect(other.sessionId).toBe("joinwindow-appt-3004");
    expect(fake.rooms.size).toBe(2);
  });

  it("gets the same room when the first answer is lost and the call is retried", async () => {
    // The first attempt is handled after the client gave up on it: LiveKit made the room, we never heard.
    fake.createRoom.delay(700, { times: 1 });
    const { sessionId } = await provider({ timeoutMs: 300 }).createSession(session(), budget());
    await new Promise<void>((resolve) => {
      const check = () => (fake.calls.length === 2 ? resolve() : setTimeout(check, 20));
      check();
    });
    expect(outcomes()).toEqual(["timeout", "ok"]);
    expect(fake.calls.map((call) => call.request.name)).toEqual([sessionId, sessionId]);
    expect([...fake.rooms.keys()]).toEqual([sessionId]);
  });

  it("keeps every room name within LiveKit's 256 bytes, distinct per appointment", async () => {
    const longAscii = "a".repeat(200);
    expect(liveKitRoomName(longAscii)).toBe(`joinwindow-${longAscii}`);
    const wide = "予約".repeat(100); // 200 characters, 600 bytes
    const hashed = liveKitRoomName(wide);
    expect(hashed).toMatch(/^joinwindow~sha256~[0-9a-f]{64}$/);
    expect(liveKitRoomName(wide)).toBe(hashed);
    expect(liveKitRoomName(`${wide}x`)).not.toBe(hashed);
    expect(liveKitRoomName("予約-7")).toBe("joinwindow-予約-7");

    const p = provider();
    for (const externalId of [longAscii, wide]) {
      const { sessionId } = await p.createSession(session({ externalId }), budget());
      expect(Buffer.byteLength(sessionId)).toBeLessThanOrEqual(256);
      expect(fake.rooms.has(sessionId)).toBe(true);
    }
  });

  it("is refused (401, not retried) with a secret LiveKit does not know", async () => {
    const error = await failure(() =>
      provider({ apiSecret: "another-secret-another-secret-000" }).createSession(session(), budget()),
    );
    expect(error.message).toBe("livekit create session: HTTP 401");
    expect(error.status).toBe(401);
    expect(fake.requests).toHaveLength(1);
    expect(fake.rooms.size).toBe(0);
    expectNoSecrets(error);
  });

  it("retries 5xx and a 429 (after its Retry-After) and succeeds", async () => {
    fake.createRoom.fail(503, { times: 1 }).fail(429, { times: 1, retryAfter: 1 });
    const { sessionId } = await provider().createSession(session(), budget());
    expect(fake.rooms.has(sessionId)).toBe(true);
    expect(outcomes()).toEqual(["http_503", "http_429", "ok"]);
    expect(fake.requests[2]!.at - fake.requests[1]!.at).toBeGreaterThanOrEqual(990);
  });

  it("surfaces a persistent outage as ProviderUnavailableError after 3 attempts", async () => {
    fake.createRoom.fail(500);
    const error = await failure(() => provider().createSession(session(), budget()));
    expect(error.message).toBe("livekit create session: HTTP 500 after 3 attempts");
    expect(outcomes()).toEqual(["http_500", "http_500", "http_500"]);
    expectNoSecrets(error);
  });

  it("abandons a hanging LiveKit at the budget's deadline", async () => {
    fake.createRoom.hang();
    const started = Date.now();
    const error = await failure(() => provider().createSession(session(), budget(1000)));
    expect(Date.now() - started).toBeLessThan(1000 + 250);
    expect(error.outcome).toBe("budget_exhausted");
  });

  it("treats an unreadable answer or one for another room as invalid, not retried", async () => {
    fake.createRoom.malformed({ times: 1 }).missingId({ times: 1 });
    for (let i = 0; i < 2; i++) {
      const error = await failure(() => provider().createSession(session(), budget()));
      expect(error.message).toBe("livekit create session: invalid answer");
    }
    expect(fake.requests).toHaveLength(2);
  });

  it("reports network errors as unavailable", async () => {
    const closed = await startFakeServer(() => undefined);
    await closed.close();
    const error = await failure(() => provider({ url: closed.url }).createSession(session(), budget()));
    expect(error.message).toBe("livekit create session: network error (ECONNREFUSED) after 3 attempts");
  });
});

describe("issueToken", () => {
  const now = new Date();
  const request = (overrides: Partial<TokenRequest> = {}): TokenRequest => ({
    sessionId: "joinwindow-appt-3003",
    userId: "cust-42",
    role: "participant",
    tokenId: "0f3e2d1c-4b5a-4697-8877-665544332211",
    issuedAt: now,
    notBefore: new Date(now.getTime() - 10 * 60_000 - 700),
    expiresAt: new Date(now.getTime() + 80 * 60_000 + 900),
    ...overrides,
  });

  it("is local: no HTTP, no application id", async () => {
    const p = provider();
    expect(p.name).toBe("livekit");
    expect(p.applicationId).toBeNull();
    expect(p.remote).toEqual({ sessions: true, tokens: false });
    await p.issueToken(request(), budget());
    expect(fake.requests).toHaveLength(0);
    expect(calls).toHaveLength(0);
  });

  it("signs a join token for that room only, which the SDK's TokenVerifier accepts", async () => {
    const tokenRequest = request();
    const { token } = await provider().issueToken(tokenRequest, budget());
    const claims = await verifier.verify(token);
    expect(claims).toEqual({
      iss: API_KEY,
      sub: "cust-42",
      jti: tokenRequest.tokenId,
      iat: Math.floor(now.getTime() / 1000),
      nbf: Math.floor(tokenRequest.notBefore.getTime() / 1000),
      exp: Math.floor(tokenRequest.expiresAt.getTime() / 1000),
      video: {
        room: "joinwindow-appt-3003",
        roomJoin: true,
        canPublish: true,
        canSubscribe: true,
        canPublishData: true,
      },
    });
    expect(decodeProtectedHeader(token)).toEqual({ alg: "HS256" });
  });

  it("adds roomAdmin for the moderator only, in the grant shape the SDK's AccessToken writes", async () => {
    const { token } = await provider().issueToken(request({ role: "moderator", userId: "agent-7" }), budget());
    const claims = await verifier.verify(token);
    expect(claims.sub).toBe("agent-7");

    const sdk = new AccessToken(API_KEY, API_SECRET, { identity: "agent-7" });
    sdk.addGrant({
      room: "joinwindow-appt-3003",
      roomJoin: true,
      canPublish: true,
      canSubscribe: true,
      canPublishData: true,
      roomAdmin: true,
    });
    const sdkClaims = await verifier.verify(await sdk.toJwt());
    expect(claims.video).toEqual(sdkClaims.video);
  });

  it("is refused by the SDK before notBefore and from closesAt on, and with another secret", async () => {
    const early = await provider().issueToken(request({ notBefore: new Date(Date.now() + 60_000) }), budget());
    await expect(verifier.verify(early.token)).rejects.toThrow(/nbf/);
    const late = await provider().issueToken(request({ expiresAt: new Date(Date.now() - 60_000) }), budget());
    await expect(verifier.verify(late.token)).rejects.toThrow(/exp/);
    const { token } = await provider().issueToken(request(), budget());
    await expect(new TokenVerifier(API_KEY, "some-other-secret-of-32-characters").verify(token)).rejects.toThrow();
    await expect(new TokenVerifier("APIsomeOtherKey", API_SECRET).verify(token)).rejects.toThrow(/iss/);
  });
});

describe("eject", () => {
  const ejection: EjectRequest = {
    sessionId: "joinwindow-appt-3003",
    userId: "cust-42",
    role: "participant",
    connectionIds: [],
    byIdentity: true,
  };

  it("removes the participant with RemoveParticipant and a roomAdmin grant for that room", async () => {
    fake.join("joinwindow-appt-3003", "cust-42");
    fake.join("joinwindow-appt-3003", "agent-7");
    expect(await provider().eject(ejection, budget())).toEqual({ removed: true });

    expect([...fake.rooms.get("joinwindow-appt-3003")!.participants]).toEqual(["agent-7"]);
    const sent = fake.requests[0]!;
    expect(sent.path).toBe("/twirp/livekit.RoomService/RemoveParticipant");
    expect(JSON.parse(sent.body)).toEqual({ room: "joinwindow-appt-3003", identity: "cust-42" });
    const claims = await verifier.verify(bearer(0));
    expect(claims.video).toEqual({ roomAdmin: true, room: "joinwindow-appt-3003" });
    expect(outcomes()).toEqual(["ok"]);
  });

  it("calls nothing when the user may not be removed by identity (they came back with a new token, under the same identity)", async () => {
    fake.join("joinwindow-appt-3003", "cust-42");
    expect(await provider().eject({ ...ejection, byIdentity: false }, budget())).toEqual({ removed: false });
    expect(fake.requests).toHaveLength(0);
    expect([...fake.rooms.get("joinwindow-appt-3003")!.participants]).toEqual(["cust-42"]);
  });

  it("answers removed: false when LiveKit says not_found, without retrying", async () => {
    fake.join("joinwindow-appt-3003", "agent-7");
    expect(await provider().eject(ejection, budget())).toEqual({ removed: false });
    // A room that is gone (closed, or never joined) is not_found too.
    expect(await provider().eject({ ...ejection, sessionId: "joinwindow-appt-9999" }, budget())).toEqual({
      removed: false,
    });
    expect(fake.requests).toHaveLength(2);
    expect(outcomes()).toEqual(["http_404", "http_404"]);
    expect(fake.rooms.get("joinwindow-appt-3003")!.participants.has("agent-7")).toBe(true);
  });

  it("retries a transient failure and removes the participant", async () => {
    fake.join("joinwindow-appt-3003", "cust-42");
    fake.removeParticipant.fail(502, { times: 1 });
    expect(await provider().eject(ejection, budget())).toEqual({ removed: true });
    expect(outcomes()).toEqual(["http_502", "ok"]);
  });

  it("throws ProviderUnavailableError while LiveKit is down", async () => {
    fake.join("joinwindow-appt-3003", "cust-42");
    fake.removeParticipant.fail(503);
    const error = await failure(() => provider().eject(ejection, budget()));
    expect(error.message).toBe("livekit eject: HTTP 503 after 3 attempts");
    expect(fake.rooms.get("joinwindow-appt-3003")!.participants.has("cust-42")).toBe(true);
    expectNoSecrets(error);
  });

  it("throws (not removed: false) when LiveKit refuses the credentials", async () => {
    fake.join("joinwindow-appt-3003", "cust-42");
    const error = await failure(() =>
      provider({ apiSecret: "another-secret-another-secret-000" }).eject(ejection, budget()),
    );
    expect(error.status).toBe(401);
  });
});

describe("readCallback", () => {
  const joinedAt = new Date("2026-12-07T10:00:03.456Z");
  const event = (overrides: Partial<ParticipantEventOptions> = {}): string =>
    liveKitParticipantEvent({
      event: "participant_joined",
      room: "joinwindow-appt-3003",
      identity: "cust-42",
      createdAt: new Date(joinedAt.getTime() + 1200),
      joinedAt,
      ...overrides,
    });
  const callback = (signed: { body: string; headers: Record<string, string> }): ProviderCallback => ({
    headers: signed.headers,
    rawBody: signed.body,
    query: {},
  });
  const read = async (body: string) => provider().readCallback(callback(await signLiveKitWebhook(body, CREDENTIALS)));

  it("reads a signed participant_joined at the participant's join time (milliseconds)", async () => {
    const body = event();
    // What LiveKit's protojson writes: camelCase names, 64-bit integers as strings.
    expect(JSON.parse(body)).toMatchObject({
      event: "participant_joined",
      createdAt: "1796637604",
      participant: { identity: "cust-42", joinedAt: "1796637603", joinedAtMs: "1796637603456", state: "ACTIVE" },
    });
    expect(await read(body)).toEqual([
      { sessionId: "joinwindow-appt-3003", userId: "cust-42", state: "joined", at: joinedAt },
    ]);
  });

  it("reads participant_left at the event's time (whole seconds)", async () => {
    const left = new Date("2026-12-07T10:25:41.900Z");
    const reports = await read(
      event({ event: "participant_left", createdAt: left, disconnectReason: "CLIENT_INITIATED" }),
    );
    expect(reports).toEqual([
      { sessionId: "joinwindow-appt-3003", userId: "cust-42", state: "left", at: new Date("2026-12-07T10:25:41Z") },
    ]);
  });

  it("never dates a leave before the join it ends (the same second)", async () => {
    const reports = await read(event({ event: "participant_left", createdAt: new Date("2026-12-07T10:00:03.800Z") }));
    expect(reports[0]!.at).toEqual(joinedAt);
  });

  it("reads participant_connection_aborted as left", async () => {
    const aborted = new Date("2026-12-07T10:01:00Z");
    const reports = await read(event({ event: "participant_connection_aborted", createdAt: aborted }));
    expect(reports).toEqual([
      { sessionId: "joinwindow-appt-3003", userId: "cust-42", state: "left", at: aborted },
    ]);
  });

  it("ignores the leave of a connection replaced by the same identity", async () => {
    expect(await read(event({ event: "participant_left", disconnectReason: "DUPLICATE_IDENTITY" }))).toEqual([]);
  });

  it("answers [] for events that are not presence", async () => {
    for (const name of ["room_started", "track_published", "egress_ended", "something_new", "constructor", "__proto__"]) {
      expect(await read(event({ event: name }))).toEqual([]);
    }
  });

  it("rejects a callback without the Authorization header", async () => {
    const signed = await signLiveKitWebhook(event(), CREDENTIALS);
    const { authorization: _dropped, ...headers } = signed.headers;
    await expect(provider().readCallback(callback({ body: signed.body, headers }))).rejects.toBeInstanceOf(
      CallbackRejectedError,
    );
  });

  it("rejects a callback signed with another secret or key", async () => {
    for (const credentials of [
      { apiKey: API_KEY, apiSecret: "another-secret-another-secret-000" },
      { apiKey: "APIsomeOtherKey", apiSecret: API_SECRET },
    ]) {
      const signed = await signLiveKitWebhook(event(), credentials);
      await expect(provider().readCallback(callback(signed))).rejects.toBeInstanceOf(CallbackRejectedError);
    }
  });

  it("rejects a body changed after signing", async () => {
    const signed = await signLiveKitWebhook(event(), CREDENTIALS);
    const tampered = signed.body.replace('"cust-42"', '"cust-43"');
    expect(tampered).not.toBe(signed.body);
    await expect(provider().readCallback(callback({ ...signed, body: tampered }))).rejects.toBeInstanceOf(
      CallbackRejectedError,
    );
  });

  it("rejects an expired signature, and a Bearer-prefixed one (LiveKit sends the bare token)", async () => {
    const body = event();
    const signed = await signLiveKitWebhook(body, CREDENTIALS);
    const sha256 = (await verifier.verify(signed.headers.authorization)).sha256;
    const expired = await new SignJWT({ sha256 })
      .setProtectedHeader({ alg: "HS256" })
      .setIssuer(API_KEY)
      .setNotBefore(Math.floor(Date.now() / 1000) - 600)
      .setExpirationTime(Math.floor(Date.now() / 1000) - 300)
      .sign(new TextEncoder().encode(API_SECRET));
    for (const authorization of [expired, `Bearer ${signed.headers.authorization}`]) {
      const error = await provider()
        .readCallback(callback({ body, headers: { ...signed.headers, authorization } }))
        .then(
          () => undefined,
          (e: unknown) => e as Error,
        );
      expect(error).toBeInstanceOf(CallbackRejectedError);
      expect(error!.message).not.toContain(authorization.slice(-20));
    }
  });
});

describe("the fake LiveKit refuses what LiveKit refuses", () => {
  /** Posts to a RoomService method; answers the status and the Twirp code (or the plain-text body). */
  async function post(method: string, body: unknown, authorization?: string, contentType = "application/json") {
    const headers: Record<string, string> = { "Content-Type": contentType };
    if (authorization) headers.Authorization = authorization;
    const response = await fetch(`${fake.url}/twirp/livekit.RoomService/${method}`, {
      method: "POST",
      body: JSON.stringify(body),
      headers,
    });
    const text = await response.text();
    const json = response.headers.get("content-type") === "application/json";
    return [response.status, json ? (JSON.parse(text) as { code?: string }).code : text];
  }
  const adminJwt = async (grant: object) => {
    const token = new AccessToken(API_KEY, API_SECRET, { ttl: 60 });
    token.addGrant(grant);
    return `Bearer ${await token.toJwt()}`;
  };

  it("needs a Bearer token with the method's grant, for the right room", async () => {
    expect(await post("CreateRoom", { name: "r" })).toEqual([401, "unauthenticated"]);
    expect(await post("CreateRoom", { name: "r" }, "token")).toEqual([
      401,
      "invalid authorization header. Must start with Bearer ",
    ]);
    const listOnly = await adminJwt({ roomList: true });
    expect(await post("CreateRoom", { name: "r" }, listOnly)).toEqual([401, "unauthenticated"]);
    fake.join("r", "u");
    const otherRoom = await adminJwt({ roomAdmin: true, room: "s" });
    expect(await post("RemoveParticipant", { room: "r", identity: "u" }, otherRoom)).toEqual([401, "unauthenticated"]);
    expect(fake.rooms.get("r")!.participants.has("u")).toBe(true);
    expect(fake.rooms.size).toBe(1);
  });

  it("reads camelCase and snake_case, ignores unknown fields, refuses wrong types and unknown routes", async () => {
    const authorization = await adminJwt({ roomCreate: true });
    const camelCase = { name: "r1", maxParticipants: 3, unknown: 1 };
    expect(await post("CreateRoom", camelCase, authorization)).toEqual([200, undefined]);
    expect(fake.rooms.get("r1")!.maxParticipants).toBe(3);
    const wrongType = { name: "r2", max_participants: "two" };
    expect(await post("CreateRoom", wrongType, authorization)).toEqual([400, "malformed"]);
    expect(await post("CreateRoom", { name: "r3" }, authorization, "text/plain")).toEqual([404, "bad_route"]);
    expect(await post("DeleteRoom", { room: "r1" }, authorization)).toEqual([404, "bad_route"]);
    expect(await post("CreateRoom", { name: "x".repeat(257) }, authorization)).toEqual([400, "invalid_argument"]);
    expect([...fake.rooms.keys()]).toEqual(["r1"]);
  });
  it("serves the SDK's own RoomServiceClient", async () => {
    const client = new RoomServiceClient(fake.url, API_KEY, API_SECRET);
    const room = await client.createRoom({ name: "sdk-room", maxParticipants: 4, emptyTimeout: 600 });
    expect(room).toMatchObject({ name: "sdk-room", maxParticipants: 4, emptyTimeout: 600, departureTimeout: 20 });
    expect(room.sid).toMatch(/^RM_/);
    fake.join("sdk-room", "u");
    await client.removeParticipant("sdk-room", "u");
    const absent = await client.removeParticipant("sdk-room", "u").then(
      () => undefined,
      (e: unknown) => e as { status: number; code: string },
    );
    expect(absent).toMatchObject({ status: 404, code: "not_found" });
  });
});

describe("the adapter", () => {
  const settings = (overrides: Partial<LiveKitSettings> = {}): LiveKitSettings => ({
    LIVEKIT_URL: "https://example.livekit.cloud",
    LIVEKIT_API_KEY: API_KEY,
    LIVEKIT_API_SECRET: API_SECRET,
    ...overrides,
  });

  it("declares what LiveKit can do", () => {
    expect(livekit.capabilities).toEqual({
      remoteSessions: true,
      remoteTokens: false,
      eject: true,
      presence: true,
      sessionExpiry: false,
      providerWaitingRoom: false,
    });
  });

  it("takes LIVEKIT_URL as the https base or as the wss:// URL LiveKit hands out, and refuses anything else", () => {
    const parse = livekit.variables.LIVEKIT_URL.parse;
    expect(parse("wss://my-project.livekit.cloud")).toEqual({ ok: true, value: "https://my-project.livekit.cloud" });
    expect(parse("ws://127.0.0.1:7880/")).toEqual({ ok: true, value: "http://127.0.0.1:7880" });
    expect(parse("https://my-project.livekit.cloud")).toEqual({ ok: true, value: "https://my-project.livekit.cloud" });
    expect(parse("ftp://my-project.livekit.cloud")).toEqual({ ok: false, expected: "an http(s) or ws(s) URL" });
    expect(parse("not a url")).toMatchObject({ ok: false });
  });

  it("needs all three variables", () => {
    expect(livekit.configProblems(settings())).toEqual([]);
    expect(livekit.configProblems(settings({ LIVEKIT_URL: undefined, LIVEKIT_API_SECRET: undefined }))).toEqual([
      "LIVEKIT_URL is required with VIDEO_PROVIDER=livekit",
      "LIVEKIT_API_SECRET is required with VIDEO_PROVIDER=livekit",
    ]);
    expect(livekit.configProblems(settings({ LIVEKIT_API_KEY: undefined }))).toEqual([
      "LIVEKIT_API_KEY is required with VIDEO_PROVIDER=livekit",
    ]);
  });

  it("creates the provider from its settings", async () => {
    const { provider: created } = await livekit.create({
      settings: settings({ LIVEKIT_URL: fake.url }),
      config: { providerTimeoutMs: 5000 } as Config,
      prisma: undefined as never,
      now: () => new Date(),
      observe: (call) => calls.push(call),
    });
    expect(created.name).toBe("livekit");
    const { sessionId } = await created.createSession(session(), budget());
    expect(fake.rooms.has(sessionId)).toBe(true);
    expect(outcomes()).toEqual(["ok"]);
  });
});
