import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, TestClock, TEST_JWT_SECRET, TEST_KEY_ENCRYPTION_SECRET, TEST_WEBHOOK_SECRET, type TestApp } from "../helpers/app.js";
import { openDatabase } from "../../src/db/database.js";
import { bearer, cancelledEvent, scheduledEvent, signedDelivery, userJwt } from "../helpers/fixtures.js";
import { createMigratedDatabase, dropDatabase } from "../helpers/postgres.js";
import { type Receiver, startReceiver } from "../helpers/receiver.js";
import { type ServerProcess, startServer } from "../helpers/server-process.js";

// Valid across the embedded tests' clock, which moves 5 days ahead.
const manager = bearer(userJwt("ops-1", { scope: "subscriptions:manage", expiresInSeconds: 7 * 24 * 3600 }));
const json = { "content-type": "application/json" };

/**
 * API.md §9's guarantee against crashes: an event committed with its change
 * is delivered even when the process that wrote it dies before (or while)
 * delivering it; the next process on the same database delivers it.
 */
describe("events across a crash of the service process", () => {
  let database: { name: string; url: string };
  let receiver: Receiver;
  let dataDir: string;
  const processes: ServerProcess[] = [];

  beforeAll(async () => {
    database = await createMigratedDatabase();
    receiver = await startReceiver();
    dataDir = await mkdtemp(path.join(os.tmpdir(), "jw-crash-"));
  });
  afterAll(async () => {
    for (const server of processes) server.child.kill("SIGKILL");
    await receiver.close();
    await dropDatabase(database.name);
    await rm(dataDir, { recursive: true, force: true });
  });

  const start = async () => {
    const server = await startServer({
      DATABASE_URL: database.url,
      DATA_DIR: dataDir,
      WEBHOOK_SECRET: TEST_WEBHOOK_SECRET,
      AUTH_JWT_SECRET: TEST_JWT_SECRET,
      KEY_ENCRYPTION_SECRET: TEST_KEY_ENCRYPTION_SECRET,
      SUBSCRIPTIONS_ALLOW_PRIVATE_TARGETS: "true",
      // A lease is the timeout plus 2 s: a killed replica's claim runs out 3 s after it was taken.
      SUBSCRIPTION_TIMEOUT_MS: "1000",
    });
    processes.push(server);
    return server;
  };

  const schedule = async (url: string, event: ReturnType<typeof scheduledEvent>) => {
    const delivery = signedDelivery(event);
    const answer = await fetch(`${url}/v1/webhooks/appointments`, { method: "POST", headers: delivery.headers, body: delivery.payload });
    expect(answer.status).toBe(200);
  };

  it("delivers, after a restart, what a killed process had committed and was delivering", async () => {
    const first = await start();
    const created = await fetch(`${first.url}/v1/subscriptions`, {
      method: "POST",
      headers: { ...manager, ...json },
      body: JSON.stringify({ url: `${receiver.url}/events` }),
    });
    expect(created.status).toBe(201);
    receiver.secrets.push(((await created.json()) as { secret: string }).secret);

    // The receiver takes the first attempts and never answers: they are in flight when the process dies.
    receiver.faults.hang();
    const event = scheduledEvent({ startsInMinutes: 120 });
    const { externalId } = event.data;
    await schedule(first.url, event);
    await expect.poll(() => receiver.requests.length, { timeout: 5000 }).toBeGreaterThanOrEqual(2);
    const inFlight = new Set(receiver.requests.map((request) => String(request.headers["webhook-id"])));

    // Killed between the commit and the delivery: nothing ran its shutdown.
    first.child.kill("SIGKILL");
    receiver.faults.reset();
    await start();

    const delivered = await receiver.waitFor((events) => events.filter((e) => e.data.appointmentId === externalId).length >= 2, 15_000);
    const mine = delivered.filter((e) => e.data.appointmentId === externalId);
    expect(mine.map((e) => e.type).sort()).toEqual(["appointment.scheduled", "session.ready"]);
    expect(mine.every((e) => e.verified)).toBe(true);
    // The very events whose attempts were cut off, by their webhook-id.
    expect(new Set(mine.map((e) => e.webhookId))).toEqual(inFlight);
  });

  it("delivers, after a restart, what a process killed right after answering had committed", async () => {
    const server = processes.at(-1) as ServerProcess;
    const event = scheduledEvent({ startsInMinutes: 120 });
    const { externalId } = event.data;
    await schedule(server.url, event);
    const cancel = signedDelivery(cancelledEvent(externalId));
    const answer = await fetch(`${server.url}/v1/webhooks/appointments`, { method: "POST", headers: cancel.headers, body: cancel.payload });
    expect(answer.status).toBe(200);
    // Wherever this lands (before the fan-out, before a claim, mid-attempt), the events are in the database.
    server.child.kill("SIGKILL");
    await start();
    const delivered = await receiver.waitFor((events) => events.filter((e) => e.data.appointmentId === externalId).length >= 3, 15_000);
    expect(
      delivered
        .filter((e) => e.data.appointmentId === externalId)
        .map((e) => e.type)
        .sort(),
    ).toEqual(["appointment.cancelled", "appointment.scheduled", "session.ready"]);
  });
});

/**
 * The embedded database (PGlite, the default with no DATABASE_URL) runs the
 * same outbox, dispatcher and timed events: one connection, so every
 * background statement waits its turn behind the requests.
 */
describe("events on the embedded database", () => {
  let t: TestApp;
  let receiver: Receiver;
  let dataDir: string;
  const clock = new TestClock();

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "jw-pglite-events-"));
    // What server.ts does at boot: migrate the embedded database, then build the app on it.
    const embedded = await openDatabase({ databaseUrl: undefined, databasePoolSize: 1, databaseAcquireTimeoutMs: 5000, databaseQueryTimeoutMs: 60000, dataDir });
    await embedded.migrate();
    await embedded.close();
    receiver = await startReceiver();
    t = await startApp(
      {
        DATABASE_URL: undefined,
        DATA_DIR: dataDir,
        SUBSCRIPTIONS_ALLOW_PRIVATE_TARGETS: "true",
        SUBSCRIPTION_RETRY_SCHEDULE: "0.2,0.2",
        RATE_LIMIT_JOIN_PER_MINUTE: "0",
      },
      { clock },
    );
    expect(t.db.kind).toBe("pglite");
    const created = await t.app.inject({ method: "POST", url: "/v1/subscriptions", headers: { ...manager, ...json }, payload: { url: `${receiver.url}/events` } });
    expect(created.statusCode).toBe(201);
    receiver.secrets.push(created.json<{ secret: string }>().secret);
  });
  afterAll(async () => {
    await t.close();
    await receiver.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("delivers the events of a booking, a join and a cancellation, signed, each once, after a failed first attempt", async () => {
    receiver.faults.fail(500, { times: 1 });
    const event = scheduledEvent({ startsInMinutes: 30, now: clock.now() });
    const { externalId } = event.data;
    const booking = signedDelivery(event);
    expect((await t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: booking.headers, payload: booking.payload })).statusCode).toBe(200);
    // The agent's window opens 10 min before the start (in 20 min), the customer's 5 min before (in 25): only the first is open.
    clock.advance(22 * 60_000);
    await receiver.waitFor((events) => events.some((e) => e.data.appointmentId === externalId && e.type === "join_window.opened"));
    const join = await t.app.inject({ method: "POST", url: `/v1/appointments/${externalId}/join-token`, headers: bearer(userJwt(event.data.agent.id, { expiresInSeconds: 3600 })) });
    expect(join.statusCode).toBe(201);
    const cancel = signedDelivery(cancelledEvent(externalId));
    expect((await t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: cancel.headers, payload: cancel.payload })).statusCode).toBe(200);

    const expected = ["appointment.scheduled", "session.ready", "join_window.opened", "token.issued", "token.revoked", "appointment.cancelled"];
    await receiver.waitFor((events) => events.filter((e) => e.data.appointmentId === externalId).length >= expected.length, 10_000);
    const mine = receiver.of(externalId).sort((a, b) => a.data.sequence - b.data.sequence);
    // The agent's window opened (timed event) before the join; the customer's had not when it was cancelled.
    expect(mine.map((e) => e.type)).toEqual(expected);
    expect(mine.every((e) => e.verified)).toBe(true);
    expect(new Set(mine.map((e) => e.webhookId)).size).toBe(mine.length);
    // The refused first attempt was retried with the same webhook-id.
    const [refused] = receiver.requests;
    expect(mine.map((e) => e.webhookId)).toContain(String(refused?.headers["webhook-id"]));
  });
  it("rotates a secret (two signatures), logs attempts, disables after 5 days of failures, enables and deletes, as on Postgres", async () => {
    const failing = await startReceiver();
    try {
      const created = await t.app.inject({ method: "POST", url: "/v1/subscriptions", headers: { ...manager, ...json }, payload: { url: `${failing.url}/events`, events: ["appointment.scheduled"] } });
      expect(created.statusCode).toBe(201);
      const { id, secret: oldSecret } = created.json<{ id: string; secret: string }>();
      const rotated = await t.app.inject({ method: "POST", url: `/v1/subscriptions/${id}/rotate-secret`, headers: manager });
      expect(rotated.statusCode).toBe(200);
      failing.secrets.push(oldSecret, rotated.json<{ secret: string }>().secret);

      const book = async () => {
        const booking = signedDelivery(scheduledEvent({ startsInMinutes: 600, now: clock.now() }));
        expect((await t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: booking.headers, payload: booking.payload })).statusCode).toBe(200);
      };
      await book();
      const [delivered] = await failing.waitFor((events) => events.length >= 1);
      expect(delivered?.signatures).toHaveLength(2);
      expect(delivered?.verified).toBe(true);

      // Failing from now on: after 5 days of nothing but failures the next failure disables it.
      failing.faults.fail(500);
      await book();
      await expect.poll(async () => (await t.db.sql.query<{ f: Date | null }>({ name: "t_failing", text: "SELECT failing_since AS f FROM subscriptions WHERE id = $1" }, [id]))[0]?.f ?? null, { timeout: 5000 }).not.toBeNull();
      clock.advance(5 * 24 * 3600_000 + 60_000);
      await book();
      await expect
        .poll(async () => (await t.app.inject({ method: "GET", url: `/v1/subscriptions/${id}`, headers: manager })).json<{ status: string }>().status, { timeout: 5000 })
        .toBe("disabled");
      const log = await t.app.inject({ method: "GET", url: `/v1/subscriptions/${id}/deliveries?limit=2`, headers: manager });
      expect(log.statusCode).toBe(200);
      const page = log.json<{ deliveries: { status: number | string }[]; nextCursor: string | null }>();
      expect(page.deliveries.map((d) => d.status)).toEqual([500, 500]);
      expect(page.nextCursor).not.toBeNull();

      const enabled = await t.app.inject({ method: "POST", url: `/v1/subscriptions/${id}/enable`, headers: manager });
      expect(enabled.json<{ status: string }>().status).toBe("active");
      expect((await t.app.inject({ method: "DELETE", url: `/v1/subscriptions/${id}`, headers: manager })).statusCode).toBe(204);
      expect((await t.app.inject({ method: "GET", url: `/v1/subscriptions/${id}`, headers: manager })).statusCode).toBe(404);
    } finally {
      await failing.close();
    }
  });
});
