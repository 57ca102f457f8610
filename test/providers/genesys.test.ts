import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { genesys } from "../../src/providers/genesys.js";
import { createGenesysProvider } from "../../src/providers/genesys/provider.js";
import { type ProviderHttpError, parseRetryAfter } from "../../src/providers/http-client.js";
import {
  type ProviderCall,
  ProviderUnavailableError,
  type SessionRequest,
  type TokenRequest,
  type VideoProvider,
} from "../../src/providers/video-provider.js";
import { type FakeGenesys, startFakeGenesys } from "../helpers/fake-genesys.js";
import type { RecordedRequest } from "../helpers/fake-server.js";

const CLIENT_ID = "6f3c9a0e-1b2d-4c5e-8f90-a1b2c3d4e5f6";
const CLIENT_SECRET = "s3cr3t-Client_Secret-value-9f8e7d6c5b4a";
const EXPIRES_IN = 3600;

const SESSION: SessionRequest = {
  externalId: "appt-2002",
  settings: { maxParticipants: 2, waitingRoom: true, recording: false },
  closesAt: new Date(Date.now() + 3600_000),
};

let fake: FakeGenesys;
let calls: ProviderCall[];

beforeAll(async () => {
  fake = await startFakeGenesys({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, expiresInSeconds: EXPIRES_IN });
});
afterAll(async () => {
  await fake?.close();
});
beforeEach(() => {
  calls = [];
});
afterEach(() => {
  for (const faults of [fake.oauthToken, fake.createSession, fake.issueToken]) faults.reset();
  fake.requests.length = 0;
});

class Clock {
  time = new Date();
  now = () => this.time;
  advance(ms: number) {
    this.time = new Date(this.time.getTime() + ms);
  }
}

function provider(overrides: Partial<Parameters<typeof createGenesysProvider>[0]> = {}): VideoProvider {
  return createGenesysProvider({
    loginBase: fake.url,
    apiBase: fake.url,
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    timeoutMs: 5000,
    observe: (call) => calls.push(call),
    ...overrides,
  });
}

const budget = (ms = 10_000) => ({ deadline: Date.now() + ms });
const observed = () => calls.map((c) => `${c.operation}:${c.outcome}`);
const routeOf = (r: RecordedRequest) =>
  r.path === "/oauth/token" ? "token" : r.path.endsWith("/tokens") ? "video-token" : "session";
const routes = () => fake.requests.map(routeOf);
const tokenRequests = () => fake.requests.filter((r) => r.path === "/oauth/token");

function tokenRequest(sessionId: string, overrides: Partial<TokenRequest> = {}): TokenRequest {
  const now = new Date();
  return {
    sessionId,
    userId: "cust-42",
    role: "participant",
    tokenId: "tok_0123456789",
    issuedAt: now,
    notBefore: now,
    expiresAt: new Date(now.getTime() + 90 * 60_000),
    ...overrides,
  };
}

async function failure(fn: () => Promise<unknown>) {
  const started = Date.now();
  const error = await fn().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ProviderUnavailableError);
  return { error: error as ProviderHttpError, elapsed: Date.now() - started };
}

/** Nothing secret in what a log line would show of the error. */
function expectNoSecrets(error: Error) {
  const shown = `${error.message}\n${error.stack ?? ""}\n${JSON.stringify(error)}`;
  expect(shown).not.toContain(CLIENT_SECRET);
  expect(shown).not.toContain(Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString("base64"));
  for (const token of fake.accessTokens) expect(shown).not.toContain(token);
  expect(shown).not.toMatch(/Bearer|Basic|Authorization/i);
  expect(Object.keys(error)).not.toContain("config");
  expect(error.cause).toBeUndefined();
}

describe("wire format", () => {
  it("gets an access token, creates a session and issues a token", async () => {
    const p = provider();
    expect(p.name).toBe("genesys");
    expect(p.applicationId).toBeNull();
    expect(p.remote).toEqual({ sessions: true, tokens: true });

    const { sessionId } = await p.createSession(SESSION, budget());
    const request = tokenRequest(sessionId);
    const { token } = await p.issueToken(request, budget());

    expect(fake.sessions.has(sessionId)).toBe(true);
    expect(fake.videoTokens.at(-1)).toBe(token);
    expect(routes()).toEqual(["token", "session", "video-token"]);
    const [oauth, session, video] = fake.requests as [RecordedRequest, RecordedRequest, RecordedRequest];

    expect(oauth.method).toBe("POST");
    const basic = Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString("base64");
    expect(oauth.headers.authorization).toBe(`Basic ${basic}`);
    expect(oauth.headers["content-type"]).toBe("application/x-www-form-urlencoded");
    expect(oauth.body).toBe("grant_type=client_credentials");

    const accessToken = fake.accessTokens.at(-1);
    expect(session.method).toBe("POST");
    expect(session.path).toBe("/api/v2/video/sessions");
    expect(session.headers.authorization).toBe(`Bearer ${accessToken}`);
    expect(session.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(session.body)).toEqual({
      name: "Appointment-appt-2002",
      description: "Video appointment appt-2002",
      recordingEnabled: false,
      waitingRoomEnabled: true,
      maxParticipants: 2,
    });

    expect(video.path).toBe(`/api/v2/video/sessions/${sessionId}/tokens`);
    expect(video.headers.authorization).toBe(`Bearer ${accessToken}`);
    expect(JSON.parse(video.body)).toEqual({
      userId: "cust-42",
      role: "participant",
      expirationTime: request.expiresAt.toISOString(),
    });
    expect(observed()).toEqual(["oauth_token:ok", "create_session:ok", "issue_token:ok"]);
  });

  it("passes settings and roles through as they are", async () => {
    const p = provider();
    const { sessionId } = await p.createSession(
      { externalId: "x", settings: { maxParticipants: 5, waitingRoom: false, recording: true }, closesAt: new Date(Date.now() + 3600_000) },
      budget(),
    );
    await p.issueToken(tokenRequest(sessionId, { role: "moderator", userId: "agent-7" }), budget());
    const [, session, video] = fake.requests;
    expect(JSON.parse(session!.body)).toMatchObject({
      recordingEnabled: true,
      waitingRoomEnabled: false,
      maxParticipants: 5,
    });
    expect(JSON.parse(video!.body)).toMatchObject({ role: "moderator", userId: "agent-7" });
  });

  it("percent-encodes the session id in the path", async () => {
    const p = provider();
    const { error } = await failure(() => p.issueToken(tokenRequest("a/b c?d"), budget()));
    expect(fake.requests.at(-1)!.path).toBe("/api/v2/video/sessions/a%2Fb%20c%3Fd/tokens");
    // An unknown session: 404, not retried.
    expect(error.message).toBe("genesys issue token: HTTP 404");
    expect(routes()).toEqual(["token", "video-token"]);
  });

  it("is refused (400, not retried) for an expiration the provider will not accept", async () => {
    const p = provider();
    const { sessionId } = await p.createSession(SESSION, budget());
    const { error } = await failure(() =>
      p.issueToken(tokenRequest(sessionId, { expiresAt: new Date(Date.now() - 60_000) }), budget()),
    );
    expect(error.message).toBe("genesys issue token: HTTP 400");
    expect(routes()).toEqual(["token", "session", "video-token"]);
  });
});

describe("OAuth token cache", () => {
  it("reuses one access token for many calls", async () => {
    const p = provider();
    for (let i = 0; i < 5; i++) await p.createSession(SESSION, budget());
    expect(tokenRequests()).toHaveLength(1);
  });

  it("shares one token request between concurrent first calls", async () => {
    fake.oauthToken.delay(100, { times: 1 });
    const p = provider();
    const results = await Promise.all(Array.from({ length: 8 }, () => p.createSession(SESSION, budget())));
    expect(new Set(results.map((r) => r.sessionId)).size).toBe(8);
    expect(tokenRequests()).toHaveLength(1);
  });

  it("refreshes once after a 401 and succeeds", async () => {
    const p = provider();
    await p.createSession(SESSION, budget());
    fake.expireAccessTokens();
    const { sessionId } = await p.createSession(SESSION, budget());
    expect(fake.sessions.has(sessionId)).toBe(true);
    expect(routes()).toEqual(["token", "session", "session", "token", "session"]);
    expect(observed()).toEqual([
      "oauth_token:ok",
      "create_session:ok",
      "create_session:http_401",
      "oauth_token:ok",
      "create_session:ok",
    ]);
    expect(fake.requests[4]!.headers.authorization).toBe(`Bearer ${fake.accessTokens.at(-1)}`);
  });

  it("refreshes only once when the API keeps answering 401", async () => {
    fake.createSession.fail(401);
    const { error } = await failure(() => provider().createSession(SESSION, budget()));
    expect(error.message).toBe("genesys create session: HTTP 401");
    expect(routes()).toEqual(["token", "session", "token", "session"]);
    expectNoSecrets(error);
  });

  it("fetches a new token shortly before expires_in runs out", async () => {
    const clock = new Clock();
    const p = provider({ now: clock.now });
    await p.createSession(SESSION, budget());
    clock.advance((EXPIRES_IN - 120) * 1000);
    await p.createSession(SESSION, budget());
    expect(tokenRequests()).toHaveLength(1);
    // Within the last minute of the token's life.
    clock.advance(90_000);
    await p.createSession(SESSION, budget());
    expect(tokenRequests()).toHaveLength(2);
    expect(fake.requests.at(-1)!.headers.authorization).toBe(`Bearer ${fake.accessTokens.at(-1)}`);
  });

  it("refreshes short-lived tokens 10 % early", async () => {
    const short = await startFakeGenesys({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, expiresInSeconds: 100 });
    try {
      const clock = new Clock();
      const p = provider({ now: clock.now, loginBase: short.url, apiBase: short.url });
      await p.createSession(SESSION, budget());
      clock.advance(89_000);
      await p.createSession(SESSION, budget());
      clock.advance(2_000);
      await p.createSession(SESSION, budget());
      expect(short.requests.filter((r) => r.path === "/oauth/token")).toHaveLength(2);
    } finally {
      await short.close();
    }
  });

  it("does not retry wrong client credentials, and does not show the secret", async () => {
    const { error } = await failure(() => provider({ clientSecret: "wrong-secret" }).createSession(SESSION, budget()));
    expect(error.message).toBe("genesys oauth token: HTTP 401");
    expect(routes()).toEqual(["token"]);
    expect(error.message).not.toContain("wrong-secret");
    expectNoSecrets(error);
  });

  it("treats a token answer without access_token as invalid, and does not cache failures", async () => {
    fake.oauthToken.missingId({ times: 1 });
    const p = provider();
    const { error } = await failure(() => p.createSession(SESSION, budget()));
    expect(error.message).toBe("genesys oauth token: invalid answer");
    await p.createSession(SESSION, budget());
    expect(routes()).toEqual(["token", "token", "session"]);
  });

  it("retries a 5xx from the token endpoint", async () => {
    fake.oauthToken.fail(503, { times: 2 });
    await provider().createSession(SESSION, budget());
    expect(observed()).toEqual(["oauth_token:http_503", "oauth_token:http_503", "oauth_token:ok", "create_session:ok"]);
  });

  it("lets a caller that joined a pending token request stop at its own deadline", async () => {
    fake.oauthToken.delay(1500, { times: 1 });
    const p = provider();
    const first = p.createSession(SESSION, budget(5000));
    const started = Date.now();
    const { error } = await failure(() => p.createSession(SESSION, budget(500)));
    expect(Date.now() - started).toBeLessThan(500 + 250);
    expect(error.outcome).toBe("budget_exhausted");
    await first;
    expect(tokenRequests()).toHaveLength(1);
  });
});

describe("faults", () => {
  it("retries 5xx and succeeds within 3 attempts; one observation per attempt", async () => {
    fake.createSession.fail(500, { times: 1 }).fail(503, { times: 1 });
    const { sessionId } = await provider().createSession(SESSION, budget());
    expect(fake.sessions.has(sessionId)).toBe(true);
    expect(observed()).toEqual([
      "oauth_token:ok",
      "create_session:http_500",
      "create_session:http_503",
      "create_session:ok",
    ]);
    expect(calls.every((c) => c.provider === "genesys" && c.durationMs >= 0)).toBe(true);
  });

  it("gives up after 3 attempts, with Retry-After when the provider gave one", async () => {
    fake.issueToken.fail(503, { retryAfter: 0 });
    const p = provider();
    const { sessionId } = await p.createSession(SESSION, budget());
    const { error } = await failure(() => p.issueToken(tokenRequest(sessionId), budget()));
    expect(error.message).toBe("genesys issue token: HTTP 503 after 3 attempts");
    expect(error.retryAfterSeconds).toBe(0);
    expect(routes().filter((r) => r === "video-token")).toHaveLength(3);
    expectNoSecrets(error);
  });

  it("honours a 429's Retry-After given as an HTTP date", async () => {
    const p = provider();
    await p.createSession(SESSION, budget());
    fake.createSession.fail(429, { times: 1, retryAfter: new Date(Date.now() + 2000).toUTCString() });
    await p.createSession(SESSION, budget());
    const [first, second] = fake.requests.slice(-2);
    // The date has whole seconds: the wait is between 1 and 2 s.
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(990);
    expect(observed().slice(-2)).toEqual(["create_session:http_429", "create_session:ok"]);
  });

  it("fails fast when Retry-After does not fit in the budget", async () => {
    const p = provider();
    await p.createSession(SESSION, budget());
    fake.createSession.fail(429, { retryAfter: 20 });
    const { error, elapsed } = await failure(() => p.createSession(SESSION, budget(2000)));
    expect(elapsed).toBeLessThan(400);
    expect(error.retryAfterSeconds).toBe(20);
    expect(routes().filter((r) => r === "session")).toHaveLength(2);
  });

  it("does not retry a 403", async () => {
    fake.createSession.fail(403);
    const { error } = await failure(() => provider().createSession(SESSION, budget()));
    expect(error.message).toBe("genesys create session: HTTP 403");
    expect(routes()).toEqual(["token", "session"]);
  });

  it("abandons a hanging token request at the deadline", async () => {
    fake.oauthToken.hang();
    const { error, elapsed } = await failure(() => provider().createSession(SESSION, budget(800)));
    expect(elapsed).toBeLessThan(800 + 250);
    expect(error.outcome).toBe("budget_exhausted");
    expect(routes()).toEqual(["token"]);
  });

  it("abandons a hanging API call at the deadline, across the token request", async () => {
    const p = provider();
    await p.createSession(SESSION, budget());
    fake.issueToken.hang();
    const { sessionId } = await p.createSession(SESSION, budget());
    const { error, elapsed } = await failure(() => p.issueToken(tokenRequest(sessionId), budget(1000)));
    expect(elapsed).toBeLessThan(1000 + 250);
    expect(error.message).toMatch(/^genesys issue token: no answer within the \d+ ms budget$/);
  });

  it("recovers from one slow answer by timing out and retrying", async () => {
    fake.createSession.delay(800, { times: 1 });
    await provider({ timeoutMs: 300 }).createSession(SESSION, budget());
    expect(observed()).toEqual(["oauth_token:ok", "create_session:timeout", "create_session:ok"]);
  });

  it("treats malformed JSON and a missing id or token as an invalid answer", async () => {
    const p = provider();
    fake.createSession.malformed({ times: 1 }).missingId({ times: 1 });
    expect((await failure(() => p.createSession(SESSION, budget()))).error.message).toBe(
      "genesys create session: invalid answer",
    );
    expect((await failure(() => p.createSession(SESSION, budget()))).error.message).toBe(
      "genesys create session: invalid answer",
    );
    const { sessionId } = await p.createSession(SESSION, budget());
    fake.issueToken.missingId({ times: 1 });
    expect((await failure(() => p.issueToken(tokenRequest(sessionId), budget()))).error.message).toBe(
      "genesys issue token: invalid answer",
    );
    expect(routes()).toEqual(["token", "session", "session", "session", "video-token"]);
    expect(observed().filter((o) => o.endsWith("invalid_answer"))).toHaveLength(3);
  });
});

describe("parseRetryAfter", () => {
  it("reads delay-seconds and HTTP dates", () => {
    const now = Date.parse("2030-01-01T00:00:00Z");
    expect(parseRetryAfter("7", now)).toBe(7000);
    expect(parseRetryAfter(" 0 ", now)).toBe(0);
    expect(parseRetryAfter("Tue, 01 Jan 2030 00:00:30 GMT", now)).toBe(30_000);
    expect(parseRetryAfter("Mon, 31 Dec 2029 23:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfter("soon", now)).toBeUndefined();
    expect(parseRetryAfter("-5", now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });
});

describe("configuration", () => {
  it("names each missing variable", () => {
    const settings = {
      GENESYS_LOGIN_BASE: "https://login.example.com",
      GENESYS_API_BASE: undefined,
      GENESYS_CLIENT_ID: "id",
      GENESYS_CLIENT_SECRET: undefined,
    };
    expect(genesys.configProblems(settings)).toEqual([
      "GENESYS_API_BASE is required with VIDEO_PROVIDER=genesys",
      "GENESYS_CLIENT_SECRET is required with VIDEO_PROVIDER=genesys",
    ]);
    expect(
      genesys.configProblems({ ...settings, GENESYS_API_BASE: "https://api.example.com", GENESYS_CLIENT_SECRET: "s" }),
    ).toEqual([]);
  });
});
