import { createHash, generateKeyPairSync, randomBytes, randomUUID } from "node:crypto";
import { createSigner, createVerifier } from "fast-jwt";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp, TestClock } from "../helpers/app.js";
import { type FakeVonage, sessionMonitoringBody, signedCallback, startFakeVonage } from "../helpers/fake-vonage.js";
import { cancelledEvent, OPERATOR_SCOPES, type ScheduleOptions, type scheduledEvent } from "../helpers/fixtures.js";
import * as flow from "../helpers/flow.js";
import { EJECT_WAIT_MS, EJECT_WITHIN_MS, HOUR, MINUTE, PRESENCE_EVENTS, SECOND } from "../helpers/flow.js";
import { type AuditEntry, bearerAt, closeFlow, flowEnv, requestJoinToken, sleep, subscribe, until } from "../helpers/flow.js";
import { createMigratedDatabase } from "../helpers/postgres.js";
import { type Receiver, startReceiver } from "../helpers/receiver.js";

/**
 * The whole service with VIDEO_PROVIDER=vonage against the fake Vonage Video
 * API (test/helpers/fake-vonage.ts, a real HTTP server on loopback): the
 * waiting room, presence from Vonage's signed session-monitoring callbacks
 * (API.md §10), and ejections by force disconnect of exactly the connections
 * those callbacks recorded. The file has its own database: the background
 * workers (ejections, timed events, reconciler) see every row of it, and its
 * one TestClock only moves forward, so each test schedules relative to it and
 * looks only at its own appointment's session.
 */

const APPLICATION_ID = "app-vonage-flow";
const SIGNATURE_SECRET = `vonage-signature-${randomBytes(18).toString("base64url")}`;
/** How long "nothing (more) happens" is watched: three passes of the ejection worker and a dispatch. */
const QUIET_MS = 3 * SECOND;
const CALLBACKS = "/v1/providers/vonage/events";
const FORCE_DISCONNECT = /^\/v2\/project\/([^/]+)\/session\/([^/]+)\/connection\/([^/]+)$/;

const iso = (ms: number) => new Date(ms).toISOString();

type ScheduledEvent = ReturnType<typeof scheduledEvent>;

interface Scheduled {
  externalId: string;
  agentId: string;
  customerId: string;
  /** The Vonage session id. */
  session: string;
  event: ScheduledEvent;
  appointment: { join: { agentOpensAt: string; customerOpensAt: string; closesAt: string } } & Record<string, unknown>;
}

interface Issued {
  token: string;
  tokenId: string;
  sessionId: string;
  applicationId: string | null;
  role: string;
  expiresAt: string;
}

/** A client connected to a Vonage session with one of the service's tokens. */
interface Connection {
  sessionId: string;
  connectionId: string;
  /** What Vonage hands back as connection.data: the token's connection_data claim, unchanged. */
  data: string;
  tokenId: string;
}

describe("VIDEO_PROVIDER=vonage end to end: waiting room, presence, ejections (API.md §3, §8, §10)", () => {
  const { publicKey, privateKey } = generateKeyPairSync("rsa", {
    modulusLength: 2048,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
  });
  /** What Vonage checks of a client token when a client connects with it. */
  const verifyClientToken = createVerifier({ key: publicKey, algorithms: ["RS256"] });

  let database: { name: string; url: string };
  let fake: FakeVonage;
  let receiver: Receiver;
  let t: TestApp;
  const clock = new TestClock();
  const env = () =>
    flowEnv(database.url, {
      VIDEO_PROVIDER: "vonage",
      VONAGE_APPLICATION_ID: APPLICATION_ID,
      VONAGE_PRIVATE_KEY: privateKey,
      VONAGE_API_BASE: fake.url,
      VONAGE_SIGNATURE_SECRET: SIGNATURE_SECRET,
      PROVIDER_TIMEOUT_MS: "3000",
      RATE_LIMIT_PER_MINUTE: "0",
    });

  /** JWTs are checked against the app's clock: they are made valid at its time. */
  const jwtAt = (sub: string, scope?: string) => bearerAt(clock, sub, scope, HOUR / SECOND);
  const operator = () => jwtAt("ops-vonage", `${OPERATOR_SCOPES} subscriptions:manage`);

  beforeAll(async () => {
    database = await createMigratedDatabase();
    fake = await startFakeVonage({ applicationId: APPLICATION_ID, publicKey });
    receiver = await startReceiver();
    t = await startApp(env(), { clock });
    await subscribe(t, operator(), receiver, { path: "/events", events: PRESENCE_EVENTS, description: "vonage flow test" });
  });
  afterEach(() => {
    fake.createSession.reset();
    fake.forceDisconnect.reset();
  });
  afterAll(() => closeFlow({ app: t, receiver, fake, database }));

  // --- the service's side -------------------------------------------------------------------------------------

  const deliver = (body: unknown) => flow.deliver(t, body);

  const eventAt = (options: ScheduleOptions = {}) => flow.eventAt(clock, options);

  /** A new appointment whose Vonage session is ready (200), with times relative to the test clock. */
  async function schedule(options: ScheduleOptions = {}): Promise<Scheduled> {
    const event = eventAt(options);
    const res = await deliver(event);
    expect(res.statusCode, res.body).toBe(200);
    const appointment = res.json().appointment;
    expect(appointment.session).toMatchObject({ provider: "vonage", status: "ready" });
    expect(fake.sessions).toContain(appointment.session.id);
    return {
      externalId: event.data.externalId,
      agentId: event.data.agent.id,
      customerId: event.data.customer.id,
      session: appointment.session.id,
      event,
      appointment,
    };
  }

  const join = (externalId: string, userId: string, body?: object) => requestJoinToken(t, externalId, jwtAt(userId), body);

  async function joined(externalId: string, userId: string, body?: object): Promise<Issued> {
    const res = await join(externalId, userId, body);
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as Issued;
  }

  const readAppointment = (externalId: string) => flow.readAppointment(t, externalId, operator());

  const auditOf = (externalId: string): Promise<AuditEntry[]> => flow.auditOf(t, externalId, operator());

  const presenceAudit = async (externalId: string) =>
    (await auditOf(externalId)).filter((e) => e.type === "participant.joined" || e.type === "participant.left");

  const ejectionAudit = async (externalId: string) =>
    (await auditOf(externalId)).filter((e) => e.type === "participant.ejected" || e.type === "participant.eject_failed");

  const eventsOf = (externalId: string, type: string) => flow.eventsOf(receiver, externalId, type);

  const revokeToken = async (tokenId: string, app: TestApp = t) => {
    const res = await app.app.inject({ method: "POST", url: "/v1/tokens/revoke", headers: operator(), payload: { tokenId } });
    expect(res.statusCode).toBe(200);
  };

  const storedConnections = (sessionId: string) => t.db.prisma.providerConnection.findMany({ where: { sessionId } });

  // --- Vonage's side ------------------------------------------------------------------------------------------

  /**
   * A client connects to the session with an issued token, as Vonage admits
   * it: the token must verify with the application's public key, and the
   * connection's data is the token's connection_data claim, unchanged.
   */
  function connectWith(issued: Issued): Connection {
    const claims = verifyClientToken(issued.token) as { session_id: string; connection_data?: unknown; jti: string; application_id: string };
    expect(claims.application_id).toBe(APPLICATION_ID);
    expect(typeof claims.connection_data, "the client token carries connection data").toBe("string");
    const data = claims.connection_data as string;
    expect(data).toContain(issued.tokenId);
    return { sessionId: claims.session_id, connectionId: fake.connect(claims.session_id), data, tokenId: issued.tokenId };
  }

  /** `data` replaces the connection's own (absent when given as undefined). */
  const monitoringBody = (
    event: "connectionCreated" | "connectionDestroyed" | "streamCreated",
    c: Connection,
    at: number,
    override?: { data: string | undefined },
  ) => {
    const data = override ? override.data : c.data;
    return sessionMonitoringBody({
      event,
      sessionId: c.sessionId,
      applicationId: APPLICATION_ID,
      connectionId: c.connectionId,
      ...(data !== undefined ? { data } : {}),
      timestamp: at,
    });
  };

  /** Vonage's callback: the body, signed with `secret` as Vonage's secure callbacks sign it, unless headers are given. */
  function sendCallback(
    rawBody: string,
    headers: Record<string, string> = signedCallback(rawBody, SIGNATURE_SECRET, { applicationId: APPLICATION_ID }).headers,
    app: TestApp = t,
  ) {
    return app.app.inject({ method: "POST", url: CALLBACKS, headers: { "content-type": "application/json", ...headers }, payload: rawBody });
  }

  /** A callback that must be taken: 200 {taken: 1}. */
  async function report(event: "connectionCreated" | "connectionDestroyed", c: Connection, at: number) {
    const res = await sendCallback(monitoringBody(event, c, at));
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({ taken: 1, ignored: 0 });
  }

  /** A client connects with the token at `at` and Vonage reports the connection. */
  async function enter(issued: Issued, at: number): Promise<Connection> {
    const connection = connectWith(issued);
    await report("connectionCreated", connection, at);
    return connection;
  }

  /** The client closes its connection at `at` and Vonage reports it. */
  async function leave(c: Connection, at: number) {
    fake.connections.get(c.sessionId)?.delete(c.connectionId);
    await report("connectionDestroyed", c, at);
  }

  const isOpen = (c: Connection) => fake.connections.get(c.sessionId)?.has(c.connectionId) === true;

  /** Force-disconnect calls the fake received for this session: when, and for which connection. */
  const disconnectCalls = (sessionId: string) =>
    fake.requests.flatMap((request) => {
      const match = request.method === "DELETE" ? FORCE_DISCONNECT.exec(request.path) : null;
      if (!match) return [];
      const [project, session, connection] = match.slice(1).map(decodeURIComponent) as [string, string, string];
      return session === sessionId ? [{ at: request.at, project, connectionId: connection }] : [];
    });

  /**
   * Waits for a force disconnect of each of `connections` (each within 5 s of
   * `answeredAt`), then watches a while: the session got calls for exactly
   * these connections, one each.
   */
  async function expectDisconnectedExactly(sessionId: string, connections: Connection[], answeredAt: number) {
    const ids = connections.map((c) => c.connectionId);
    const firstFor = (id: string) => disconnectCalls(sessionId).find((call) => call.connectionId === id);
    await until(`force disconnect of ${ids.length} connection(s)`, () => ids.every((id) => firstFor(id)), EJECT_WAIT_MS).catch(
      (error: Error) => {
        const missing = connections.filter((c) => !firstFor(c.connectionId)).map((c) => `${c.connectionId} (token ${c.tokenId})`);
        throw new Error(`${error.message}; never disconnected: ${missing.join(", ")}`);
      },
    );
    for (const id of ids) {
      expect((firstFor(id)?.at ?? Infinity) - answeredAt, `ms from the revoking answer to the disconnect of ${id}`).toBeLessThan(
        EJECT_WITHIN_MS,
      );
    }
    await sleep(QUIET_MS);
    const calls = disconnectCalls(sessionId);
    expect(calls.map((call) => call.connectionId).sort()).toEqual([...ids].sort());
    expect(calls.every((call) => call.project === APPLICATION_ID)).toBe(true);
    for (const c of connections) expect(isOpen(c), `${c.connectionId} is gone from the session`).toBe(false);
  }

  // --- 1. waiting room ------------------------------------------------------------------------------------------------

  it("holds the customer (425 waiting_for_host, Retry-After) until the agent holds a token, then issues theirs", async () => {
    const a = await schedule({ settings: { waitingRoom: true } });
    for (let i = 0; i < 2; i++) {
      const held = await join(a.externalId, a.customerId);
      expect(held.statusCode).toBe(425);
      expect(held.json().code).toBe("waiting_for_host");
      const retryAfter = Number(held.headers["retry-after"]);
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(10);
    }
    expect(await t.db.prisma.joinToken.count({ where: { appointment: { externalId: a.externalId } } })).toBe(0);

    const agent = await joined(a.externalId, a.agentId);
    expect(agent).toMatchObject({ provider: "vonage", applicationId: APPLICATION_ID, sessionId: a.session, role: "moderator" });
    const customer = await joined(a.externalId, a.customerId);
    expect(customer).toMatchObject({ sessionId: a.session, role: "participant" });
    expect(verifyClientToken(customer.token)).toMatchObject({ session_id: a.session, role: "publisher", jti: customer.tokenId });
  });

  it("with the contract's default settings (none sent) the waiting room is on", async () => {
    const a = await schedule({ settings: null });
    expect((await join(a.externalId, a.customerId)).statusCode).toBe(425);
    await joined(a.externalId, a.agentId);
    await joined(a.externalId, a.customerId);
  });

  // --- 2. presence ----------------------------------------------------------------------------------------------------

  describe("presence from signed session-monitoring callbacks", () => {
    it("records a connection's creation and destruction once each: appointment, audit and subscribers", async () => {
      const a = await schedule();
      const agent = await joined(a.externalId, a.agentId);
      const connection = connectWith(agent);
      const joinedAt = clock.now().getTime();
      const createdBody = monitoringBody("connectionCreated", connection, joinedAt);

      const taken = await sendCallback(createdBody);
      expect(taken.statusCode).toBe(200);
      expect(taken.json()).toEqual({ taken: 1, ignored: 0 });
      expect((await readAppointment(a.externalId)).presence).toEqual({
        agent: { present: true, since: iso(joinedAt) },
        customer: { present: false, since: null },
      });
      // Vonage redelivers (a new signature over the same body): nothing changes.
      expect((await sendCallback(createdBody)).statusCode).toBe(200);

      const leftAt = joinedAt + 120 * SECOND;
      fake.connections.get(a.session)?.delete(connection.connectionId);
      const destroyedBody = monitoringBody("connectionDestroyed", connection, leftAt);
      expect((await sendCallback(destroyedBody)).json()).toEqual({ taken: 1, ignored: 0 });
      expect((await sendCallback(destroyedBody)).statusCode).toBe(200);
      // The creation redelivered after the destruction is older than it: presence never flips back.
      expect((await sendCallback(createdBody)).statusCode).toBe(200);
      expect((await readAppointment(a.externalId)).presence.agent).toEqual({ present: false, since: iso(leftAt) });

      const entries = await presenceAudit(a.externalId);
      expect(entries.map((e) => `${e.type}:${e.outcome}:${e.actor}`)).toEqual([
        "participant.joined:present:provider:vonage",
        "participant.left:absent:provider:vonage",
      ]);
      expect(entries[0]?.detail).toMatchObject({
        userId: a.agentId,
        role: "moderator",
        via: "vonage",
        tokenId: agent.tokenId,
        connectionId: connection.connectionId,
      });
      expect(JSON.stringify(entries)).not.toContain(agent.token);

      const [stored] = await storedConnections(a.session);
      expect(stored).toMatchObject({ connectionId: connection.connectionId, tokenId: agent.tokenId, userId: a.agentId, role: "moderator" });
      expect(stored?.connectedAt?.getTime()).toBe(joinedAt);
      expect(stored?.disconnectedAt?.getTime()).toBe(leftAt);

      await receiver.waitFor(() => eventsOf(a.externalId, "participant.left").length > 0);
      await sleep(QUIET_MS);
      const joinedEvents = eventsOf(a.externalId, "participant.joined");
      const leftEvents = eventsOf(a.externalId, "participant.left");
      expect(new Set(joinedEvents.map((e) => e.webhookId)).size).toBe(1);
      expect(new Set(leftEvents.map((e) => e.webhookId)).size).toBe(1);
      expect(joinedEvents[0]?.data).toMatchObject({ userId: a.agentId, role: "moderator", via: "vonage", at: iso(joinedAt) });
      expect(leftEvents[0]?.data).toMatchObject({ userId: a.agentId, role: "moderator", via: "vonage", at: iso(leftAt) });
      expect(joinedEvents[0]?.verified).toBe(true);
      // Nobody was removed: the agent held a live token throughout.
      expect(disconnectCalls(a.session)).toEqual([]);
    });

    it("takes reports by Vonage's event time: a destruction that arrives before its creation leaves the participant absent", async () => {
      const a = await schedule();
      const customer = await joined(a.externalId, a.customerId);
      const connection = connectWith(customer);
      const joinedAt = clock.now().getTime();
      const leftAt = joinedAt + 30 * SECOND;
      fake.connections.get(a.session)?.delete(connection.connectionId);

      expect((await sendCallback(monitoringBody("connectionDestroyed", connection, leftAt))).statusCode).toBe(200);
      expect((await sendCallback(monitoringBody("connectionCreated", connection, joinedAt))).statusCode).toBe(200);
      expect((await readAppointment(a.externalId)).presence.customer).toEqual({ present: false, since: iso(leftAt) });
      expect((await presenceAudit(a.externalId)).filter((e) => e.type === "participant.joined")).toEqual([]);

      // A later connection is a new join, and counts.
      const again = await enter(customer, leftAt + 60 * SECOND);
      expect(again.connectionId).not.toBe(connection.connectionId);
      expect((await readAppointment(a.externalId)).presence.customer).toEqual({ present: true, since: iso(leftAt + 60 * SECOND) });
    });

    it("of two connections of one participant, closing one keeps them present; closing both makes them absent", async () => {
      const a = await schedule();
      const agent = await joined(a.externalId, a.agentId);
      const base = clock.now().getTime();
      const first = await enter(agent, base);
      const second = await enter(agent, base + 1 * SECOND);
      expect((await readAppointment(a.externalId)).presence.agent).toEqual({ present: true, since: iso(base) });

      // A second tab closing is not the agent leaving.
      await leave(first, base + 2 * SECOND);
      expect((await readAppointment(a.externalId)).presence.agent).toEqual({ present: true, since: iso(base) });
      expect((await presenceAudit(a.externalId)).map((e) => e.type)).toEqual(["participant.joined"]);

      await leave(second, base + 3 * SECOND);
      expect((await readAppointment(a.externalId)).presence.agent).toEqual({ present: false, since: iso(base + 3 * SECOND) });
      expect((await presenceAudit(a.externalId)).map((e) => e.type)).toEqual(["participant.joined", "participant.left"]);

      await receiver.waitFor(() => eventsOf(a.externalId, "participant.left").length > 0);
      await sleep(QUIET_MS);
      expect(eventsOf(a.externalId, "participant.joined")).toHaveLength(1);
      expect(eventsOf(a.externalId, "participant.left")).toHaveLength(1);
      expect(eventsOf(a.externalId, "participant.left")[0]?.data.at).toBe(iso(base + 3 * SECOND));
    });

    it("the last connection closing counts whatever order the two destructions arrive in", async () => {
      const a = await schedule();
      const customer = await joined(a.externalId, a.customerId);
      const base = clock.now().getTime();
      const first = await enter(customer, base);
      const second = await enter(customer, base + 1 * SECOND);
      // The later destruction arrives first.
      await leave(second, base + 3 * SECOND);
      expect((await readAppointment(a.externalId)).presence.customer.present).toBe(true);
      await leave(first, base + 2 * SECOND);
      expect((await readAppointment(a.externalId)).presence.customer).toEqual({ present: false, since: iso(base + 2 * SECOND) });
    });

    it("refuses unsigned, forged and wrong-secret callbacks with 401 and changes nothing", async () => {
      const a = await schedule();
      const agent = await joined(a.externalId, a.agentId);
      const connection = connectWith(agent);
      const body = monitoringBody("connectionCreated", connection, clock.now().getTime());
      const hash = createHash("sha256").update(body).digest("hex");
      const claims = { iat: Math.floor(Date.now() / SECOND), jti: randomUUID(), iss: "Vonage", api_key: APPLICATION_ID, application_id: APPLICATION_ID };
      const hs256 = (key: string, payload: object) => createSigner({ key, algorithm: "HS256", noTimestamp: true })(payload);
      const otherBody = monitoringBody("connectionCreated", { ...connection, connectionId: randomUUID() }, clock.now().getTime());
      const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
      const attempts: [string, string, Record<string, string>][] = [
        ["unsigned", body, {}],
        ["wrong secret", body, signedCallback(body, `${SIGNATURE_SECRET}-not`, { applicationId: APPLICATION_ID }).headers],
        ["signed for another body", body, signedCallback(otherBody, SIGNATURE_SECRET, { applicationId: APPLICATION_ID }).headers],
        ["payload_hash of another body", body, signedCallback(body, SIGNATURE_SECRET, { applicationId: APPLICATION_ID, payloadHash: "0".repeat(64) }).headers],
        ["no payload_hash", body, { authorization: `Bearer ${hs256(SIGNATURE_SECRET, claims)}` }],
        ["alg none", body, { authorization: `Bearer ${b64({ alg: "none", typ: "JWT" })}.${b64({ ...claims, payload_hash: hash })}.` }],
        [
          "RS256 with the application key",
          body,
          { authorization: `Bearer ${createSigner({ key: privateKey, algorithm: "RS256", noTimestamp: true })({ ...claims, payload_hash: hash })}` },
        ],
        ["garbled", body, { authorization: "Bearer not-a-jwt" }],
        ["the secret itself", body, { authorization: `Bearer ${SIGNATURE_SECRET}` }],
      ];
      for (const [what, rawBody, headers] of attempts) {
        const res = await sendCallback(rawBody, headers);
        expect(res.statusCode, what).toBe(401);
        expect(res.json().code, what).toBe("invalid_signature");
        expect(res.body, what).not.toContain(SIGNATURE_SECRET);
      }
      expect((await readAppointment(a.externalId)).presence.agent).toEqual({ present: false, since: null });
      expect(await presenceAudit(a.externalId)).toEqual([]);
      expect(await storedConnections(a.session)).toEqual([]);
      const metrics = (await t.app.inject({ method: "GET", url: "/metrics" })).body;
      expect(metrics).toMatch(/joinwindow_presence_reports_total\{via="vonage",result="rejected"\} [1-9]/);
      expect(metrics).not.toContain(SIGNATURE_SECRET);
      await sleep(QUIET_MS);
      expect(receiver.of(a.externalId)).toEqual([]);

      // The same body, signed as Vonage signs it, is taken.
      expect((await sendCallback(body)).json()).toEqual({ taken: 1, ignored: 0 });
    });

    it("acknowledges (200) and ignores an unknown session, garbled connection data and events that are not presence", async () => {
      const a = await schedule();
      const other = await schedule();
      const agent = await joined(a.externalId, a.agentId);
      const otherAgent = await joined(other.externalId, other.agentId);
      const connection = connectWith(agent);
      const at = clock.now().getTime();

      const unknownSession = await sendCallback(monitoringBody("connectionCreated", { ...connection, sessionId: `2_MX4${randomBytes(24).toString("base64url")}` }, at));
      expect(unknownSession.statusCode).toBe(200);
      expect(unknownSession.json()).toEqual({ taken: 0, ignored: 1 });

      const garbled: [string, string | undefined][] = [
        ["no data", undefined],
        ["empty data", ""],
        ["no token id", "tokenId="],
        ["not a token id", "tokenId=not%20a%20token%20id"],
        ["garbage", "%%%\u0000{"],
        ["json instead of ours", JSON.stringify({ tokenId: agent.tokenId })],
        ["a token this service never issued", `tokenId=${randomUUID()}`],
        ["another appointment's token", connectWith(otherAgent).data],
      ];
      for (const [what, data] of garbled) {
        const res = await sendCallback(monitoringBody("connectionCreated", { ...connection, connectionId: randomUUID() }, at, { data }));
        expect(res.statusCode, what).toBe(200);
        expect(res.json(), what).toEqual({ taken: 0, ignored: 1 });
      }

      const notPresence = [
        monitoringBody("streamCreated", connection, at),
        "this is not JSON",
        JSON.stringify({ sessionId: a.session, projectId: APPLICATION_ID, event: "connectionCreated", timestamp: at }),
        JSON.stringify({ sessionId: a.session, projectId: APPLICATION_ID, event: "connectionCreated", connection: { id: connection.connectionId, data: connection.data } }),
      ];
      for (const rawBody of notPresence) {
        const res = await sendCallback(rawBody);
        expect(res.statusCode, rawBody).toBe(200);
        expect(res.json().taken, rawBody).toBe(0);
      }

      expect((await readAppointment(a.externalId)).presence.agent).toEqual({ present: false, since: null });
      expect((await readAppointment(other.externalId)).presence.agent).toEqual({ present: false, since: null });
      expect(await presenceAudit(a.externalId)).toEqual([]);
      expect(await presenceAudit(other.externalId)).toEqual([]);
      expect(await storedConnections(a.session)).toEqual([]);
      const metrics = (await t.app.inject({ method: "GET", url: "/metrics" })).body;
      expect(metrics).toMatch(/joinwindow_presence_reports_total\{via="vonage",result="ignored"\} [1-9]/);

      // Another provider's path does not exist here.
      const daily = await t.app.inject({ method: "POST", url: "/v1/providers/daily/events", headers: { "content-type": "application/json" }, payload: "{}" });
      expect(daily.statusCode).toBe(404);
    });

    it("without VONAGE_SIGNATURE_SECRET every callback is refused (401)", async () => {
      const a = await schedule();
      const agent = await joined(a.externalId, a.agentId);
      const connection = connectWith(agent);
      const at = clock.now().getTime();
      const unsecured = await startApp({ ...env(), VONAGE_SIGNATURE_SECRET: undefined }, { clock });
      try {
        const bodies = [
          monitoringBody("connectionCreated", connection, at),
          monitoringBody("connectionDestroyed", connection, at + SECOND),
          monitoringBody("streamCreated", connection, at),
          "not even JSON",
        ];
        for (const rawBody of bodies) {
          for (const headers of [signedCallback(rawBody, SIGNATURE_SECRET, { applicationId: APPLICATION_ID }).headers, {}]) {
            const res = await sendCallback(rawBody, headers, unsecured);
            expect(res.statusCode, rawBody).toBe(401);
            expect(res.json().code).toBe("invalid_signature");
          }
        }
      } finally {
        await unsecured.close();
      }
      expect((await readAppointment(a.externalId)).presence.agent).toEqual({ present: false, since: null });
      expect(await presenceAudit(a.externalId)).toEqual([]);
      expect(await storedConnections(a.session)).toEqual([]);
    });
  });

  // --- 3. ejections ---------------------------------------------------------------------------------------------------

  describe("ejections by force disconnect", () => {
    /**
     * Both participants hold tokens and are in the session: the agent on two
     * open connections (and one already closed), the customer on one; and a
     * connection the service never heard of (no callback for it).
     */
    async function bothInSession(options: ScheduleOptions = {}) {
      const a = await schedule(options);
      const agent = await joined(a.externalId, a.agentId);
      const customer = await joined(a.externalId, a.customerId);
      const base = clock.now().getTime();
      const agentOpen = [await enter(agent, base), await enter(agent, base + 1 * SECOND)];
      const agentClosed = await enter(agent, base + 2 * SECOND);
      await leave(agentClosed, base + 3 * SECOND);
      const customerOpen = [await enter(customer, base + 1500)];
      const unreported: Connection = { sessionId: a.session, connectionId: fake.connect(a.session), data: "", tokenId: "" };
      expect((await readAppointment(a.externalId)).presence).toMatchObject({ agent: { present: true }, customer: { present: true } });
      return { a, agent, customer, agentOpen, agentClosed, customerOpen, unreported };
    }

    type InSession = Awaited<ReturnType<typeof bothInSession>>;

    const revocations: { reason: string; ejected: ("agent" | "customer")[]; revoke: (s: InSession) => Promise<void> }[] = [
      {
        reason: "rescheduled",
        ejected: ["agent", "customer"],
        revoke: async ({ a }) => {
          const moved = { ...a.event, data: { ...a.event.data, startsAt: iso(Date.parse(a.event.data.startsAt) + 5 * MINUTE), endsAt: iso(Date.parse(a.event.data.endsAt) + 30 * MINUTE) } };
          const res = await deliver(moved);
          expect(res.statusCode).toBe(200);
          expect(res.json().appointment.session.id).toBe(a.session);
        },
      },
      {
        reason: "reassigned",
        ejected: ["customer"],
        revoke: async ({ a }) => {
          const res = await deliver({ ...a.event, data: { ...a.event.data, customer: { id: `${a.customerId}-new`, name: "Sam Roe" } } });
          expect(res.statusCode).toBe(200);
        },
      },
      {
        reason: "cancelled",
        ejected: ["agent", "customer"],
        revoke: async ({ a }) => {
          expect((await deliver(cancelledEvent(a.externalId))).statusCode).toBe(200);
        },
      },
      {
        reason: "operator",
        ejected: ["customer"],
        revoke: async ({ customer }) => revokeToken(customer.tokenId),
      },
      {
        reason: "operator",
        ejected: ["agent", "customer"],
        revoke: async ({ a }) => {
          const res = await t.app.inject({ method: "POST", url: `/v1/appointments/${a.externalId}/revoke`, headers: operator(), payload: { reason: "flow test" } });
          expect(res.json().revoked).toBe(2);
        },
      },
      {
        reason: "blocked",
        ejected: ["agent", "customer"],
        revoke: async ({ a }) => {
          const res = await t.app.inject({
            method: "POST",
            url: `/v1/appointments/${a.externalId}/revoke`,
            headers: operator(),
            payload: { reason: "kill switch flow test", block: true },
          });
          expect(res.json()).toMatchObject({ revoked: 2, appointment: { accessBlocked: true } });
        },
      },
    ];

    it.each(revocations.map((r, i) => ({ ...r, name: `${r.reason} (${r.ejected.join(" and ")})`, i })))(
      "after a revocation ($name) disconnects exactly the token's open connections within 5 s",
      async ({ reason, ejected, revoke }) => {
        const s = await bothInSession();
        const expected = [...(ejected.includes("agent") ? s.agentOpen : []), ...(ejected.includes("customer") ? s.customerOpen : [])];
        await revoke(s);
        const answeredAt = Date.now();
        await expectDisconnectedExactly(s.a.session, expected, answeredAt);
        expect(isOpen(s.unreported), "a connection no callback reported is left alone").toBe(true);
        if (!ejected.includes("agent")) for (const c of s.agentOpen) expect(isOpen(c)).toBe(true);

        const ids = ejected.map((who) => (who === "agent" ? s.a.agentId : s.a.customerId)).sort();
        await receiver.waitFor(() => eventsOf(s.a.externalId, "participant.ejected").length >= ids.length);
        const events = eventsOf(s.a.externalId, "participant.ejected");
        expect(events.map((e) => e.data.userId).sort()).toEqual(ids);
        for (const e of events) expect(e.data.reason).toBe(reason);
        const audited = await ejectionAudit(s.a.externalId);
        expect(audited.map((e) => `${e.type}:${e.outcome}:${String(e.detail.reason)}`)).toEqual(ids.map(() => `participant.ejected:removed:${reason}`));
      },
    );

    it("disconnects the connections of a customer who superseded their token from the other appointment, within 5 s", async () => {
      const s = await bothInSession();
      const other = await schedule({ customerId: s.a.customerId });
      const refused = await join(other.externalId, s.a.customerId);
      expect(refused.statusCode).toBe(409);
      expect(refused.json()).toMatchObject({ code: "active_elsewhere", otherAppointmentId: s.a.externalId });

      await joined(other.externalId, s.a.customerId, { supersede: true });
      const answeredAt = Date.now();
      await expectDisconnectedExactly(s.a.session, s.customerOpen, answeredAt);
      expect(disconnectCalls(other.session)).toEqual([]);
      for (const c of [...s.agentOpen, s.unreported]) expect(isOpen(c)).toBe(true);
      await receiver.waitFor(() => eventsOf(s.a.externalId, "participant.ejected").length > 0);
      expect(eventsOf(s.a.externalId, "participant.ejected").map((e) => e.data)).toEqual([
        expect.objectContaining({ userId: s.a.customerId, role: "participant", reason: "superseded" }),
      ]);
    });

    it("disconnects nothing when the token was replaced by its holder's new one", async () => {
      const a = await schedule();
      const first = await joined(a.externalId, a.agentId);
      const inside = await enter(first, clock.now().getTime());
      await joined(a.externalId, a.agentId);
      expect((await auditOf(a.externalId)).some((e) => e.type === "token.revoked" && e.detail.reason === "replaced")).toBe(true);
      await sleep(QUIET_MS);
      expect(disconnectCalls(a.session)).toEqual([]);
      expect(isOpen(inside)).toBe(true);
      expect(await ejectionAudit(a.externalId)).toEqual([]);
      expect(await t.db.prisma.ejection.count({ where: { externalId: a.externalId } })).toBe(0);
    });

    it("the kill switch removes the participant entirely: also a connection still open from a token they replaced", async () => {
      const a = await schedule();
      const base = clock.now().getTime();
      // A second device: the agent's first token stays valid at Vonage until closesAt, replaced or not.
      const firstToken = await joined(a.externalId, a.agentId);
      const firstDevice = await enter(firstToken, base);
      const secondToken = await joined(a.externalId, a.agentId);
      const secondDevice = await enter(secondToken, base + SECOND);
      const res = await t.app.inject({
        method: "POST",
        url: `/v1/appointments/${a.externalId}/revoke`,
        headers: operator(),
        payload: { reason: "kill switch with two devices", block: true },
      });
      expect(res.json()).toMatchObject({ revoked: 1, appointment: { accessBlocked: true } });
      const answeredAt = Date.now();
      // API.md §10: the participant whose token is revoked is removed from the room, not one of their two devices.
      await expectDisconnectedExactly(a.session, [secondDevice, firstDevice], answeredAt);
    });

    it("makes no call when no open connection was recorded for the token, and settles the removal not_present", async () => {
      const a = await schedule();
      const agent = await joined(a.externalId, a.agentId);
      const customer = await joined(a.externalId, a.customerId);
      const base = clock.now().getTime();
      // The agent came and went (both connections closed); the customer never connected.
      const first = await enter(agent, base);
      const second = await enter(agent, base + SECOND);
      await leave(first, base + 2 * SECOND);
      await leave(second, base + 3 * SECOND);
      const res = await t.app.inject({ method: "POST", url: `/v1/appointments/${a.externalId}/revoke`, headers: operator(), payload: { reason: "nobody here" } });
      expect(res.json().revoked).toBe(2);

      await until(
        "both removals settled",
        async () => (await ejectionAudit(a.externalId)).length === 2,
        EJECT_WAIT_MS,
      );
      const audited = await ejectionAudit(a.externalId);
      expect(audited.map((e) => `${e.type}:${e.outcome}`)).toEqual(["participant.ejected:not_present", "participant.ejected:not_present"]);
      expect(audited.map((e) => e.detail.tokenId).sort()).toEqual([agent.tokenId, customer.tokenId].sort());
      await sleep(QUIET_MS);
      expect(disconnectCalls(a.session)).toEqual([]);
      // `participant.ejected` says someone was removed: nobody was.
      expect(eventsOf(a.externalId, "participant.ejected")).toEqual([]);
      const metrics = (await t.app.inject({ method: "GET", url: "/metrics" })).body;
      expect(metrics).toMatch(/joinwindow_ejections_total\{outcome="not_present"\} [1-9]/);
    });

    it("disconnects someone who connects with a revoked token (still valid at Vonage) within 5 s of the callback", async () => {
      const a = await schedule();
      const customer = await joined(a.externalId, a.customerId);
      await revokeToken(customer.tokenId);
      await until("the revocation's removal settled", async () => (await ejectionAudit(a.externalId)).length === 1, EJECT_WAIT_MS);

      // Vonage still admits the token: it is signed and not expired.
      const connection = connectWith(customer);
      await report("connectionCreated", connection, clock.now().getTime());
      const answeredAt = Date.now();
      await expectDisconnectedExactly(a.session, [connection], answeredAt);
      await receiver.waitFor(() => eventsOf(a.externalId, "participant.ejected").length > 0);
      expect(eventsOf(a.externalId, "participant.ejected")[0]?.data).toMatchObject({ userId: a.customerId, reason: "no_live_token" });
    });

    it("at closesAt (TestClock) disconnects everyone's open connections, and only those", async () => {
      const s = await bothInSession({ startsInMinutes: 0, durationMinutes: 1 });
      const closesAt = Date.parse(s.a.appointment.join.closesAt);
      clock.advance(closesAt + SECOND - clock.now().getTime());
      const closedAt = Date.now();
      const expected = [...s.agentOpen, ...s.customerOpen];
      const ids = expected.map((c) => c.connectionId);
      await until("everyone disconnected", () => ids.every((id) => disconnectCalls(s.a.session).some((call) => call.connectionId === id)), EJECT_WAIT_MS);
      // The timed event is due within a second of its instant; the removal follows within the worker's next pass.
      for (const call of disconnectCalls(s.a.session)) expect(call.at - closedAt).toBeLessThan(EJECT_WITHIN_MS + SECOND);
      await sleep(QUIET_MS);
      expect(disconnectCalls(s.a.session).map((call) => call.connectionId).sort()).toEqual([...ids].sort());
      expect(isOpen(s.unreported)).toBe(true);
      await receiver.waitFor(() => eventsOf(s.a.externalId, "participant.ejected").length >= 2);
      const events = eventsOf(s.a.externalId, "participant.ejected");
      expect(events.map((e) => e.data.userId).sort()).toEqual([s.a.agentId, s.a.customerId].sort());
      expect(events.map((e) => e.data.reason)).toEqual(["window_closed", "window_closed"]);
    });

    it("retries a removal through a force-disconnect outage and disconnects once Vonage answers", async () => {
      const s = await bothInSession();
      const [connection] = s.customerOpen as [Connection];
      fake.forceDisconnect.fail(503);
      await revokeToken(s.customer.tokenId);
      const answeredAt = Date.now();
      // A first attempt (one call: the job retries by itself, deciding afresh), then its retry a second or so later.
      await until("several failed calls", () => disconnectCalls(s.a.session).length >= 2, EJECT_WAIT_MS);
      expect(disconnectCalls(s.a.session)[0]!.at - answeredAt).toBeLessThan(EJECT_WITHIN_MS);
      expect(isOpen(connection)).toBe(true);
      expect(await ejectionAudit(s.a.externalId)).toEqual([]);
      const failedCalls = disconnectCalls(s.a.session).length;

      fake.forceDisconnect.reset();
      await until("the customer's connection is gone", () => !isOpen(connection), 10_000);
      expect(disconnectCalls(s.a.session).length).toBeGreaterThan(failedCalls);
      expect(new Set(disconnectCalls(s.a.session).map((call) => call.connectionId))).toEqual(new Set([connection.connectionId]));
      expect(fake.disconnected.filter((d) => d.sessionId === s.a.session)).toEqual([{ sessionId: s.a.session, connectionId: connection.connectionId }]);
      await until("the removal audited", async () => (await ejectionAudit(s.a.externalId)).length > 0, 5000);
      expect((await ejectionAudit(s.a.externalId)).map((e) => `${e.type}:${e.outcome}`)).toEqual(["participant.ejected:removed"]);
      await receiver.waitFor(() => eventsOf(s.a.externalId, "participant.ejected").length > 0);
      expect(eventsOf(s.a.externalId, "participant.ejected").map((e) => e.data)).toEqual([
        expect.objectContaining({ userId: s.a.customerId, reason: "operator" }),
      ]);
      for (const c of [...s.agentOpen, s.unreported]) expect(isOpen(c)).toBe(true);
      const metrics = (await t.app.inject({ method: "GET", url: "/metrics" })).body;
      expect(metrics).toMatch(/joinwindow_ejections_total\{outcome="retry"\} [1-9]/);
      expect(metrics).toMatch(/joinwindow_ejections_total\{outcome="removed"\} [1-9]/);
    });

    it("disconnects once with two replicas running the worker", async () => {
      const replica = await startApp(env(), { clock });
      try {
        const s = await bothInSession();
        // A slow answer keeps the job in flight while both replicas' workers pass over it.
        fake.forceDisconnect.delay(1200);
        await revokeToken(s.agent.tokenId, replica);
        const answeredAt = Date.now();
        await expectDisconnectedExactly(s.a.session, s.agentOpen, answeredAt);
        for (const c of [...s.customerOpen, s.unreported]) expect(isOpen(c)).toBe(true);
        expect(await ejectionAudit(s.a.externalId)).toHaveLength(1);
        await receiver.waitFor(() => eventsOf(s.a.externalId, "participant.ejected").length > 0);
        expect(new Set(eventsOf(s.a.externalId, "participant.ejected").map((e) => e.webhookId)).size).toBe(1);
      } finally {
        await replica.close();
      }
    });
  });
});
