import { createHash, generateKeyPairSync } from "node:crypto";
import { createVerifier } from "fast-jwt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp, TestClock } from "../helpers/app.js";
import { type FakeGenesys, startFakeGenesys } from "../helpers/fake-genesys.js";
import { type FakeVonage, startFakeVonage } from "../helpers/fake-vonage.js";
import { bearer, OPERATOR_SCOPES, type ScheduleOptions, scheduledEvent, signedDelivery, userJwt } from "../helpers/fixtures.js";

/**
 * The whole core flow against the remote providers, faked by real HTTP
 * servers on loopback (test/helpers/fake-*.ts), including their failures.
 */

const DAY_S = 86_400;
const operator = () => bearer(userJwt("ops-1", { scope: OPERATOR_SCOPES, expiresInSeconds: DAY_S }));
const user = (sub: string) => bearer(userJwt(sub, { expiresInSeconds: DAY_S }));

async function deliver(t: TestApp, body: unknown, options: Parameters<typeof signedDelivery>[1] = {}) {
  const delivery = signedDelivery(body, options);
  return t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: delivery.headers, payload: delivery.payload });
}

const join = (t: TestApp, externalId: string, sub: string) =>
  t.app.inject({ method: "POST", url: `/v1/appointments/${externalId}/join-token`, headers: user(sub) });

const readAppointment = async (t: TestApp, externalId: string) =>
  (await t.app.inject({ method: "GET", url: `/v1/appointments/${externalId}`, headers: operator() })).json();

const sessionCreations = (fake: FakeGenesys, externalId: string) =>
  fake.requests.filter((r) => r.path === "/api/v2/video/sessions" && r.body.includes(`"Appointment-${externalId}"`)).length;

describe("genesys", () => {
  let fake: FakeGenesys;
  let t: TestApp;
  const clock = new TestClock();
  const env = () => ({
    VIDEO_PROVIDER: "genesys",
    GENESYS_LOGIN_BASE: fake.url,
    GENESYS_API_BASE: fake.url,
    GENESYS_CLIENT_ID: "client-1",
    GENESYS_CLIENT_SECRET: "client-secret-value",
    PROVIDER_TIMEOUT_MS: "300",
    SESSION_RECONCILE_INTERVAL_MS: "100",
    RATE_LIMIT_JOIN_PER_MINUTE: "0",
  });

  beforeAll(async () => {
    fake = await startFakeGenesys({ clientId: "client-1", clientSecret: "client-secret-value" });
    t = await startApp(env(), { clock });
  });
  afterEach(() => {
    for (const route of [fake.createSession, fake.issueToken, fake.oauthToken]) route.reset();
  });
  afterAll(async () => {
    await t.close();
    await fake.close();
  });

  const schedule = (options: ScheduleOptions = {}) => scheduledEvent({ now: clock.now(), ...options });

  it("creates the session with the guide's payload and passes the provider's token through, storing only its hash", async () => {
    const event = schedule({ settings: { maxParticipants: 2, waitingRoom: false, recording: true } });
    const res = await deliver(t, event);
    expect(res.statusCode).toBe(200);
    const appointment = res.json().appointment;
    expect(appointment.session).toMatchObject({ provider: "genesys", status: "ready" });
    expect(fake.sessions.get(appointment.session.id)).toMatchObject({
      name: `Appointment-${event.data.externalId}`,
      recordingEnabled: true,
      waitingRoomEnabled: false,
      maxParticipants: 2,
    });

    const joined = await join(t, event.data.externalId, event.data.customer.id);
    expect(joined.statusCode).toBe(201);
    const issued = joined.json();
    expect(issued).toMatchObject({ provider: "genesys", applicationId: null, role: "participant", sessionId: appointment.session.id });
    expect(fake.videoTokens).toContain(issued.token);
    const tokenRequest = fake.requests.findLast((r) => r.path.endsWith("/tokens"));
    expect(JSON.parse(tokenRequest?.body ?? "{}")).toEqual({
      userId: event.data.customer.id,
      role: "participant",
      expirationTime: appointment.join.closesAt,
    });

    const row = await t.db.prisma.joinToken.findUniqueOrThrow({ where: { id: issued.tokenId } });
    expect(row.tokenHash).toBe(createHash("sha256").update(issued.token).digest("hex"));
    const introspected = await t.app.inject({ method: "POST", url: "/v1/tokens/introspect", headers: operator(), payload: { token: issued.token } });
    expect(introspected.json()).toMatchObject({ active: true, provider: "genesys", jti: issued.tokenId });
  });

  it("asks for one OAuth token for many calls", async () => {
    const before = fake.accessTokens.length;
    for (let i = 0; i < 3; i++) {
      const event = schedule();
      expect((await deliver(t, event)).statusCode).toBe(200);
      expect((await join(t, event.data.externalId, event.data.agent.id)).statusCode).toBe(201);
    }
    expect(fake.accessTokens.length - before).toBeLessThanOrEqual(1);
  });

  it("refreshes the OAuth token once after a 401 and goes on", async () => {
    fake.expireAccessTokens();
    const before = fake.accessTokens.length;
    const res = await deliver(t, schedule());
    expect(res.statusCode).toBe(200);
    expect(fake.accessTokens.length).toBe(before + 1);
  });

  it("stores the appointment as pending (202) while the provider is down, answers joins 503 with Retry-After, and recovers in the background", async () => {
    fake.createSession.fail(503);
    const event = schedule();
    const externalId = event.data.externalId;
    const scheduled = await deliver(t, event);
    expect(scheduled.statusCode).toBe(202);
    expect(scheduled.json()).toMatchObject({ applied: true, appointment: { session: { status: "pending", id: null } } });

    const refused = await join(t, externalId, event.data.agent.id);
    expect(refused.statusCode).toBe(503);
    expect(refused.json().code).toBe("provider_unavailable");
    expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0);

    // A later event while still pending is also a 202.
    const moved = await deliver(t, schedule({ externalId, startsInMinutes: 1, agentId: event.data.agent.id, customerId: event.data.customer.id }));
    expect(moved.statusCode).toBe(202);

    fake.createSession.reset();
    clock.advance(10 * 60_000);
    try {
      await expect.poll(async () => (await readAppointment(t, externalId)).session.status, { timeout: 10_000 }).toBe("ready");
    } finally {
      clock.advance(-10 * 60_000);
    }
    expect(sessionCreations(fake, externalId)).toBeGreaterThanOrEqual(3);
    expect((await join(t, externalId, event.data.agent.id)).statusCode).toBe(201);
    const events = (await t.app.inject({ method: "GET", url: `/v1/appointments/${externalId}/events`, headers: operator() })).json();
    const types = events.events.map((e: { type: string; outcome: string }) => `${e.type}:${e.outcome}`);
    expect(types).toContain("session.failed:pending");
    expect(types).toContain("session.created:ready");
  });

  it("a join request makes one more attempt at a pending session and succeeds if the provider is back", async () => {
    fake.createSession.fail(500, { times: 3 });
    const event = schedule();
    expect((await deliver(t, event)).statusCode).toBe(202);
    const res = await join(t, event.data.externalId, event.data.customer.id);
    expect(res.statusCode).toBe(201);
  });

  it("answers a webhook within its 10 s bound and a join within 15 s when the provider hangs", async () => {
    fake.createSession.hang();
    const event = schedule();
    let started = Date.now();
    const scheduled = await deliver(t, event);
    expect(scheduled.statusCode).toBe(202);
    expect(Date.now() - started).toBeLessThan(10_000);

    fake.createSession.reset();
    fake.issueToken.hang();
    await t.db.prisma.appointment.update({ where: { externalId: event.data.externalId }, data: { sessionClaimedUntil: null } });
    started = Date.now();
    const joined = await join(t, event.data.externalId, event.data.agent.id);
    expect(joined.statusCode).toBe(503);
    expect(joined.json().code).toBe("provider_unavailable");
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(await t.db.prisma.joinToken.count({ where: { appointment: { externalId: event.data.externalId } } })).toBe(0);
  });

  it("marks a session failed when the join window closes without one", async () => {
    fake.createSession.fail(503);
    const event = schedule({ startsInMinutes: 0, durationMinutes: 5 });
    expect((await deliver(t, event)).statusCode).toBe(202);
    clock.advance(30 * 60_000);
    try {
      await expect.poll(async () => (await readAppointment(t, event.data.externalId)).session.status, { timeout: 10_000 }).toBe("failed");
    } finally {
      clock.advance(-30 * 60_000);
    }
  });

  it("reports provider calls and pending sessions in /metrics", async () => {
    const metrics = (await t.app.inject({ method: "GET", url: "/metrics" })).body;
    expect(metrics).toMatch(/joinwindow_provider_calls_total\{provider="genesys",operation="create_session",outcome="ok"\} \d+/);
    expect(metrics).toMatch(/joinwindow_provider_calls_total\{provider="genesys",operation="create_session",outcome="http_503"\} \d+/);
    expect(metrics).toMatch(/joinwindow_provider_call_duration_seconds_bucket\{le="0.1",provider="genesys"/);
    expect(metrics).toMatch(/joinwindow_pending_sessions \d+/);
    expect(metrics).not.toContain("client-secret-value");
  });
});

describe("two replicas and a slow provider", () => {
  let fake: FakeGenesys;
  let replicas: TestApp[];

  beforeAll(async () => {
    fake = await startFakeGenesys({ clientId: "client-2", clientSecret: "another-secret" });
    const env = {
      VIDEO_PROVIDER: "genesys",
      GENESYS_LOGIN_BASE: fake.url,
      GENESYS_API_BASE: fake.url,
      GENESYS_CLIENT_ID: "client-2",
      GENESYS_CLIENT_SECRET: "another-secret",
      RATE_LIMIT_JOIN_PER_MINUTE: "0",
    };
    replicas = await Promise.all([startApp(env), startApp(env)]);
    await Promise.all(replicas.map((r) => r.listen()));
  });
  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.close()));
    await fake.close();
  });

  it("a redelivery while the first delivery is still creating the session waits for it and gets the same answer", async () => {
    const [a, b] = replicas as [TestApp, TestApp];
    fake.createSession.delay(400, { times: 1 });
    const event = scheduledEvent();
    const delivery = signedDelivery(event);
    const send = (replica: TestApp) =>
      fetch(`${replica.url}/v1/webhooks/appointments`, { method: "POST", headers: delivery.headers, body: delivery.payload });
    const first = send(a);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const answers = await Promise.all([first, send(b)]);
    expect(answers.map((x) => x.status)).toEqual([200, 200]);
    const [one, two] = await Promise.all(answers.map((x) => x.json()));
    expect(two).toEqual(one);
    expect(sessionCreations(fake, event.data.externalId)).toBe(1);
  });

  it("two concurrent first joins on a pending appointment create one session", async () => {
    const [a, b] = replicas as [TestApp, TestApp];
    fake.createSession.fail(503);
    const event = scheduledEvent();
    expect((await deliver(a, event)).statusCode).toBe(202);
    fake.createSession.reset();
    fake.createSession.delay(500);
    await a.db.prisma.appointment.update({ where: { externalId: event.data.externalId }, data: { sessionClaimedUntil: null } });
    const failedAttempts = sessionCreations(fake, event.data.externalId);
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        fetch(`${(i % 2 === 0 ? a : b).url}/v1/appointments/${event.data.externalId}/join-token`, {
          method: "POST",
          headers: user(i % 4 < 2 ? event.data.agent.id : event.data.customer.id),
        }),
      ),
    );
    fake.createSession.reset();
    for (const answer of answers) expect([201, 503]).toContain(answer.status);
    expect(sessionCreations(fake, event.data.externalId) - failedAttempts).toBe(1);
    expect(answers.filter((answer) => answer.status === 201).length).toBeGreaterThan(0);
  });
});

describe("vonage", () => {
  const { publicKey, privateKey } = generateKeyPairSync("rsa", {
    modulusLength: 2048,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
  });
  let fake: FakeVonage;
  let t: TestApp;

  beforeAll(async () => {
    fake = await startFakeVonage({ applicationId: "app-123", publicKey });
    t = await startApp({
      VIDEO_PROVIDER: "vonage",
      VONAGE_APPLICATION_ID: "app-123",
      VONAGE_PRIVATE_KEY: privateKey,
      VONAGE_API_BASE: fake.url,
      RATE_LIMIT_JOIN_PER_MINUTE: "0",
    });
  });
  afterAll(async () => {
    await t.close();
    await fake.close();
  });

  it("creates the session over HTTP and signs client tokens locally with the application key", async () => {
    const event = scheduledEvent({ settings: { recording: true } });
    const res = await deliver(t, event);
    expect(res.statusCode).toBe(200);
    const appointment = res.json().appointment;
    expect(appointment.session).toMatchObject({ provider: "vonage", status: "ready" });
    const create = fake.requests.findLast((r) => r.path === "/session/create");
    expect(new URLSearchParams(create?.body).get("archiveMode")).toBe("always");

    const joined = await join(t, event.data.externalId, event.data.customer.id);
    expect(joined.statusCode).toBe(201);
    const issued = joined.json();
    expect(issued).toMatchObject({ provider: "vonage", applicationId: "app-123", role: "participant" });
    const claims = createVerifier({ key: publicKey, algorithms: ["RS256"] })(issued.token);
    expect(claims).toMatchObject({
      application_id: "app-123",
      scope: "session.connect",
      session_id: appointment.session.id,
      role: "publisher",
      sub: "video",
      jti: issued.tokenId,
      exp: Math.floor(Date.parse(appointment.join.closesAt) / 1000),
    });
    const agent = createVerifier({ key: publicKey, algorithms: ["RS256"] })(
      (await join(t, event.data.externalId, event.data.agent.id)).json().token,
    );
    expect(agent.role).toBe("moderator");
  });
});
