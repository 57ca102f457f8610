// Scaffolding shared by the end-to-end flow tests (test/providers/*-flow.test.ts,
// and the presence and timed-events tests that run the same way): a database
// of the file's own, the app on a TestClock, a subscriber verifying what it
// receives, and the requests a scheduler, a participant and an operator make.
// Everything a helper needs is a parameter: each file owns its app, clock and
// receiver, and the helpers hold no state between tests.
import type { LightMyRequestResponse } from "fastify";
import pg from "pg";
import { expect } from "vitest";
import type { TestApp, TestClock } from "./app.js";
import { bearer, type ScheduleOptions, scheduledEvent, signedDelivery, userJwt } from "./fixtures.js";
import { dropDatabase } from "./postgres.js";
import type { ReceivedEvent, Receiver } from "./receiver.js";

export const SECOND = 1000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;

/** API.md §10: a participant is removed within 5 s of the revocation while the provider answers. */
export const EJECT_WITHIN_MS = 5 * SECOND;
/**
 * How long a test waits for a removal before it looks at how late it was:
 * longer than the bound, so that a late removal fails on the bound's
 * assertion (which says by how much) rather than on a timeout.
 */
export const EJECT_WAIT_MS = 9 * SECOND;

/** The events a provider's presence reports and removals lead to (API.md §9, §10). */
export const PRESENCE_EVENTS = ["participant.joined", "participant.left", "participant.ejected"];

export type Headers = Record<string, string>;

/** One entry of an appointment's audit trail (GET /v1/appointments/:id/events). */
export interface AuditEntry {
  at: string;
  type: string;
  actor: string;
  outcome: string;
  detail: Record<string, unknown>;
}

/**
 * The app's environment for a flow test: the file's own database, the
 * provider's settings (which may override these), and what every flow needs:
 * the session reconciler polling often (the tests skip its backoff with the
 * TestClock, then wait only for its next pass), no rate limit on join tokens
 * (a file asks for many from one address), and subscriptions allowed to a
 * receiver on loopback.
 */
export const flowEnv = (databaseUrl: string, provider: Record<string, string | undefined>): Record<string, string | undefined> => ({
  DATABASE_URL: databaseUrl,
  SESSION_RECONCILE_INTERVAL_MS: "100",
  RATE_LIMIT_JOIN_PER_MINUTE: "0",
  SUBSCRIPTIONS_ALLOW_PRIVATE_TARGETS: "true",
  ...provider,
});

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `probe` every `intervalMs` until it answers something other than
 * `undefined` or `false`, and resolves with that answer; rejects with
 * "`what`: not within `timeoutMs` ms" after that. The background workers
 * (reconciler, ejections, timed events, dispatcher) run on their own
 * schedule, so a test waits for their effect, bounded, rather than a fixed
 * time that is either too short on a loaded machine or wasted on an idle one.
 */
export async function until<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 10_000,
  intervalMs = 25,
): Promise<T> {
  const giveUpAt = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > giveUpAt) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(intervalMs);
  }
}

/**
 * A user's JWT issued at the test clock's time: the app checks `iat`/`exp`
 * against its own clock, which the tests move forward, so a JWT made at the
 * wall clock's time would expire (or not be valid yet) as far as the app is
 * concerned.
 */
export function userJwtAt(clock: TestClock, sub: string, scope?: string, lifetimeSeconds = 600): string {
  const iat = Math.floor(clock.now().getTime() / SECOND);
  return userJwt(sub, { ...(scope ? { scope } : {}), claims: { iat, exp: iat + lifetimeSeconds } });
}

/** {@link userJwtAt} as the Authorization header the API expects. */
export const bearerAt = (clock: TestClock, sub: string, scope?: string, lifetimeSeconds = 600): Headers =>
  bearer(userJwtAt(clock, sub, scope, lifetimeSeconds));

/** An appointment.scheduled event with times relative to the test clock (not the wall clock, which it has left behind). */
export const eventAt = (clock: TestClock, options: ScheduleOptions = {}) => scheduledEvent({ now: clock.now(), ...options });

/** The scheduler's signed delivery of `body` to the appointments webhook. */
export function deliver(app: TestApp, body: unknown): Promise<LightMyRequestResponse> {
  const delivery = signedDelivery(body);
  return app.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: delivery.headers, payload: delivery.payload });
}

/** A participant's request for a join token; the answer is left to the test, for which a refusal may be the point. */
export const requestJoinToken = (app: TestApp, externalId: string, headers: Headers, body?: object): Promise<LightMyRequestResponse> =>
  app.app.inject({
    method: "POST",
    url: `/v1/appointments/${encodeURIComponent(externalId)}/join-token`,
    headers,
    ...(body !== undefined ? { payload: body } : {}),
  });

/** The appointment as an operator reads it (200). */
export async function readAppointment(app: TestApp, externalId: string, headers: Headers) {
  const res = await app.app.inject({ method: "GET", url: `/v1/appointments/${encodeURIComponent(externalId)}`, headers });
  expect(res.statusCode).toBe(200);
  return res.json();
}

/** The appointment's audit trail as an operator reads it (200), oldest first; `limit` when the default page is too short. */
export async function auditOf(app: TestApp, externalId: string, headers: Headers, limit?: number): Promise<AuditEntry[]> {
  const query = limit === undefined ? "" : `?limit=${limit}`;
  const res = await app.app.inject({ method: "GET", url: `/v1/appointments/${encodeURIComponent(externalId)}/events${query}`, headers });
  expect(res.statusCode).toBe(200);
  return res.json().events;
}

/** The deliveries of one type about one appointment: the file's receiver gets the events of every test in the file. */
export const eventsOf = (receiver: Pick<Receiver, "of">, externalId: string, type: string): ReceivedEvent[] =>
  receiver.of(externalId).filter((event) => event.type === type);

/**
 * Subscribes the receiver to `events` (API.md §9) and hands it the
 * subscription's secret, so that it can verify every delivery. The
 * subscription sees the whole database: that is why each file that makes one
 * has a database of its own.
 */
export async function subscribe(
  app: TestApp,
  headers: Headers,
  receiver: Pick<Receiver, "url" | "secrets">,
  subscription: { path?: string; events: string[]; description: string },
): Promise<void> {
  const created = await app.app.inject({
    method: "POST",
    url: "/v1/subscriptions",
    headers,
    payload: { url: `${receiver.url}${subscription.path ?? ""}`, events: subscription.events, description: subscription.description },
  });
  expect(created.statusCode).toBe(201);
  receiver.secrets.push(created.json().secret);
}

/** A client on the file's database, for what the API does not show (the outbox, ejection jobs, timed-event state). */
export async function connectSql(url: string): Promise<pg.Client> {
  const sql = new pg.Client({ connectionString: url });
  await sql.connect();
  return sql;
}

/**
 * How many of the appointment's events have not reached their subscribers
 * yet: still in the outbox, or fanned out and not delivered. Zero means the
 * receiver has everything written so far, so a test can assert that
 * something was *not* emitted without waiting a fixed time.
 */
export async function undeliveredCount(sql: pg.Client, externalId: string): Promise<number | undefined> {
  const { rows } = await sql.query<{ n: number }>(
    `SELECT (SELECT count(*) FROM outbox_events WHERE external_id = $1)::int
          + (SELECT count(*) FROM subscription_deliveries WHERE external_id = $1 AND status <> 'delivered')::int AS n`,
    [externalId],
  );
  return rows[0]?.n;
}

/**
 * Closes what a file's `beforeAll` started, skipping what it never got to
 * (a failed setup must not hide its error behind one from the teardown): the
 * database client and the app first, since a database cannot be dropped while
 * connections to it are open, and the app's workers must stop before the
 * servers they call go away; the database last.
 */
export async function closeFlow(parts: {
  sql?: pg.Client | undefined;
  app?: TestApp | undefined;
  receiver?: { close(): Promise<void> } | undefined;
  fake?: { close(): Promise<void> } | undefined;
  database?: { name: string } | undefined;
}): Promise<void> {
  await parts.sql?.end();
  await parts.app?.close();
  await parts.receiver?.close();
  await parts.fake?.close();
  if (parts.database) await dropDatabase(parts.database.name);
}
