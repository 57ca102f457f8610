import { createHash, generateKeyPairSync, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Auth } from "@vonage/auth";
import { Video } from "@vonage/video";
import { createSigner, createDecoder, createVerifier } from "fast-jwt";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { ProviderHttpError } from "../../src/providers/http-client.js";
import type {
  ProviderCall,
  ProviderCallback,
  SessionRequest,
  TokenRequest,
  VideoProvider,
} from "../../src/providers/video-provider.js";
import { CallbackRejectedError, ProviderUnavailableError } from "../../src/providers/video-provider.js";
import { type VonageSettings, vonage } from "../../src/providers/vonage.js";
import { loadVonagePrivateKey } from "../../src/providers/vonage/private-key.js";
import { createVonageProvider } from "../../src/providers/vonage/provider.js";
import { startFakeServer } from "../helpers/fake-server.js";
import {
  type FakeVonage,
  type SessionMonitoringEvent,
  sessionMonitoringBody,
  signedCallback,
  startFakeVonage,
} from "../helpers/fake-vonage.js";

const APPLICATION_ID = "c3b6a2d4-5e6f-4a1b-9c8d-0e1f2a3b4c5d";
const pair = (modulusLength = 2048) =>
  generateKeyPairSync("rsa", {
    modulusLength,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
  });
const { publicKey, privateKey } = pair();
const decode = createDecoder({ complete: true });
const claimsOf = (token: string) => (decode(token) as { payload: Record<string, unknown> }).payload;

const SESSION: SessionRequest = {
  externalId: "appt-1001",
  settings: { maxParticipants: 2, waitingRoom: true, recording: false },
  closesAt: new Date(Date.now() + 3600_000),
};

let fake: FakeVonage;
let calls: ProviderCall[];

beforeAll(async () => {
  fake = await startFakeVonage({ applicationId: APPLICATION_ID, publicKey });
});
afterAll(async () => {
  await fake?.close();
});
beforeEach(() => {
  calls = [];
});
afterEach(() => {
  fake.createSession.reset();
  fake.forceDisconnect.reset();
  fake.requests.length = 0;
  fake.sessions.length = 0;
  fake.connections.clear();
  fake.disconnected.length = 0;
});

function provider(overrides: Partial<Parameters<typeof createVonageProvider>[0]> = {}): VideoProvider {
  return createVonageProvider({
    applicationId: APPLICATION_ID,
    privateKey,
    apiBase: fake.url,
    timeoutMs: 5000,
    observe: (call) => calls.push(call),
    ...overrides,
  });
}

const budget = (ms = 10_000) => ({ deadline: Date.now() + ms });
const outcomes = () => calls.map((c) => c.outcome);

/** Runs `fn`, expecting a ProviderUnavailableError; returns it and the elapsed time. */
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
  const keyBody = privateKey.split("\n")[1] ?? "";
  expect(shown).not.toContain(keyBody);
  expect(shown).not.toContain("PRIVATE KEY");
  expect(shown).not.toMatch(/Bearer|Authorization|eyJ/i);
  expect(Object.keys(error)).not.toContain("config");
  expect(error.cause).toBeUndefined();
}

describe("createSession", () => {
  it("posts the form with an application JWT and returns [0].session_id", async () => {
    const { sessionId } = await provider().createSession(SESSION, budget());

    expect(fake.sessions).toEqual([sessionId]);
    expect(fake.requests).toHaveLength(1);
    const request = fake.requests[0]!;
    expect(request.method).toBe("POST");
    expect(request.path).toBe("/session/create");
    expect(request.headers["content-type"]).toBe("application/x-www-form-urlencoded");
    expect(request.headers.accept).toBe("application/json");
    expect(request.body).toBe("archiveMode=manual&p2p.preference=disabled");

    const jwt = /^Bearer (.+)$/.exec(request.headers.authorization ?? "")?.[1] ?? "";
    const claims = createVerifier({ key: publicKey, algorithms: ["RS256"] })(jwt) as Record<string, unknown>;
    expect(Object.keys(claims).sort()).toEqual(["application_id", "exp", "iat", "jti"]);
    expect(claims.application_id).toBe(APPLICATION_ID);
    expect((claims.exp as number) - (claims.iat as number)).toBe(300);
    expect(Math.abs((claims.iat as number) - Date.now() / 1000)).toBeLessThan(5);
    expect(claims.jti).toMatch(/^[0-9a-f-]{36}$/);
    expect((decode(jwt) as { header: Record<string, unknown> }).header).toEqual({ alg: "RS256", typ: "JWT" });

    expect(calls).toEqual([
      { provider: "vonage", operation: "create_session", outcome: "ok", durationMs: expect.any(Number) },
    ]);
  });

  it("asks for archiveMode=always when the appointment is recorded", async () => {
    await provider().createSession({ ...SESSION, settings: { ...SESSION.settings, recording: true } }, budget());
    expect(fake.requests[0]!.body).toBe("archiveMode=always&p2p.preference=disabled");
  });

  it("is refused (403, not retried) with a key Vonage does not know", async () => {
    const other = pair();
    const { error } = await failure(() => provider({ privateKey: other.privateKey }).createSession(SESSION, budget()));
    expect(error.message).toBe("vonage create session: HTTP 403");
    expect(error.status).toBe(403);
    expect(fake.requests).toHaveLength(1);
    expectNoSecrets(error);
  });

  it("retries 5xx and succeeds within 3 attempts", async () => {
    fake.createSession.fail(503, { times: 1 }).fail(500, { times: 1 });
    const { sessionId } = await provider().createSession(SESSION, budget());
    expect(sessionId).toBe(fake.sessions[0]);
    expect(fake.requests).toHaveLength(3);
    expect(outcomes()).toEqual(["http_503", "http_500", "ok"]);
    // Backoff with jitter: ~200 ms, then ~400 ms.
    const gaps = [fake.requests[1]!.at - fake.requests[0]!.at, fake.requests[2]!.at - fake.requests[1]!.at];
    expect(gaps[0]).toBeGreaterThanOrEqual(150);
    expect(gaps[1]).toBeGreaterThanOrEqual(300);
  });

  it("gives up after 3 attempts", async () => {
    fake.createSession.fail(502);
    const { error } = await failure(() => provider().createSession(SESSION, budget()));
    expect(error.message).toBe("vonage create session: HTTP 502 after 3 attempts");
    expect(fake.requests).toHaveLength(3);
    expect(outcomes()).toEqual(["http_502", "http_502", "http_502"]);
    expectNoSecrets(error);
  });

  it("does not retry a 400", async () => {
    fake.createSession.fail(400);
    const { error } = await failure(() => provider().createSession(SESSION, budget()));
    expect(error.message).toBe("vonage create session: HTTP 400");
    expect(fake.requests).toHaveLength(1);
  });

  it("honours a 429's Retry-After", async () => {
    fake.createSession.fail(429, { times: 1, retryAfter: 1 });
    const { sessionId } = await provider().createSession(SESSION, budget());
    expect(sessionId).toBeTruthy();
    expect(fake.requests[1]!.at - fake.requests[0]!.at).toBeGreaterThanOrEqual(990);
    expect(outcomes()).toEqual(["http_429", "ok"]);
  });

  it("fails fast when Retry-After is longer than what is left of the budget", async () => {
    fake.createSession.fail(429, { retryAfter: 30 });
    const { error, elapsed } = await failure(() => provider().createSession(SESSION, budget(3000)));
    expect(elapsed).toBeLessThan(500);
    expect(fake.requests).toHaveLength(1);
    expect(error.retryAfterSeconds).toBe(30);
    expect(error.message).toMatch(/^vonage create session: HTTP 429; not retried: a 30000 ms wait does not fit/);
  });

  it("abandons a hanging call at the budget's deadline", async () => {
    fake.createSession.hang();
    const { error, elapsed } = await failure(() => provider().createSession(SESSION, budget(1000)));
    expect(elapsed).toBeGreaterThanOrEqual(950);
    expect(elapsed).toBeLessThan(1000 + 250);
    expect(error.outcome).toBe("budget_exhausted");
    expect(fake.requests).toHaveLength(1);
    expect(outcomes()).toEqual(["budget_exhausted"]);
  });

  it("times out each slow attempt after PROVIDER_TIMEOUT_MS and recovers", async () => {
    fake.createSession.delay(1000, { times: 1 });
    const { sessionId } = await provider({ timeoutMs: 300 }).createSession(SESSION, budget());
    expect(sessionId).toBeTruthy();
    expect(outcomes()).toEqual(["timeout", "ok"]);
    expect(calls[0]!.durationMs).toBeGreaterThanOrEqual(290);
    expect(calls[0]!.durationMs).toBeLessThan(600);
  });

  it("stops timing-out retries at the budget", async () => {
    fake.createSession.hang();
    const { error, elapsed } = await failure(() => provider({ timeoutMs: 400 }).createSession(SESSION, budget(1200)));
    // 400 ms, ~200 ms wait, 400 ms, then a ~400 ms wait would leave < 100 ms: no third attempt.
    expect(elapsed).toBeLessThan(1200 + 250);
    expect(fake.requests).toHaveLength(2);
    expect(outcomes()).toEqual(["timeout", "timeout"]);
    expect(error.message).toBe("vonage create session: timed out after 400 ms after 2 attempts");
  });

  it("treats malformed JSON as an invalid answer, not retried", async () => {
    fake.createSession.malformed();
    const { error } = await failure(() => provider().createSession(SESSION, budget()));
    expect(error.message).toBe("vonage create session: invalid answer");
    expect(fake.requests).toHaveLength(1);
    expect(outcomes()).toEqual(["invalid_answer"]);
  });

  it("treats an answer without session_id as an invalid answer", async () => {
    fake.createSession.missingId();
    const { error } = await failure(() => provider().createSession(SESSION, budget()));
    expect(error.message).toBe("vonage create session: invalid answer");
  });

  it("retries network errors", async () => {
    const closed = await startFakeServer(() => undefined);
    await closed.close();
    const { error } = await failure(() => provider({ apiBase: closed.url }).createSession(SESSION, budget()));
    expect(error.message).toBe("vonage create session: network error (ECONNREFUSED) after 3 attempts");
    expect(outcomes()).toEqual(["network", "network", "network"]);
  });

  it("makes no attempt without budget left", async () => {
    const { error } = await failure(() => provider().createSession(SESSION, { deadline: Date.now() - 1 }));
    expect(error.outcome).toBe("budget_exhausted");
    expect(fake.requests).toHaveLength(0);
  });
});

describe("issueToken", () => {
  const now = new Date();
  const request = (overrides: Partial<TokenRequest> = {}): TokenRequest => ({
    sessionId: "2_MX4session",
    userId: "cust-42",
    role: "participant",
    tokenId: "tok_0123456789",
    issuedAt: now,
    notBefore: now,
    expiresAt: new Date(now.getTime() + 90 * 60_000 + 500),
    ...overrides,
  });

  it("is local: no HTTP", () => {
    expect(provider().remote).toEqual({ sessions: true, tokens: false });
    expect(provider().applicationId).toBe(APPLICATION_ID);
    expect(provider().name).toBe("vonage");
  });

  for (const [role, vonageRole] of [
    ["participant", "publisher"],
    ["moderator", "moderator"],
  ] as const) {
    it(`signs exactly generateClientToken's claims (${role} → ${vonageRole})`, async () => {
      const tokenRequest = request({ role });
      const { token } = await provider().issueToken(tokenRequest, budget());
      const exp = Math.floor(tokenRequest.expiresAt.getTime() / 1000);
      // The SDK's way of giving a connection its data: the `data` option.
      const sdk = new Video(new Auth({ applicationId: APPLICATION_ID, privateKey })).generateClientToken(
        tokenRequest.sessionId,
        { role: vonageRole, expireTime: exp, data: `tokenId=${tokenRequest.tokenId}` },
      );

      const ours = createVerifier({ key: publicKey, algorithms: ["RS256"] })(token) as Record<string, unknown>;
      const theirs = claimsOf(sdk);
      expect(Object.keys(ours).sort()).toEqual(Object.keys(theirs).sort());
      const { jti, iat, ...rest } = ours;
      const { jti: _jti, iat: sdkIat, ...sdkRest } = theirs;
      expect(rest).toEqual(sdkRest);
      expect(jti).toBe(tokenRequest.tokenId);
      expect(Math.abs((iat as number) - (sdkIat as number))).toBeLessThanOrEqual(1);
      expect(rest).toMatchObject({
        role: vonageRole,
        exp,
        session_id: tokenRequest.sessionId,
        sub: "video",
        connection_data: "tokenId=tok_0123456789",
      });
      expect((decode(token) as { header: unknown }).header).toEqual((decode(sdk) as { header: unknown }).header);
      expect(fake.requests).toHaveLength(0);
      expect(calls).toHaveLength(0);
    });
  }

  it("refuses an expiresAt that is not in the future (tokenGenerate would make it now + 15 min)", async () => {
    const p = provider();
    const past = request({ expiresAt: new Date(Date.now() - 1000) });
    await expect(p.issueToken(past, budget())).rejects.toThrow(/not in the future/);
    // The current second: tokenGenerate wants exp > now.
    const thisSecond = request({ expiresAt: new Date(Math.floor(Date.now() / 1000) * 1000) });
    await expect(p.issueToken(thisSecond, budget())).rejects.toThrow(/not in the future/);
  });

  it("refuses an expiresAt more than 30 days ahead", async () => {
    const clock = new Date("2030-01-01T00:00:00Z");
    const p = provider({ now: () => clock });
    const thirtyDays = 30 * 24 * 3600_000;
    await expect(
      p.issueToken(request({ expiresAt: new Date(clock.getTime() + thirtyDays + 1000) }), budget()),
    ).rejects.toThrow(/more than 30 days/);
    const { token } = await p.issueToken(request({ expiresAt: new Date(clock.getTime() + thirtyDays) }), budget());
    expect(claimsOf(token).exp).toBe((clock.getTime() + thirtyDays) / 1000);
  });

  it("carries the token id in its connection data, which Vonage hands back as connection.data", async () => {
    const tokenId = randomUUID();
    const { token } = await provider().issueToken(request({ tokenId }), budget());
    const claims = createVerifier({ key: publicKey, algorithms: ["RS256"] })(token) as Record<string, unknown>;
    expect(claims.connection_data).toBe(`tokenId=${tokenId}`);
    expect(new URLSearchParams(claims.connection_data as string).get("tokenId")).toBe(tokenId);
    expect(claims.jti).toBe(tokenId);
    // Vonage limits connection data to 1000 characters.
    expect((claims.connection_data as string).length).toBeLessThanOrEqual(1000);
  });
});

describe("readCallback", () => {
  const SECRET = "9f3b1c0e5a7d4e2f8a6b0c9d1e3f5a7b";
  const SESSION_ID = "2_MX4xMzExMjU3MX5-MTQ3MDI1NzY3OTkxOH45QXRr";
  const at = Date.parse("2026-12-07T09:58:12.345Z");
  const event = (overrides: Partial<SessionMonitoringEvent> = {}): SessionMonitoringEvent => ({
    event: "connectionCreated",
    sessionId: SESSION_ID,
    applicationId: APPLICATION_ID,
    connectionId: "c053fcc8-c681-41d5-8ec2-7a9e1434a21e",
    data: "tokenId=7d9f8a3e-1b2c-4d5e-9f60-718293a4b5c6",
    timestamp: at,
    ...overrides,
  });
  const signed = (overrides: Partial<SessionMonitoringEvent> = {}, secret = SECRET) =>
    signedCallback(sessionMonitoringBody(event(overrides)), secret, { applicationId: APPLICATION_ID });
  const presence = () => provider({ signatureSecret: SECRET });

  async function rejected(callback: ProviderCallback, p = presence()) {
    const error = await p.readCallback!(callback).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CallbackRejectedError);
    const shown = `${(error as Error).message}\n${(error as Error).stack ?? ""}`;
    expect(shown).not.toContain(SECRET);
    return error as CallbackRejectedError;
  }

  it("maps connectionCreated to joined: session, Vonage's timestamp, connection id and token id", async () => {
    expect(await presence().readCallback!(signed())).toEqual([
      {
        sessionId: SESSION_ID,
        state: "joined",
        at: new Date(at),
        connectionId: "c053fcc8-c681-41d5-8ec2-7a9e1434a21e",
        tokenId: "7d9f8a3e-1b2c-4d5e-9f60-718293a4b5c6",
      },
    ]);
    expect(fake.requests).toHaveLength(0);
  });

  it("maps connectionDestroyed to left", async () => {
    const reports = await presence().readCallback!(signed({ event: "connectionDestroyed", timestamp: at + 60_000 }));
    expect(reports).toEqual([
      expect.objectContaining({ state: "left", at: new Date(at + 60_000), tokenId: expect.any(String) }),
    ]);
  });

  it("follows a token the provider issued, from its connection data to the callback's report", async () => {
    const p = presence();
    const tokenId = randomUUID();
    const now = new Date();
    const { token } = await p.issueToken(
      {
        sessionId: SESSION_ID,
        userId: "cust-42",
        role: "participant",
        tokenId,
        issuedAt: now,
        notBefore: now,
        expiresAt: new Date(now.getTime() + 3600_000),
      },
      budget(),
    );
    const connectionId = fake.connect(SESSION_ID);
    const data = claimsOf(token).connection_data as string;
    const [report] = await p.readCallback!(signed({ connectionId, data }));
    expect(report).toMatchObject({ sessionId: SESSION_ID, state: "joined", tokenId, connectionId });
  });

  it("reports a connection without usable data with no token id (the service ignores it)", async () => {
    for (const data of [undefined, "", "{\"tokenId\":\"x\"}", "name=Johnny", "tokenId=", "tokenId=../../admin"]) {
      const reports = await presence().readCallback!(signed({ data }));
      expect(reports).toHaveLength(1);
      expect(reports[0]).not.toHaveProperty("tokenId");
      expect(reports[0]).toMatchObject({ sessionId: SESSION_ID, state: "joined", connectionId: expect.any(String) });
    }
  });

  it("answers [] for events that say nothing about presence", async () => {
    for (const name of ["streamCreated", "streamDestroyed", "sessionCreated", "sessionDestroyed", "archiveStatus"]) {
      expect(await presence().readCallback!(signed({ event: name }))).toEqual([]);
    }
    const notJson = signedCallback("not json", SECRET, { applicationId: APPLICATION_ID });
    expect(await presence().readCallback!(notJson)).toEqual([]);
  });

  it("accepts the token without the Bearer prefix too", async () => {
    const callback = signed();
    const token = callback.headers.authorization!.slice("Bearer ".length);
    const bare = { ...callback, headers: { ...callback.headers, authorization: token } };
    expect(await presence().readCallback!(bare)).toHaveLength(1);
  });

  it("rejects a callback without a signed token", async () => {
    const callback = signed();
    await rejected({ ...callback, headers: { "content-type": "application/json" } });
    await rejected({ ...callback, headers: { ...callback.headers, authorization: "Bearer" } });
    await rejected({ ...callback, headers: { ...callback.headers, authorization: "Basic dXNlcjpwYXNz" } });
  });

  it("rejects a token signed with another secret", async () => {
    await rejected(signed({}, "another-secret-of-32-characters!!"));
  });

  it("rejects a body that is not the one signed (payload_hash)", async () => {
    const callback = signed();
    const tampered = callback.rawBody.replace("connectionCreated", "connectionDestroyed");
    await rejected({ ...callback, rawBody: tampered });
    // The same bytes re-serialised are not the signed bytes either.
    await rejected({ ...callback, rawBody: JSON.stringify(JSON.parse(callback.rawBody), null, 1) });
    const wrongHash = signedCallback(callback.rawBody, SECRET, { applicationId: APPLICATION_ID, payloadHash: "00" });
    await rejected(wrongHash);
  });

  it("rejects a correctly signed token without payload_hash, or signed another way than HS256", async () => {
    const { rawBody } = signed();
    const hs256 = createSigner({ key: SECRET, algorithm: "HS256" });
    const noHash = hs256({ iss: "Vonage", application_id: APPLICATION_ID });
    await rejected({ headers: { authorization: `Bearer ${noHash}` }, rawBody, query: {} });

    const payload_hash = createHash("sha256").update(rawBody).digest("hex");
    const hs512 = createSigner({ key: SECRET, algorithm: "HS512" })({ payload_hash });
    await rejected({ headers: { authorization: `Bearer ${hs512}` }, rawBody, query: {} });
    const unsigned = createSigner({ algorithm: "none" })({ payload_hash });
    await rejected({ headers: { authorization: `Bearer ${unsigned}` }, rawBody, query: {} });
    const expired = createSigner({ key: SECRET, algorithm: "HS256", expiresIn: -1000 })({ payload_hash });
    await rejected({ headers: { authorization: `Bearer ${expired}` }, rawBody, query: {} });
  });

  it("rejects every callback when no signature secret is configured, whatever it carries", async () => {
    const withoutSecret = provider();
    const error = await rejected(signed(), withoutSecret);
    expect(error.message).toMatch(/no signature secret is configured/);
    await rejected({ ...signed(), query: { secret: SECRET } }, withoutSecret);
    // An empty secret is no secret: nothing signs or verifies with it.
    await rejected(signed(), provider({ signatureSecret: "" }));
  });
});

describe("eject", () => {
  const SESSION_ID = "2_MX4ejectsession";
  const ejectRequest = (connectionIds: string[]) => ({
    sessionId: SESSION_ID,
    userId: "cust-42",
    role: "participant" as const,
    connectionIds,
    byIdentity: true,
  });

  it("force-disconnects each recorded connection with an application JWT", async () => {
    const first = fake.connect(SESSION_ID);
    const second = fake.connect(SESSION_ID);
    const other = fake.connect("2_MX4othersession");

    expect(await provider().eject!(ejectRequest([first, second]), budget())).toEqual({ removed: true });

    expect(fake.disconnected).toEqual(
      expect.arrayContaining([
        { sessionId: SESSION_ID, connectionId: first },
        { sessionId: SESSION_ID, connectionId: second },
      ]),
    );
    expect(fake.disconnected).toHaveLength(2);
    expect([...fake.connections.get("2_MX4othersession")!]).toEqual([other]);
    const paths = fake.requests.map((r) => `${r.method} ${r.path}`).sort();
    expect(paths).toEqual(
      [first, second].map((id) => `DELETE /v2/project/${APPLICATION_ID}/session/${SESSION_ID}/connection/${id}`).sort(),
    );
    for (const request of fake.requests) {
      const jwt = /^Bearer (.+)$/.exec(request.headers.authorization ?? "")?.[1] ?? "";
      const claims = createVerifier({ key: publicKey, algorithms: ["RS256"] })(jwt) as Record<string, unknown>;
      expect(Object.keys(claims).sort()).toEqual(["application_id", "exp", "iat", "jti"]);
      expect(claims.application_id).toBe(APPLICATION_ID);
    }
    expect(calls.map((c) => [c.operation, c.outcome])).toEqual([
      ["force_disconnect", "ok"],
      ["force_disconnect", "ok"],
    ]);
  });

  it("reports not present when every connection is already gone (404), and when there are none", async () => {
    expect(await provider().eject!(ejectRequest(["gone-1", "gone-2"]), budget())).toEqual({ removed: false });
    expect(fake.requests).toHaveLength(2);
    expect(outcomes()).toEqual(["http_404", "http_404"]);

    fake.requests.length = 0;
    expect(await provider().eject!(ejectRequest([]), budget())).toEqual({ removed: false });
    expect(fake.requests).toHaveLength(0);
  });

  it("reports removed when one connection was still there and another gone", async () => {
    const open = fake.connect(SESSION_ID);
    expect(await provider().eject!(ejectRequest(["gone", open]), budget())).toEqual({ removed: true });
    expect(fake.disconnected).toEqual([{ sessionId: SESSION_ID, connectionId: open }]);
  });

  it("retries a transient failure and disconnects", async () => {
    const open = fake.connect(SESSION_ID);
    fake.forceDisconnect.fail(503, { times: 1 });
    expect(await provider().eject!(ejectRequest([open]), budget())).toEqual({ removed: true });
    expect(outcomes()).toEqual(["http_503", "ok"]);
    expect(fake.disconnected).toEqual([{ sessionId: SESSION_ID, connectionId: open }]);
  });

  it("throws ProviderUnavailableError after a persistent outage, without secrets", async () => {
    const open = fake.connect(SESSION_ID);
    fake.forceDisconnect.fail(502);
    const { error } = await failure(() => provider().eject!(ejectRequest([open]), budget()));
    expect(error.message).toBe("vonage force disconnect: HTTP 502 after 3 attempts");
    expect(fake.connections.get(SESSION_ID)?.has(open)).toBe(true);
    expectNoSecrets(error);

    fake.forceDisconnect.reset();
    const closed = await startFakeServer(() => undefined);
    await closed.close();
    const network = await failure(() => provider({ apiBase: closed.url }).eject!(ejectRequest([open]), budget()));
    expect(network.error.message).toBe("vonage force disconnect: network error (ECONNREFUSED) after 3 attempts");
  });

  it("is refused, not retried, with a key Vonage does not know (403)", async () => {
    const open = fake.connect(SESSION_ID);
    const error = await provider({ privateKey: pair().privateKey })
      .eject!(ejectRequest([open]), budget())
      .then(
        () => undefined,
        (e: unknown) => e as Error,
      );
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(ProviderUnavailableError);
    expect(error?.message).toBe("vonage force disconnect: HTTP 403");
    expect(fake.requests).toHaveLength(1);
    expect(outcomes()).toEqual(["http_403"]);
    // The cause is the HTTP client's own error, which carries no secrets either.
    expect((error?.cause as ProviderHttpError).status).toBe(403);
    expectNoSecrets(error?.cause as ProviderHttpError);
  });
});

describe("configuration", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "jw-vonage-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const settings = (overrides: Partial<VonageSettings>): VonageSettings => ({
    VONAGE_APPLICATION_ID: APPLICATION_ID,
    VONAGE_PRIVATE_KEY: undefined,
    VONAGE_PRIVATE_KEY_PATH: undefined,
    VONAGE_API_BASE: "https://video.api.vonage.com",
    VONAGE_SIGNATURE_SECRET: undefined,
    ...overrides,
  });

  it("accepts an application id with a key inline or in a file", async () => {
    const path = join(dir, "private.key");
    await writeFile(path, privateKey);
    expect(vonage.configProblems(settings({ VONAGE_PRIVATE_KEY: privateKey }))).toEqual([]);
    expect(vonage.configProblems(settings({ VONAGE_PRIVATE_KEY_PATH: path }))).toEqual([]);
    expect(await loadVonagePrivateKey(settings({ VONAGE_PRIVATE_KEY_PATH: path }))).toBe(privateKey);
    expect(await loadVonagePrivateKey(settings({ VONAGE_PRIVATE_KEY: privateKey }))).toBe(privateKey);
  });

  it("can eject and report presence; the signature secret is optional (without it, callbacks are refused)", () => {
    expect(vonage.capabilities).toEqual({
      remoteSessions: true,
      remoteTokens: false,
      eject: true,
      presence: true,
      sessionExpiry: false,
      providerWaitingRoom: false,
    });
    expect(vonage.variables.VONAGE_SIGNATURE_SECRET.secret).toBe(true);
    expect(vonage.configProblems(settings({ VONAGE_PRIVATE_KEY: privateKey }))).toEqual([]);
    expect(
      vonage.configProblems(settings({ VONAGE_PRIVATE_KEY: privateKey, VONAGE_SIGNATURE_SECRET: "a-secret" })),
    ).toEqual([]);
  });

  it("names each missing variable", () => {
    expect(vonage.configProblems(settings({ VONAGE_APPLICATION_ID: undefined }))).toEqual([
      "VONAGE_APPLICATION_ID is required with VIDEO_PROVIDER=vonage",
      "one of VONAGE_PRIVATE_KEY or VONAGE_PRIVATE_KEY_PATH is required with VIDEO_PROVIDER=vonage",
    ]);
  });

  it("refuses an inline key and a path at once", () => {
    expect(
      vonage.configProblems(settings({ VONAGE_PRIVATE_KEY: privateKey, VONAGE_PRIVATE_KEY_PATH: join(dir, "private.key") })),
    ).toEqual(["VONAGE_PRIVATE_KEY and VONAGE_PRIVATE_KEY_PATH are alternatives: set only one"]);
  });

  it("reports an unreadable path", () => {
    const path = join(dir, "missing.key");
    expect(vonage.configProblems(settings({ VONAGE_PRIVATE_KEY_PATH: path }))).toEqual([
      `VONAGE_PRIVATE_KEY_PATH: cannot read ${path} (ENOENT)`,
    ]);
  });

  it("rejects keys that are not usable RSA private keys, without echoing them", () => {
    const ec = generateKeyPairSync("ec", {
      namedCurve: "P-256",
      privateKeyEncoding: { type: "pkcs8", format: "pem" },
      publicKeyEncoding: { type: "spki", format: "pem" },
    });
    const small = pair(1024);
    const cases: [string, RegExp][] = [
      [ec.privateKey, /^VONAGE_PRIVATE_KEY must be an RSA private key \(got ec key\)$/],
      [small.privateKey, /^VONAGE_PRIVATE_KEY must be an RSA private key of at least 2048 bits$/],
      [publicKey, /^VONAGE_PRIVATE_KEY must be an unencrypted PEM RSA private key/],
      ["-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----", /could not be read/],
    ];
    for (const [pem, expected] of cases) {
      const problems = vonage.configProblems(settings({ VONAGE_PRIVATE_KEY: pem }));
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(expected);
      expect(problems[0]).not.toContain(pem.split("\n")[1]);
    }
    expect(() => provider({ privateKey: small.privateKey })).toThrow(/at least 2048 bits/);
  });
});
