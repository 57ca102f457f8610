// The dispatcher's guarantees (API.md §9, "Delivery" and "Guarantees"): retries on
// SUBSCRIPTION_RETRY_SCHEDULE with one webhook-id, then `failed`; timeouts and
// network failures; the deliveries log; exactly one attempt per replica set; the
// SSRF rules again at delivery; a slow receiver holding only its own slots; the
// 5-day disable; redirects not followed. Every describe block has a database of
// its own: each app's dispatcher works over its whole database.
import { createServer as createTcpServer, type AddressInfo, type Socket } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startApp, TestClock, type TestApp } from "../helpers/app.js";
import { type FakeServer, type RecordedRequest, sendJson, startFakeServer } from "../helpers/fake-server.js";
import { bearer, type ScheduleOptions, scheduledEvent, signedDelivery, userJwt } from "../helpers/fixtures.js";
import { createMigratedDatabase, dropDatabase } from "../helpers/postgres.js";
import { parseDelivery, type Receiver, startReceiver } from "../helpers/receiver.js";

const DAY = 24 * 3600_000;
// Long enough for the test whose clock moves 5 days ahead.
const manager = bearer(userJwt("ops-subscriptions", { scope: "subscriptions:manage", expiresInSeconds: 7 * 24 * 3600 }));
/** Longer than a retry wait plus a dispatch pass (every second): a request that was still coming would have come. */
const QUIET_MS = 1_800;
const WEBHOOK_ID = /^evt_[0-9a-f]{32}$/;

interface Attempt {
  id: string;
  eventId: string;
  type: string;
  attempt: number;
  at: string;
  status: number | "timeout" | "network";
  durationMs: number;
  nextAttemptAt: string | null;
  error: string | null;
}

interface DeliveryRow {
  externalId: string;
  eventId: string;
  status: string;
  attempts: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it answers something truthy, or fails after `timeoutMs` saying what was awaited. */
async function until<T>(what: string, probe: () => Promise<T | false | undefined | null>, timeoutMs = 10_000): Promise<T> {
  const giveUpAt = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > giveUpAt) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(50);
  }
}

async function subscribe(t: TestApp, url: string, events: string[] = ["appointment.scheduled"]) {
  const res = await t.app.inject({ method: "POST", url: "/v1/subscriptions", headers: manager, payload: { url, events } });
  expect(res.statusCode).toBe(201);
  return res.json() as { id: string; secret: string };
}

async function unsubscribe(t: TestApp, id: string) {
  const res = await t.app.inject({ method: "DELETE", url: `/v1/subscriptions/${id}`, headers: manager });
  expect(res.statusCode).toBe(204);
}

async function readSubscription(t: TestApp, id: string) {
  const res = await t.app.inject({ method: "GET", url: `/v1/subscriptions/${id}`, headers: manager });
  expect(res.statusCode).toBe(200);
  return res.json() as { id: string; status: string; failingSince: string | null; disabledAt: string | null };
}

/** A scheduled appointment an hour ahead (no join window open, no timed event due) unless told otherwise. */
async function schedule(t: TestApp, options: ScheduleOptions = {}) {
  const event = scheduledEvent({ startsInMinutes: 60, ...options });
  const delivery = signedDelivery(event);
  const res = await t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: delivery.headers, payload: delivery.payload });
  expect(res.statusCode).toBe(200);
  return event.data;
}

/** The deliveries log, newest first (one page: the tests make fewer than 200 attempts per subscription). */
async function deliveryLog(t: TestApp, subscriptionId: string): Promise<Attempt[]> {
  const res = await t.app.inject({ method: "GET", url: `/v1/subscriptions/${subscriptionId}/deliveries?limit=200`, headers: manager });
  expect(res.statusCode).toBe(200);
  return (res.json() as { deliveries: Attempt[] }).deliveries;
}

/** The queue's rows of a subscription, as stored. */
async function deliveryRows(t: TestApp, subscriptionId: string): Promise<DeliveryRow[]> {
  return t.db.prisma.$queryRaw<DeliveryRow[]>`
    SELECT external_id AS "externalId", event_id::text AS "eventId", status::text AS status, attempts
    FROM subscription_deliveries WHERE subscription_id = ${subscriptionId}::uuid ORDER BY id`;
}

/** Resolves with the rows once every delivery of the subscription (at least `count`) has settled with `status`. */
function settled(t: TestApp, subscriptionId: string, status: "failed" | "delivered", count = 1, timeoutMs = 10_000) {
  return until(
    `${count} deliveries ${status}`,
    async () => {
      const rows = await deliveryRows(t, subscriptionId);
      return rows.length >= count && rows.every((row) => row.status === status) && rows;
    },
    timeoutMs,
  );
}

const appointmentOf = (request: RecordedRequest) => (JSON.parse(request.body) as { data?: { appointmentId?: string } }).data?.appointmentId;

/** The requests (faults included) that concerned one appointment. */
const requestsOf = (server: { requests: RecordedRequest[] }, appointmentId: string) =>
  server.requests.filter((request) => appointmentOf(request) === appointmentId);

const waitForRequests = (server: { requests: RecordedRequest[] }, appointmentId: string, count: number, timeoutMs = 10_000) =>
  until(`${count} requests about ${appointmentId}`, async () => {
    const requests = requestsOf(server, appointmentId);
    return requests.length >= count && requests;
  }, timeoutMs);

const gaps = (times: number[]) => times.slice(1).map((time, i) => time - (times[i] as number));

/** A counter's value on one app's /metrics (0 when the series does not exist yet). */
async function counter(t: TestApp, name: string, outcome: string): Promise<number> {
  const res = await t.app.inject({ method: "GET", url: "/metrics" });
  expect(res.statusCode).toBe(200);
  const line = res.body.split("\n").find((l) => l.startsWith(`${name}{outcome="${outcome}"} `));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
}

/** A plain TCP listener on 127.0.0.1 (and ::1 on the same port when the host has IPv6) that counts the connections it gets. */
async function tcpListener() {
  const sockets: Socket[] = [];
  const listeners: ReturnType<typeof createTcpServer>[] = [];
  const listen = async (host: string, port: number) => {
    const server = createTcpServer((socket) => {
      sockets.push(socket);
      socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
    listeners.push(server);
    return (server.address() as AddressInfo).port;
  };
  const port = await listen("127.0.0.1", 0);
  await listen("::1", port).catch(() => undefined);
  return {
    port,
    connections: () => sockets.length,
    close: () => Promise.all(listeners.map((server) => new Promise<void>((resolve) => server.close(() => resolve())))),
  };
}

describe("retries, timeouts, network failures and redirects (one replica, schedule 0.3,0.3,0.3, timeout 500 ms)", () => {
  const SCHEDULE_MS = [300, 300, 300];
  const ATTEMPTS = 1 + SCHEDULE_MS.length;
  const TIMEOUT_MS = 500;
  let database: { name: string; url: string };
  let t: TestApp;
  let cleanups: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    database = await createMigratedDatabase();
    t = await startApp({
      DATABASE_URL: database.url,
      SUBSCRIPTIONS_ALLOW_PRIVATE_TARGETS: "true",
      SUBSCRIPTION_RETRY_SCHEDULE: "0.3,0.3,0.3",
      SUBSCRIPTION_TIMEOUT_MS: String(TIMEOUT_MS),
    });
  });
  afterEach(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    cleanups = [];
  });
  afterAll(async () => {
    await t?.close();
    if (database) await dropDatabase(database.name);
  });

  async function receiverWithSubscription(events?: string[]) {
    const receiver = await startReceiver();
    cleanups.push(() => receiver.close());
    const subscription = await subscribe(t, `${receiver.url}/hook`, events);
    cleanups.push(() => unsubscribe(t, subscription.id));
    receiver.secrets.push(subscription.secret);
    return { receiver, subscription };
  }

  it("retries a receiver that answers 500 exactly len(schedule) times, spaced by the schedule, under one webhook-id, then fails the delivery and logs every attempt", async () => {
    const { receiver, subscription } = await receiverWithSubscription();
    receiver.faults.fail(500);
    const a = await schedule(t);

    await waitForRequests(receiver, a.externalId, ATTEMPTS);
    const [row] = await settled(t, subscription.id, "failed");
    await sleep(QUIET_MS);
    const requests = requestsOf(receiver, a.externalId);
    expect(requests).toHaveLength(ATTEMPTS);
    expect(row).toMatchObject({ externalId: a.externalId, status: "failed", attempts: ATTEMPTS });

    const deliveries = requests.map((request) => parseDelivery(request, receiver.secrets));
    const ids = new Set(deliveries.map((d) => d.webhookId));
    expect(ids.size).toBe(1);
    const [webhookId] = [...ids];
    expect(webhookId).toMatch(WEBHOOK_ID);
    expect(deliveries.every((d) => d.verified && d.type === "appointment.scheduled")).toBe(true);
    const spacing = gaps(requests.map((r) => r.at));
    spacing.forEach((gap, i) => expect(gap).toBeGreaterThanOrEqual(SCHEDULE_MS[i] as number));
    expect(receiver.received).toEqual([]);

    const log = await deliveryLog(t, subscription.id);
    expect(log.map((entry) => entry.attempt)).toEqual([4, 3, 2, 1]);
    for (const entry of log) {
      expect(entry).toMatchObject({ eventId: webhookId, type: "appointment.scheduled", status: 500, error: null });
      expect(entry.durationMs).toEqual(expect.any(Number));
    }
    const [last, ...earlier] = log;
    expect(last?.nextAttemptAt).toBeNull();
    for (const entry of earlier) {
      expect(entry.nextAttemptAt).toEqual(expect.any(String));
      expect(Date.parse(entry.nextAttemptAt as string) - Date.parse(entry.at)).toBeGreaterThanOrEqual(300);
    }
    const times = log.map((entry) => Date.parse(entry.at)).reverse();
    expect(gaps(times).every((gap) => gap >= 300)).toBe(true);
  });

  it("ends an attempt at a receiver that never answers as a timeout after SUBSCRIPTION_TIMEOUT_MS, retries it on the schedule, then fails it", async () => {
    const { receiver, subscription } = await receiverWithSubscription();
    receiver.faults.hang();
    const a = await schedule(t);

    await waitForRequests(receiver, a.externalId, ATTEMPTS, 15_000);
    await settled(t, subscription.id, "failed");
    const requests = requestsOf(receiver, a.externalId);
    expect(requests).toHaveLength(ATTEMPTS);
    expect(new Set(requests.map((r) => r.headers["webhook-id"])).size).toBe(1);
    // Each retry starts only once the previous attempt was cut at the timeout and its wait is over.
    for (const gap of gaps(requests.map((r) => r.at))) expect(gap).toBeGreaterThanOrEqual(TIMEOUT_MS + 300 - 50);

    const log = await deliveryLog(t, subscription.id);
    expect(log.map((entry) => [entry.attempt, entry.status])).toEqual([
      [4, "timeout"],
      [3, "timeout"],
      [2, "timeout"],
      [1, "timeout"],
    ]);
    for (const entry of log) {
      expect(entry.durationMs).toBeGreaterThanOrEqual(TIMEOUT_MS - 20);
      expect(entry.durationMs).toBeLessThan(TIMEOUT_MS + 1_000);
    }
    expect(log.map((entry) => entry.nextAttemptAt === null)).toEqual([true, false, false, false]);
  });

  it("records attempts at a receiver that is down as network failures with an error, retries them, then fails the delivery", async () => {
    const gone = await startReceiver();
    const url = `${gone.url}/hook`;
    await gone.close();
    const subscription = await subscribe(t, url);
    cleanups.push(() => unsubscribe(t, subscription.id));
    const a = await schedule(t);

    const [row] = await settled(t, subscription.id, "failed");
    expect(row).toMatchObject({ externalId: a.externalId, attempts: ATTEMPTS });
    const log = await deliveryLog(t, subscription.id);
    expect(log.map((entry) => [entry.attempt, entry.status])).toEqual([
      [4, "network"],
      [3, "network"],
      [2, "network"],
      [1, "network"],
    ]);
    for (const entry of log) expect(entry.error).toMatch(/\S/);
    expect(new Set(log.map((entry) => entry.eventId)).size).toBe(1);
    const times = log.map((entry) => Date.parse(entry.at)).reverse();
    expect(gaps(times).every((gap) => gap >= 300)).toBe(true);
    expect(log.map((entry) => entry.nextAttemptAt === null)).toEqual([true, false, false, false]);
  });

  it("delivers on the third attempt after two 500s: delivered, logged 500, 500, 200, and counted in /metrics", async () => {
    const attemptsMetric = "joinwindow_subscription_delivery_attempts_total";
    const settledMetric = "joinwindow_subscription_deliveries_total";
    const before = {
      httpError: await counter(t, attemptsMetric, "http_error"),
      delivered: await counter(t, attemptsMetric, "delivered"),
      settledDelivered: await counter(t, settledMetric, "delivered"),
    };
    const { receiver, subscription } = await receiverWithSubscription();
    receiver.faults.fail(500, { times: 2 });
    const a = await schedule(t);

    const [event] = await receiver.waitFor((events) => events.length >= 1);
    const [row] = await settled(t, subscription.id, "delivered");
    expect(row).toMatchObject({ externalId: a.externalId, attempts: 3 });
    expect(event).toMatchObject({ type: "appointment.scheduled", verified: true, data: { appointmentId: a.externalId } });
    expect(requestsOf(receiver, a.externalId).map((r) => r.headers["webhook-id"])).toEqual(Array(3).fill(event?.webhookId));

    const log = await deliveryLog(t, subscription.id);
    expect(log.map((entry) => [entry.attempt, entry.status])).toEqual([
      [3, 200],
      [2, 500],
      [1, 500],
    ]);
    expect(log[0]?.nextAttemptAt).toBeNull();

    expect((await counter(t, attemptsMetric, "http_error")) - before.httpError).toBe(2);
    expect((await counter(t, attemptsMetric, "delivered")) - before.delivered).toBe(1);
    expect((await counter(t, settledMetric, "delivered")) - before.settledDelivered).toBe(1);
  });

  it("does not follow a redirect: a 302 is recorded as the attempt's status, not a success, and its Location gets nothing", async () => {
    const elsewhere = await startReceiver();
    cleanups.push(() => elsewhere.close());
    const redirecting: FakeServer = await startFakeServer((_request, response) => {
      response.writeHead(302, { location: `${elsewhere.url}/hook` });
      response.end();
    });
    cleanups.push(() => redirecting.close());
    const subscription = await subscribe(t, `${redirecting.url}/hook`);
    cleanups.push(() => unsubscribe(t, subscription.id));
    const a = await schedule(t);

    await settled(t, subscription.id, "failed");
    expect(requestsOf(redirecting, a.externalId)).toHaveLength(ATTEMPTS);
    const log = await deliveryLog(t, subscription.id);
    expect(log.map((entry) => [entry.attempt, entry.status])).toEqual([
      [4, 302],
      [3, 302],
      [2, 302],
      [1, 302],
    ]);
    expect(elsewhere.requests).toEqual([]);
  });
});

describe("a slow receiver does not delay another (timeout 10 s)", () => {
  let database: { name: string; url: string };
  let t: TestApp;
  let slow: Receiver;
  let fast: Receiver;
  const hosts: FakeServer[] = [];

  beforeAll(async () => {
    database = await createMigratedDatabase();
    t = await startApp({
      DATABASE_URL: database.url,
      SUBSCRIPTIONS_ALLOW_PRIVATE_TARGETS: "true",
      SUBSCRIPTION_RETRY_SCHEDULE: "0.3",
      SUBSCRIPTION_TIMEOUT_MS: "10000",
    });
    [slow, fast] = await Promise.all([startReceiver(), startReceiver()]);
  });
  afterAll(async () => {
    // The receivers first: their closed connections end the attempts still hanging, which the app waits for.
    await Promise.all([slow?.close(), fast?.close(), ...hosts.map((host) => host.close())]);
    await t?.close();
    if (database) await dropDatabase(database.name);
  });

  it("delivers 20 events to a prompt receiver within seconds while another subscription's receiver hangs on a bounded number of attempts", async () => {
    slow.faults.hang();
    const stuck = await subscribe(t, `${slow.url}/hook`);
    const prompt = await subscribe(t, `${fast.url}/hook`);
    fast.secrets.push(prompt.secret);

    const appointments = [];
    for (let i = 0; i < 20; i++) appointments.push(await schedule(t));
    await fast.waitFor((events) => events.length >= 20, 3_000);

    expect(new Set(fast.received.map((e) => e.data.appointmentId))).toEqual(new Set(appointments.map((a) => a.externalId)));
    expect(fast.received.every((e) => e.verified)).toBe(true);
    // The hanging receiver holds some attempts, not one per event: the rest wait for a free slot of that subscription.
    expect(slow.requests.length).toBeGreaterThan(0);
    expect(slow.requests.length).toBeLessThan(20);
    // None of them has ended yet: they are stuck, and did not hold up the other subscription.
    expect(await deliveryLog(t, stuck.id)).toEqual([]);
    expect((await deliveryRows(t, stuck.id)).every((row) => row.status === "pending" && row.attempts === 0)).toBe(true);
    await Promise.all([unsubscribe(t, stuck.id), unsubscribe(t, prompt.id)]);
  });

  it("delivers 20 events to a prompt subscription while another subscription on the same host and port hangs", async () => {
    // One receiving host (a gateway, a multi-tenant webhook service) with a path per subscription: one path hangs.
    const host = await startFakeServer((request, response) => {
      if (request.path !== "/hang") sendJson(response, 200, { ok: true });
    });
    hosts.push(host);
    const stuck = await subscribe(t, `${host.url}/hang`);
    const prompt = await subscribe(t, `${host.url}/prompt`);

    const appointments = [];
    for (let i = 0; i < 20; i++) appointments.push(await schedule(t));
    const answered = await until(
      "20 deliveries to the prompt path",
      async () => {
        const requests = host.requests.filter((r) => r.path === "/prompt");
        return requests.length >= 20 && requests;
      },
      3_000,
    ).catch((error: Error) => {
      const prompted = host.requests.filter((r) => r.path === "/prompt").length;
      const hanging = host.requests.filter((r) => r.path === "/hang").length;
      throw new Error(`${error.message}: the prompt path got ${prompted}, the hanging one holds ${hanging}`);
    });
    expect(new Set(answered.map(appointmentOf))).toEqual(new Set(appointments.map((a) => a.externalId)));
    expect(await deliveryLog(t, stuck.id)).toEqual([]);
    await Promise.all([unsubscribe(t, stuck.id), unsubscribe(t, prompt.id)]);
  });
});

describe("two replicas on one database", () => {
  const CHANGE_TYPES = ["appointment.scheduled", "session.ready", "token.issued"];
  let database: { name: string; url: string };
  let replicas: TestApp[] = [];
  let cleanups: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    database = await createMigratedDatabase();
    const env = {
      DATABASE_URL: database.url,
      SUBSCRIPTIONS_ALLOW_PRIVATE_TARGETS: "true",
      // The first retry waits long enough for every first attempt of a batch to come before it.
      SUBSCRIPTION_RETRY_SCHEDULE: "3,3",
      SUBSCRIPTION_TIMEOUT_MS: "2000",
      RATE_LIMIT_JOIN_PER_MINUTE: "0",
    };
    replicas = [await startApp(env), await startApp(env)];
  });
  afterEach(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    cleanups = [];
  });
  afterAll(async () => {
    for (const replica of replicas) await replica.close();
    if (database) await dropDatabase(database.name);
  });

  const replica = (i: number) => replicas[i % replicas.length] as TestApp;

  /** `count` appointments scheduled through the replicas in turn, each with the agent's join token from the other replica. */
  async function appointmentsWithTokens(count: number) {
    const appointments = [];
    for (let i = 0; i < count; i++) {
      // Five minutes ahead: the agent's window (10 minutes early) is open.
      const a = await schedule(replica(i), { startsInMinutes: 5 });
      const res = await replica(i + 1).app.inject({
        method: "POST",
        url: `/v1/appointments/${encodeURIComponent(a.externalId)}/join-token`,
        headers: bearer(userJwt(a.agent.id)),
      });
      expect(res.statusCode).toBe(201);
      appointments.push(a);
    }
    return appointments;
  }

  async function receiverWithSubscription() {
    const receiver = await startReceiver();
    cleanups.push(() => receiver.close());
    const subscription = await subscribe(replica(0), `${receiver.url}/hook`, CHANGE_TYPES);
    cleanups.push(() => unsubscribe(replica(0), subscription.id));
    receiver.secrets.push(subscription.secret);
    return { receiver, subscription };
  }

  const deliveredAttempts = async () => {
    let sum = 0;
    for (const r of replicas) sum += await counter(r, "joinwindow_subscription_delivery_attempts_total", "delivered");
    return sum;
  };

  /** The log's attempt numbers and outcomes per delivery, as stored. */
  const attemptsByDelivery = async (subscriptionId: string) =>
    replica(0).db.prisma.$queryRaw<{ eventId: string; attempts: number[]; outcomes: string[] }[]>`
      SELECT event_id::text AS "eventId", array_agg(attempt ORDER BY id) AS attempts, array_agg(outcome ORDER BY id) AS outcomes
      FROM subscription_attempts WHERE subscription_id = ${subscriptionId}::uuid GROUP BY event_id`;

  it("delivers every event of 30 appointments changed through both replicas exactly once", async () => {
    const before = await deliveredAttempts();
    const { receiver, subscription } = await receiverWithSubscription();
    const appointments = await appointmentsWithTokens(30);
    const expected = appointments.length * CHANGE_TYPES.length;

    await receiver.waitFor((events) => events.length >= expected, 15_000);
    await settled(replica(0), subscription.id, "delivered", expected);
    await sleep(QUIET_MS);

    expect(receiver.requests).toHaveLength(expected);
    expect(receiver.received).toHaveLength(expected);
    expect(new Set(receiver.received.map((e) => e.webhookId)).size).toBe(expected);
    expect(receiver.received.every((e) => e.verified && WEBHOOK_ID.test(e.webhookId))).toBe(true);
    for (const a of appointments) expect(receiver.of(a.externalId).map((e) => e.type).sort()).toEqual(CHANGE_TYPES);

    const rows = await deliveryRows(replica(0), subscription.id);
    expect(rows).toHaveLength(expected);
    expect(rows.every((row) => row.status === "delivered" && row.attempts === 1)).toBe(true);
    const logged = await attemptsByDelivery(subscription.id);
    expect(logged).toHaveLength(expected);
    expect(logged.every((d) => d.attempts.length === 1 && d.attempts[0] === 1 && d.outcomes[0] === "200")).toBe(true);
    // Across both replicas, one delivered attempt per event: none was made twice.
    expect((await deliveredAttempts()) - before).toBe(expected);
  });

  it("makes each retry once: with every first attempt answered 500, each event gets exactly two attempts", async () => {
    const { receiver, subscription } = await receiverWithSubscription();
    const count = 10 * CHANGE_TYPES.length;
    receiver.faults.fail(500, { times: count });
    const appointments = await appointmentsWithTokens(10);

    await receiver.waitFor((events) => events.length >= count, 15_000);
    await settled(replica(0), subscription.id, "delivered", count);
    await sleep(QUIET_MS);

    const idsOf = (requests: RecordedRequest[]) => requests.map((r) => String(r.headers["webhook-id"]));
    expect(receiver.requests).toHaveLength(2 * count);
    const failed = idsOf(receiver.requests.slice(0, count));
    const succeeded = idsOf(receiver.requests.slice(count));
    expect(new Set(failed).size).toBe(count);
    expect(new Set(succeeded)).toEqual(new Set(failed));
    expect(new Set(receiver.received.map((e) => e.data.appointmentId))).toEqual(new Set(appointments.map((a) => a.externalId)));

    const rows = await deliveryRows(replica(0), subscription.id);
    expect(rows).toHaveLength(count);
    expect(rows.every((row) => row.status === "delivered" && row.attempts === 2)).toBe(true);
    const logged = await attemptsByDelivery(subscription.id);
    expect(logged).toHaveLength(count);
    for (const d of logged) expect({ attempts: d.attempts, outcomes: d.outcomes }).toEqual({ attempts: [1, 2], outcomes: ["500", "200"] });
  });
});

describe("SSRF rules at delivery: a subscription created with SUBSCRIPTIONS_ALLOW_PRIVATE_TARGETS, delivered without it", () => {
  let database: { name: string; url: string };
  let t: TestApp | undefined;
  const listeners: Awaited<ReturnType<typeof tcpListener>>[] = [];

  beforeAll(async () => {
    database = await createMigratedDatabase();
  });
  afterAll(async () => {
    await t?.close();
    await Promise.all(listeners.map((listener) => listener.close()));
    if (database) await dropDatabase(database.name);
  });

  it("does not call a name that resolves to loopback, a loopback address or an http URL: each attempt is a network failure saying why, and nothing connects", async () => {
    const listen = async () => {
      const listener = await tcpListener();
      listeners.push(listener);
      return listener;
    };
    const [byName, byAddress, plain] = [await listen(), await listen(), await listen()];
    const lenient = await startApp({ DATABASE_URL: database.url, SUBSCRIPTIONS_ALLOW_PRIVATE_TARGETS: "true" });
    let subscriptions: { byName: string; byAddress: string; plain: string };
    try {
      subscriptions = {
        byName: (await subscribe(lenient, `https://localhost:${byName.port}/hook`)).id,
        byAddress: (await subscribe(lenient, `https://127.0.0.1:${byAddress.port}/hook`)).id,
        plain: (await subscribe(lenient, `http://127.0.0.1:${plain.port}/hook`)).id,
      };
    } finally {
      await lenient.close();
    }
    t = await startApp({ DATABASE_URL: database.url, SUBSCRIPTION_RETRY_SCHEDULE: "0.3", SUBSCRIPTION_TIMEOUT_MS: "500" });
    const strict = t;
    const a = await schedule(strict);

    for (const id of Object.values(subscriptions)) {
      const [row] = await settled(strict, id, "failed");
      expect(row).toMatchObject({ externalId: a.externalId, attempts: 2 });
    }
    const logOf = async (id: string) => {
      const log = await deliveryLog(strict, id);
      expect(log.map((entry) => [entry.attempt, entry.status])).toEqual([
        [2, "network"],
        [1, "network"],
      ]);
      return log.map((entry) => entry.error);
    };
    for (const error of await logOf(subscriptions.byName)) {
      expect(error).toMatch(/localhost resolves to (127\.0\.0\.1|::1) \(loopback\), which is not a public address/);
    }
    for (const error of await logOf(subscriptions.byAddress)) expect(error).toMatch(/127\.0\.0\.1 is not a public address \(loopback\)/);
    for (const error of await logOf(subscriptions.plain)) expect(error).toMatch(/https/);
    expect([byName.connections(), byAddress.connections(), plain.connections()]).toEqual([0, 0, 0]);
  });
});

describe("a subscription whose deliveries have all failed for 5 days is disabled (TestClock)", () => {
  const clock = new TestClock();
  let database: { name: string; url: string };
  let t: TestApp;
  let receiver: Receiver;

  beforeAll(async () => {
    database = await createMigratedDatabase();
    t = await startApp(
      {
        DATABASE_URL: database.url,
        SUBSCRIPTIONS_ALLOW_PRIVATE_TARGETS: "true",
        SUBSCRIPTION_RETRY_SCHEDULE: "0.2,0.2,0.2,0.2,0.2",
        SUBSCRIPTION_TIMEOUT_MS: "500",
      },
      { clock },
    );
    receiver = await startReceiver();
  });
  afterAll(async () => {
    await receiver?.close();
    await t?.close();
    if (database) await dropDatabase(database.name);
  });

  it("disables it on a failed attempt 5 days after the first failure: audited, pending deliveries failed, no longer called", async () => {
    receiver.faults.fail(500);
    const subscription = await subscribe(t, `${receiver.url}/hook`);
    const first = await schedule(t, { now: clock.now() });
    const second = await schedule(t, { now: clock.now() });

    // failing_since is the (clock's) time of the first failed attempt.
    const failingSince = await until("failing since", async () => (await readSubscription(t, subscription.id)).failingSince);
    expect((await readSubscription(t, subscription.id)).status).toBe("active");
    clock.advance(5 * DAY + 60_000);
    const advancedAt = clock.now().getTime();

    const disabled = await until("disabled", async () => {
      const view = await readSubscription(t, subscription.id);
      return view.status === "disabled" && view.disabledAt !== null && view;
    }, 5_000);
    expect(Date.parse(disabled.disabledAt as string)).toBeGreaterThanOrEqual(advancedAt);
    expect(Date.parse(disabled.disabledAt as string) - Date.parse(failingSince)).toBeGreaterThanOrEqual(5 * DAY);

    const audit = await t.db.prisma.auditEvent.findMany({ where: { type: "subscription.disabled" } });
    expect(audit).toHaveLength(1);
    expect(audit[0]?.detail).toMatchObject({ subscriptionId: subscription.id });

    // Its pending deliveries were failed by the disabling, not by running out of retries (6 attempts).
    const rows = await settled(t, subscription.id, "failed", 2, 3_000);
    expect(rows.map((row) => row.externalId).sort()).toEqual([first.externalId, second.externalId].sort());
    expect(rows.every((row) => row.attempts < 6)).toBe(true);

    const requestsBefore = receiver.requests.length;
    const third = await schedule(t, { now: clock.now() });
    await until("the new event fanned out", async () => {
      const [row] = await t.db.prisma.$queryRaw<{ pending: number }[]>`SELECT count(*)::int AS pending FROM outbox_events`;
      return row?.pending === 0;
    }, 5_000);
    await sleep(QUIET_MS);
    expect((await deliveryRows(t, subscription.id)).map((row) => row.externalId)).not.toContain(third.externalId);
    expect(requestsOf(receiver, third.externalId)).toEqual([]);
    expect(receiver.requests).toHaveLength(requestsBefore);
  });
});
