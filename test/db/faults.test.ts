import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { openDatabase } from "../../src/db/database.js";
import { isDatabaseUnavailable } from "../../src/db/errors.js";
import {
  startApp,
  TEST_JWT_SECRET,
  TEST_KEY_ENCRYPTION_SECRET,
  TEST_WEBHOOK_SECRET,
  type TestApp,
} from "../helpers/app.js";
import { bearer, scheduledEvent, signedDelivery, userJwt } from "../helpers/fixtures.js";
import { type ServerProcess, startServer } from "../helpers/server-process.js";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy.js";

/**
 * What happens to requests, and to the process, when Postgres goes away in
 * the middle of a transaction: a backend terminated by an operator, a server
 * stopped under load, a connection that stops answering. Real Postgres, and
 * the real server process where the question is whether it survives.
 */

const direct = () => new URL(inject("databaseUrl"));

async function withClient<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: inject("databaseUrl") });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Holds the advisory lock a join by `userId` takes first, so that the join blocks inside its transaction. */
async function holdUserLock(userId: string): Promise<{ release: () => Promise<void> }> {
  const client = new pg.Client({ connectionString: inject("databaseUrl") });
  await client.connect();
  await client.query("BEGIN");
  await client.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [`user:${userId}`]);
  return {
    async release() {
      await client.query("COMMIT").catch(() => {});
      await client.end().catch(() => {});
    },
  };
}

/** Backends of the test database waiting for a lock: the blocked join. */
const blockedBackends = () =>
  withClient(async (client) => {
    const { rows } = await client.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
    );
    return rows.map((row) => row.pid);
  });

interface Answer {
  status: number;
  contentType: string | null;
  body: Record<string, unknown>;
}

async function post(url: string, path: string, body: string, headers: Record<string, string>): Promise<Answer> {
  const res = await fetch(`${url}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
  return { status: res.status, contentType: res.headers.get("content-type"), body: (await res.json()) as Record<string, unknown> };
}

const deliver = (url: string, event: unknown) => {
  const delivery = signedDelivery(event);
  return post(url, "/v1/webhooks/appointments", delivery.payload, delivery.headers);
};

async function schedule(url: string) {
  const event = scheduledEvent();
  expect((await deliver(url, event)).status).toBe(200);
  return event.data;
}

const joinToken = (url: string, externalId: string, userId: string) =>
  post(url, `/v1/appointments/${encodeURIComponent(externalId)}/join-token`, "{}", bearer(userJwt(userId)));

const expectNotReady = (answer: Answer) => {
  expect(answer.status).toBe(503);
  expect(answer.contentType).toContain("application/problem+json");
  expect(answer.body.code).toBe("not_ready");
};

describe("a connection lost inside a transaction", () => {
  let proxy: TcpProxy;
  let server: ServerProcess;

  beforeAll(async () => {
    proxy = await startTcpProxy(direct().hostname, Number(direct().port || 5432));
    server = await startServer({
      DATABASE_URL: proxy.urlFor(direct().toString()),
      WEBHOOK_SECRET: TEST_WEBHOOK_SECRET,
      AUTH_JWT_SECRET: TEST_JWT_SECRET,
      KEY_ENCRYPTION_SECRET: TEST_KEY_ENCRYPTION_SECRET,
      DATABASE_ACQUIRE_TIMEOUT_MS: "1000",
      RATE_LIMIT_JOIN_PER_MINUTE: "0",
    });
  });
  afterEach(() => proxy.restore());
  afterAll(async () => {
    server.child.kill("SIGKILL");
    await proxy.close();
  });

  /** The process is still up and serving: the lost connection's 'error' (emitted just after the query fails) was handled. */
  async function expectStillServing() {
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(server.child.exitCode, server.output()).toBeNull();
    await expect.poll(async () => (await fetch(`${server.url}/readyz`)).status, { timeout: 3000 }).toBe(200);
  }

  it("a backend terminated by an operator answers 503 not_ready, and the service keeps running", async () => {
    const appointment = await schedule(server.url);
    const lock = await holdUserLock(appointment.agent.id);
    let answer: Answer;
    try {
      const blocked = joinToken(server.url, appointment.externalId, appointment.agent.id);
      await expect.poll(blockedBackends, { timeout: 5000 }).toHaveLength(1);
      const [pid] = await blockedBackends();
      await withClient((client) => client.query("SELECT pg_terminate_backend($1)", [pid]));
      answer = await blocked;
    } finally {
      await lock.release();
    }
    expectNotReady(answer);
    await expectStillServing();
    expect((await joinToken(server.url, appointment.externalId, appointment.agent.id)).status).toBe(201);
  });

  it("a database dropping every connection under load answers 503 not_ready, and the service recovers by itself", async () => {
    const appointments = await Promise.all(Array.from({ length: 4 }, () => schedule(server.url)));
    const locks = await Promise.all(appointments.map((a) => holdUserLock(a.agent.id)));
    let answers: Answer[];
    try {
      // Four joins inside their transactions, plus webhooks arriving while the connections drop.
      const joins = appointments.map((a) => joinToken(server.url, a.externalId, a.agent.id));
      await expect.poll(async () => (await blockedBackends()).length, { timeout: 5000 }).toBe(4);
      const webhooks = Array.from({ length: 4 }, () => deliver(server.url, scheduledEvent()));
      proxy.refuse();
      answers = await Promise.all([...joins, ...webhooks]);
    } finally {
      await Promise.all(locks.map((lock) => lock.release()));
    }
    for (const answer of answers.slice(0, 4)) expectNotReady(answer);
    // A webhook either made it before the drop or was refused: never a 5xx other than not_ready.
    for (const answer of answers.slice(4)) expect(answer.status === 200 || answer.body.code === "not_ready", JSON.stringify(answer)).toBe(true);
    proxy.restore();
    await expectStillServing();
    for (const a of appointments) expect((await joinToken(server.url, a.externalId, a.agent.id)).status).toBe(201);
  });
});

describe("Prisma's connections", () => {
  it("a backend terminated inside a Prisma transaction fails that transaction as unavailable, and nothing else", async () => {
    const db = await openDatabase({
      databaseUrl: inject("databaseUrl"),
      databasePoolSize: 2,
      databaseAcquireTimeoutMs: 2000,
      databaseQueryTimeoutMs: 10_000,
      dataDir: "",
    });
    const lock = await holdUserLock("prisma-tx");
    try {
      const transaction = db.prisma.$transaction(
        (tx) => tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtextextended(${"user:prisma-tx"}, 0))`,
        { timeout: 10_000 },
      );
      const failure = transaction.then(
        () => null,
        (error: unknown) => error,
      );
      await expect.poll(blockedBackends, { timeout: 5000 }).toHaveLength(1);
      const [pid] = await blockedBackends();
      await withClient((client) => client.query("SELECT pg_terminate_backend($1)", [pid]));
      const error = await failure;
      expect(isDatabaseUnavailable(error)).toBe(true);
      // The pool dropped the lost client and hands out a working one.
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(await db.prisma.$queryRaw`SELECT 1 AS one`).toEqual([{ one: 1 }]);
    } finally {
      await lock.release();
      await db.close();
    }
  });
});

describe("a connection that stops answering", () => {
  const QUERY_TIMEOUT_MS = 1500;
  let proxy: TcpProxy;
  let t: TestApp;

  beforeAll(async () => {
    proxy = await startTcpProxy(direct().hostname, Number(direct().port || 5432));
    t = await startApp({
      DATABASE_URL: proxy.urlFor(direct().toString()),
      DATABASE_ACQUIRE_TIMEOUT_MS: String(QUERY_TIMEOUT_MS),
      DATABASE_QUERY_TIMEOUT_MS: String(QUERY_TIMEOUT_MS),
      RATE_LIMIT_JOIN_PER_MINUTE: "0",
    });
    await t.listen();
  });
  afterEach(() => proxy.restore());
  afterAll(async () => {
    await t.close();
    await proxy.close();
  });

  /**
   * Each request is answered once its one stalled statement times out. A
   * transaction whose statement timed out is not rolled back on the same
   * connection (that ROLLBACK would queue behind the unanswered statement
   * for a second timeout): the connection is destroyed.
   */
  it.each(["join token", "webhook", "introspection"] as const)("a %s answers 503 not_ready after one query timeout, not two", async (kind) => {
    const appointment = await schedule(t.url);
    const issued = await joinToken(t.url, appointment.externalId, appointment.customer.id);
    expect(issued.status).toBe(201);
    const operator = bearer(userJwt("gateway-1", { scope: "tokens:introspect" }));
    const request = () => {
      if (kind === "join token") return joinToken(t.url, appointment.externalId, appointment.agent.id);
      if (kind === "webhook") return deliver(t.url, scheduledEvent());
      return post(t.url, "/v1/tokens/introspect", JSON.stringify({ token: issued.body.token }), operator);
    };

    proxy.blackhole();
    const started = Date.now();
    const answer = await request();
    const elapsed = Date.now() - started;
    expectNotReady(answer);
    expect(elapsed).toBeGreaterThanOrEqual(QUERY_TIMEOUT_MS - 100);
    expect(elapsed).toBeLessThan(1.6 * QUERY_TIMEOUT_MS);

    proxy.restore();
    await expect.poll(async () => (await fetch(`${t.url}/readyz`)).status, { timeout: 5000 }).toBe(200);
    expect((await request()).status).toBeLessThan(300);
  });
});

describe("background work while the database is down", () => {
  it("logs the outage once when it begins and once when it ends, per background worker, at warn, without a stack", async () => {
    const proxy = await startTcpProxy(direct().hostname, Number(direct().port || 5432));
    const lines: Record<string, unknown>[] = [];
    const t = await startApp(
      {
        DATABASE_URL: proxy.urlFor(direct().toString()),
        LOG_LEVEL: "info",
        SESSION_RECONCILE_INTERVAL_MS: "100",
        DATABASE_ACQUIRE_TIMEOUT_MS: "500",
      },
      { logDestination: { write: (line: string) => void lines.push(JSON.parse(line)) } },
    );
    const { app } = t;
    const workers = ["session reconciler", "timed events", "event dispatcher"];
    const outageLines = () => lines.filter((line) => /database/i.test(String(line.msg)) && line.msg !== "request completed");
    const linesOf = (worker: string) => outageLines().filter((line) => line.worker === worker);
    try {
      proxy.refuse();
      await expect.poll(outageLines, { timeout: 5000 }).toHaveLength(workers.length);
      // Metrics stay readable during the outage (the gauges keep their last values).
      const scrape = await app.inject({ method: "GET", url: "/metrics" });
      expect(scrape.statusCode).toBe(200);
      expect(scrape.body).toContain("joinwindow_pending_sessions");
      expect(scrape.body).toContain("joinwindow_outbox_oldest_undelivered_seconds");
      // Many more passes of each worker fail against the refused database: still one line each.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(outageLines()).toHaveLength(workers.length);
      proxy.restore();
      await expect.poll(outageLines, { timeout: 5000 }).toHaveLength(2 * workers.length);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      for (const worker of workers) {
        const [began, ended, ...more] = linesOf(worker);
        expect(began, worker).toMatchObject({ level: 40, msg: expect.stringMatching(/unreachable/) });
        expect(ended, worker).toMatchObject({ level: 40, msg: expect.stringMatching(/reachable again/) });
        expect(more, worker).toEqual([]);
      }
      expect(lines.filter((line) => Number(line.level) >= 50)).toEqual([]);
      expect(JSON.stringify(lines)).not.toContain("stack");
    } finally {
      await t.close();
      await proxy.close();
    }
  });
});
