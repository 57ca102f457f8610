import { randomUUID } from "node:crypto";
import pg from "pg";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EVENT_TYPES } from "../../src/domain/outbound-events.js";
import { startApp, type TestApp, TestClock } from "../helpers/app.js";
import { bearer, OPERATOR_SCOPES, scheduledEvent, signedDelivery, userJwt } from "../helpers/fixtures.js";
import { createMigratedDatabase, dropDatabase } from "../helpers/postgres.js";
import { type ReceivedEvent, type Receiver, startReceiver } from "../helpers/receiver.js";

/**
 * The subscriptions API (API.md §9): creating, reading, deleting, rotating
 * and enabling subscriptions, the deliveries log, the scope every route
 * needs, and the URL rules checked at creation. One database of this file's
 * own, so that no other file's dispatcher delivers its events and no other
 * file's moved clock fires its timed events.
 */

const SCOPE = "subscriptions:manage";
const RETRY_SECONDS = 2;
const ISO_Z = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SECRET = /^whsec_[A-Za-z0-9+/]{43}=$/;
const DELIVERY_FIELDS = ["id", "eventId", "type", "attempt", "at", "status", "durationMs", "nextAttemptAt", "error"];

const seconds = (date: Date) => Math.floor(date.getTime() / 1000);

/** A caller with scope subscriptions:manage whose JWT is valid at `now` (the app's clock, which a test may move). */
const manager = (now: Date = new Date()) =>
  bearer(userJwt("ops-1", { scope: SCOPE, claims: { iat: seconds(now), exp: seconds(now) + 600 } }));

type Answer = { statusCode: number; headers: Record<string, unknown>; body: string; json(): unknown };

function expectProblem(res: Answer, status: number, code: string, context = "") {
  expect(res.statusCode, `${context} ${res.body}`).toBe(status);
  expect(res.headers["content-type"], context).toContain("application/problem+json");
  expect(res.json(), context).toMatchObject({ status, code });
}

/** Polls `probe` until it returns something truthy, for at most `timeoutMs`. */
async function eventually<T>(what: string, probe: () => Promise<T | undefined | null | false>, timeoutMs = 10_000): Promise<T> {
  const giveUpAt = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > giveUpAt) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Whether `signature` alone, in the delivery's headers, verifies with `secret`. */
function signatureVerifies(event: ReceivedEvent, signature: string, secret: string): boolean {
  try {
    new Webhook(secret).verify(event.request.body, {
      "webhook-id": event.webhookId,
      "webhook-timestamp": String(event.request.headers["webhook-timestamp"]),
      "webhook-signature": signature,
    });
    return true;
  } catch {
    return false;
  }
}

/** Every route of §9, with an id where it takes one, and a body the route would accept. */
const routes = (id: string) => [
  { method: "POST" as const, url: "/v1/subscriptions", payload: { url: "https://93.184.215.14/x" } },
  { method: "GET" as const, url: "/v1/subscriptions" },
  { method: "GET" as const, url: `/v1/subscriptions/${id}` },
  { method: "DELETE" as const, url: `/v1/subscriptions/${id}` },
  { method: "POST" as const, url: `/v1/subscriptions/${id}/rotate-secret`, payload: {} },
  { method: "POST" as const, url: `/v1/subscriptions/${id}/enable`, payload: {} },
  { method: "GET" as const, url: `/v1/subscriptions/${id}/deliveries` },
];

let database: { name: string; url: string };
let sql: pg.Client;

beforeAll(async () => {
  database = await createMigratedDatabase();
  sql = new pg.Client({ connectionString: database.url });
  await sql.connect();
});
afterAll(async () => {
  await sql?.end();
  if (database) await dropDatabase(database.name);
});

describe("subscriptions API, with private targets refused (the default)", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp({ DATABASE_URL: database.url });
  });
  afterAll(async () => {
    await t?.close();
  });

  const create = (payload: object) => t.app.inject({ method: "POST", url: "/v1/subscriptions", headers: manager(), payload });
  const count = async () => Number((await sql.query<{ n: string }>("SELECT count(*) AS n FROM subscriptions")).rows[0]?.n);

  it("answers 401 unauthenticated without a JWT on every route", async () => {
    for (const route of routes(randomUUID())) {
      const res = await t.app.inject(route);
      expectProblem(res, 401, "unauthenticated", `${route.method} ${route.url}`);
    }
    expect(await count()).toBe(0);
  });

  it("answers 403 insufficient_scope to a valid JWT without subscriptions:manage on every route", async () => {
    const operator = bearer(userJwt("ops-1", { scope: OPERATOR_SCOPES }));
    for (const route of routes(randomUUID())) {
      const res = await t.app.inject({ ...route, headers: operator });
      expectProblem(res, 403, "insufficient_scope", `${route.method} ${route.url}`);
    }
    expect(await count()).toBe(0);
  });

  it("answers 404 not_found on every route with an id, for an unknown UUID and for an id that is not a UUID", async () => {
    for (const id of [randomUUID(), "not-a-uuid", "12345"]) {
      for (const route of routes(id).filter((r) => r.url !== "/v1/subscriptions")) {
        const res = await t.app.inject({ ...route, headers: manager() });
        expectProblem(res, 404, "not_found", `${route.method} ${route.url}`);
      }
    }
  });

  it("refuses with 422 invalid_subscription_url a URL that is not https, carries credentials, or is or resolves to a non-public address", async () => {
    const refused = [
      "http://93.184.215.14/x",
      "https://user:pass@93.184.215.14/x",
      "https://127.0.0.1/x",
      "https://127.0.0.1:8443/x",
      "https://[::1]/x",
      "https://localhost/x",
      "https://10.0.0.1/x",
      "https://172.16.0.1/x",
      "https://192.168.1.1/x",
      "https://169.254.169.254/latest/meta-data/",
      "https://100.100.100.200/x",
      "https://[fc00::1]/x",
      "https://[fd00:ec2::254]/x",
      "https://[fe80::1]/x",
      "https://0.0.0.0/x",
      "https://[::ffff:127.0.0.1]/x",
      "https://does-not-exist.invalid/x",
      "not a url",
      "/relative/path",
    ];
    for (const url of refused) {
      expectProblem(await create({ url }), 422, "invalid_subscription_url", url);
    }
    expect(await count()).toBe(0);
  });

  it("accepts a literal public address", async () => {
    const res = await create({ url: "https://93.184.215.14/x", events: ["participant.ejected"] });
    expect(res.statusCode, res.body).toBe(201);
    const { id } = res.json() as { id: string };
    // Deleted at once, so that nothing ever tries to deliver there.
    const deleted = await t.app.inject({ method: "DELETE", url: `/v1/subscriptions/${id}`, headers: manager() });
    expect(deleted.statusCode).toBe(204);
    expect(await count()).toBe(0);
  });

  it("refuses an unknown event type and an empty events list with 400 invalid_request", async () => {
    for (const events of [["appointment.exploded"], ["token.revoked", "nope"], []]) {
      expectProblem(await create({ url: "https://93.184.215.14/x", events }), 400, "invalid_request", JSON.stringify(events));
    }
    expect(await count()).toBe(0);
  });

  it("lists every subscriptions route in /openapi.json under the tag subscriptions", async () => {
    const res = await t.app.inject({ method: "GET", url: "/openapi.json" });
    const { paths } = res.json() as { paths: Record<string, Record<string, { tags?: string[] }>> };
    const expected: [string, string][] = [
      ["/v1/subscriptions", "post"],
      ["/v1/subscriptions", "get"],
      ["/v1/subscriptions/{id}", "get"],
      ["/v1/subscriptions/{id}", "delete"],
      ["/v1/subscriptions/{id}/rotate-secret", "post"],
      ["/v1/subscriptions/{id}/enable", "post"],
      ["/v1/subscriptions/{id}/deliveries", "get"],
    ];
    for (const [path, method] of expected) {
      expect(paths[path]?.[method]?.tags, `${method} ${path}`).toContain("subscriptions");
    }
  });
});

describe("subscriptions API, with private targets allowed (SUBSCRIPTIONS_ALLOW_PRIVATE_TARGETS=true)", () => {
  const clock = new TestClock();
  let t: TestApp;
  let sink: Receiver;
  const receivers: Receiver[] = [];

  beforeAll(async () => {
    sink = await startReceiver();
    t = await startApp(
      { DATABASE_URL: database.url, SUBSCRIPTIONS_ALLOW_PRIVATE_TARGETS: "true", SUBSCRIPTION_RETRY_SCHEDULE: `${RETRY_SECONDS}` },
      { clock },
    );
    await t.app.ready();
  });
  afterAll(async () => {
    await t?.close();
    await Promise.all([sink, ...receivers].filter(Boolean).map((r) => r.close()));
  });

  const as = () => manager(clock.now());

  async function receiver() {
    const r = await startReceiver();
    receivers.push(r);
    return r;
  }

  interface Created {
    id: string;
    url: string;
    events: string[];
    description: string | null;
    status: string;
    createdAt: string;
    failingSince: string | null;
    disabledAt: string | null;
    secret: string;
  }

  const create = (payload: object) => t.app.inject({ method: "POST", url: "/v1/subscriptions", headers: as(), payload });

  /** A subscription of `r` to `events`, whose secret `r` verifies with. */
  async function subscribe(r: Receiver, events: string[] = ["appointment.scheduled"]): Promise<Created> {
    const res = await create({ url: `${r.url}/events`, events });
    expect(res.statusCode, res.body).toBe(201);
    const created = res.json() as Created;
    r.secrets.push(created.secret);
    return created;
  }

  /** An appointment scheduled two hours ahead of the app's clock: one appointment.scheduled event. */
  async function schedule(): Promise<string> {
    const event = scheduledEvent({ startsInMinutes: 120, now: clock.now() });
    const delivery = signedDelivery(event);
    const res = await t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: delivery.headers, payload: delivery.payload });
    expect(res.statusCode, res.body).toBe(200);
    return event.data.externalId;
  }

  const read = (id: string) => t.app.inject({ method: "GET", url: `/v1/subscriptions/${id}`, headers: as() });
  const deliveries = (id: string, query = "") =>
    t.app.inject({ method: "GET", url: `/v1/subscriptions/${id}/deliveries${query}`, headers: as() });

  it("creates a subscription (201, no-store) with its secret; omitted events mean every type; http on loopback is accepted", async () => {
    const before = clock.now().getTime();
    const res = await create({ url: `${sink.url}/all`, description: "CRM" });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.headers["cache-control"]).toBe("no-store");
    const body = res.json() as Created;
    expect(body).toEqual({
      id: expect.stringMatching(UUID),
      url: `${sink.url}/all`,
      events: [...EVENT_TYPES],
      description: "CRM",
      status: "active",
      createdAt: expect.stringMatching(ISO_Z),
      failingSince: null,
      disabledAt: null,
      secret: expect.stringMatching(SECRET),
    });
    expect(Date.parse(body.createdAt)).toBeGreaterThanOrEqual(before - 1);
    expect(Date.parse(body.createdAt)).toBeLessThanOrEqual(clock.now().getTime());

    const listed = await create({ url: `${sink.url}/some`, events: ["token.revoked", "appointment.cancelled"] });
    expect(listed.statusCode, listed.body).toBe(201);
    expect(listed.headers["cache-control"]).toBe("no-store");
    const some = listed.json() as Created;
    expect(some).toMatchObject({ events: ["token.revoked", "appointment.cancelled"], description: null, status: "active" });
    expect(some.secret).toMatch(SECRET);
    expect(some.secret).not.toBe(body.secret);
    expect(some.id).not.toBe(body.id);
  });

  it("shows the secret only when created or rotated: never in GET, the list, the database or the audit trail", async () => {
    const r = await receiver();
    const created = await subscribe(r, ["participant.ejected"]);
    const rotated = await t.app.inject({ method: "POST", url: `/v1/subscriptions/${created.id}/rotate-secret`, headers: as() });
    expect(rotated.statusCode, rotated.body).toBe(200);
    const secrets = [created.secret, (rotated.json() as Created).secret];
    // The secrets' own bytes too, without the whsec_ prefix.
    const needles = [...secrets, ...secrets.map((s) => s.slice("whsec_".length))];
    const expectNoSecret = (text: string, where: string) => {
      for (const needle of needles) expect(text.includes(needle), `${where} holds a secret`).toBe(false);
    };

    const one = await read(created.id);
    expect(one.statusCode).toBe(200);
    expect(one.json()).not.toHaveProperty("secret");
    expect(one.json()).toMatchObject({ id: created.id, url: created.url, events: ["participant.ejected"] });
    expectNoSecret(one.body, "GET /v1/subscriptions/{id}");

    const list = await t.app.inject({ method: "GET", url: "/v1/subscriptions", headers: as() });
    expect(list.statusCode).toBe(200);
    const { subscriptions } = list.json() as { subscriptions: object[] };
    expect(subscriptions.length).toBeGreaterThan(0);
    for (const item of subscriptions) expect(item).not.toHaveProperty("secret");
    expectNoSecret(list.body, "GET /v1/subscriptions");

    const rows = await sql.query<{ line: string; secret_encrypted: string; previous_secret_encrypted: string | null }>(
      "SELECT to_jsonb(s)::text AS line, secret_encrypted, previous_secret_encrypted FROM subscriptions s WHERE id = $1",
      [created.id],
    );
    expect(rows.rows).toHaveLength(1);
    const [row] = rows.rows;
    expectNoSecret(row?.line ?? "", "the subscriptions row");
    expect(row?.secret_encrypted.startsWith("v1.")).toBe(true);
    expect(row?.previous_secret_encrypted?.startsWith("v1.")).toBe(true);
    const everything = await sql.query<{ line: string }>("SELECT to_jsonb(s)::text AS line FROM subscriptions s");
    for (const { line } of everything.rows) expectNoSecret(line, "the subscriptions table");

    const audit = await sql.query<{ type: string; line: string }>(
      "SELECT type, to_jsonb(a)::text AS line FROM audit_events a WHERE external_id = '' AND type LIKE 'subscription.%' AND detail->>'subscriptionId' = $1",
      [created.id],
    );
    expect(audit.rows.map((a) => a.type).sort()).toEqual(["subscription.created", "subscription.secret_rotated"]);
    const allAudit = await sql.query<{ line: string }>(
      "SELECT to_jsonb(a)::text AS line FROM audit_events a WHERE external_id = '' AND type LIKE 'subscription.%'",
    );
    for (const { line } of allAudit.rows) expectNoSecret(line, "the audit trail");
  });

  it("reads one subscription by id and lists those created; 404 not_found for an unknown UUID and for an id that is not a UUID", async () => {
    const r = await receiver();
    const a = await subscribe(r, ["participant.ejected"]);
    const b = await subscribe(r, ["participant.left"]);
    const one = await read(a.id);
    expect(one.statusCode).toBe(200);
    const { secret: _secret, ...view } = a;
    expect(one.json()).toEqual(view);

    const list = await t.app.inject({ method: "GET", url: "/v1/subscriptions", headers: as() });
    expect(list.statusCode).toBe(200);
    const ids = (list.json() as { subscriptions: { id: string }[] }).subscriptions.map((s) => s.id);
    expect(ids).toEqual(expect.arrayContaining([a.id, b.id]));

    expectProblem(await read(randomUUID()), 404, "not_found", "unknown UUID");
    expectProblem(await read("not-a-uuid"), 404, "not_found", "not a UUID");
  });

  it("deletes a subscription (204, no body): then GET and DELETE are 404, and its pending retries stop with its rows", async () => {
    const r = await receiver();
    r.faults.fail(500);
    const s = await subscribe(r);
    await schedule();
    // The first attempt failed and was recorded: the delivery waits for its retry.
    const [firstAttempt] = await eventually("the first failed attempt", async () => {
      const log = await deliveries(s.id);
      const items = (log.json() as { deliveries: { status: unknown; nextAttemptAt: string | null }[] }).deliveries;
      return items.length > 0 ? items : undefined;
    });
    expect(firstAttempt).toMatchObject({ status: 500, attempt: 1, nextAttemptAt: expect.stringMatching(ISO_Z) });
    expect(r.requests).toHaveLength(1);
    const failedAt = Date.now();

    const deleted = await t.app.inject({ method: "DELETE", url: `/v1/subscriptions/${s.id}`, headers: as() });
    expect(deleted.statusCode).toBe(204);
    expect(deleted.rawPayload.length).toBe(0);
    expectProblem(await read(s.id), 404, "not_found", "GET after DELETE");
    expectProblem(await t.app.inject({ method: "DELETE", url: `/v1/subscriptions/${s.id}`, headers: as() }), 404, "not_found", "DELETE again");
    expectProblem(await deliveries(s.id), 404, "not_found", "deliveries after DELETE");

    const left = await sql.query<{ deliveries: number; attempts: number }>(
      `SELECT (SELECT count(*)::int FROM subscription_deliveries WHERE subscription_id = $1) AS deliveries,
              (SELECT count(*)::int FROM subscription_attempts WHERE subscription_id = $1) AS attempts`,
      [s.id],
    );
    expect(left.rows[0]).toEqual({ deliveries: 0, attempts: 0 });

    // Bounded: the retry was due RETRY_SECONDS after the failure; the dispatcher looks every second.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, failedAt + RETRY_SECONDS * 1000 + 2000 - Date.now())));
    expect(r.requests).toHaveLength(1);
  });

  it("enables an active subscription (200, still active) and a disabled one (200 active, disabledAt null), which receives events again", async () => {
    const r = await receiver();
    const s = await subscribe(r);
    const enable = () => t.app.inject({ method: "POST", url: `/v1/subscriptions/${s.id}/enable`, headers: as() });

    const active = await enable();
    expect(active.statusCode, active.body).toBe(200);
    expect(active.json()).toMatchObject({ id: s.id, status: "active", disabledAt: null });
    expect(active.json()).not.toHaveProperty("secret");

    await sql.query("UPDATE subscriptions SET status = 'disabled', disabled_at = now() WHERE id = $1", [s.id]);
    expect((await read(s.id)).json()).toMatchObject({ status: "disabled", disabledAt: expect.stringMatching(ISO_Z) });

    const enabled = await enable();
    expect(enabled.statusCode, enabled.body).toBe(200);
    expect(enabled.json()).toMatchObject({ id: s.id, status: "active", disabledAt: null, failingSince: null });
    expect((await read(s.id)).json()).toMatchObject({ status: "active", disabledAt: null });

    const appointmentId = await schedule();
    const [event] = (await r.waitFor((events) => events.some((e) => e.data.appointmentId === appointmentId))).filter(
      (e) => e.data.appointmentId === appointmentId,
    );
    expect(event).toMatchObject({ type: "appointment.scheduled", verified: true });

    const audit = await sql.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM audit_events WHERE external_id = '' AND type = 'subscription.enabled' AND detail->>'subscriptionId' = $1",
      [s.id],
    );
    expect(audit.rows[0]?.n).toBe(2);
  });

  it("pages the deliveries log newest first, limit at a time, with no gap or duplicate, until nextCursor is null", async () => {
    const N = 7;
    const r = await receiver();
    const s = await subscribe(r);
    for (let i = 0; i < N; i += 1) await schedule();
    await r.waitFor((events) => events.length >= N);
    // An attempt is recorded once its answer came back: wait for all of them.
    const all = await eventually("all attempts recorded", async () => {
      const res = await deliveries(s.id, "?limit=200");
      const body = res.json() as { deliveries: Record<string, unknown>[]; nextCursor: string | null };
      return body.deliveries.length >= N ? body : undefined;
    });
    expect(all.deliveries).toHaveLength(N);
    expect(all.nextCursor).toBeNull();

    const pages: Record<string, unknown>[][] = [];
    let cursor: string | null = null;
    do {
      const res = await deliveries(s.id, `?limit=3${cursor === null ? "" : `&after=${cursor}`}`);
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json() as { deliveries: Record<string, unknown>[]; nextCursor: string | null };
      pages.push(body.deliveries);
      cursor = body.nextCursor;
      if (cursor !== null) expect(cursor).toBe(body.deliveries.at(-1)?.id);
    } while (cursor !== null && pages.length < 10);
    expect(pages.map((p) => p.length)).toEqual([3, 3, 1]);

    const items = pages.flat();
    expect(items.map((i) => i.id)).toEqual(all.deliveries.map((i) => i.id));
    const ids = items.map((i) => BigInt(i.id as string));
    for (let i = 1; i < ids.length; i += 1) expect((ids[i] as bigint) < (ids[i - 1] as bigint)).toBe(true);
    // Newest first is the order attempts were recorded in (their ids); `at` is read before the write, so
    // attempts made side by side can be recorded a few ms out of `at` order: not asserted here.

    for (const item of items) {
      expect(Object.keys(item).sort()).toEqual([...DELIVERY_FIELDS].sort());
      expect(item).toEqual({
        id: expect.stringMatching(/^[0-9]+$/),
        eventId: expect.stringMatching(/^evt_[0-9a-f]{32}$/),
        type: "appointment.scheduled",
        attempt: 1,
        at: expect.stringMatching(ISO_Z),
        status: 200,
        durationMs: expect.any(Number),
        nextAttemptAt: null,
        error: null,
      });
      expect(Number.isInteger(item.durationMs) && (item.durationMs as number) >= 0).toBe(true);
    }
    expect(new Set(items.map((i) => i.eventId))).toEqual(new Set(r.received.map((e) => e.webhookId)));
    expect(r.received.every((e) => e.verified)).toBe(true);

    for (const query of ["?limit=0", "?limit=201", "?after=abc"]) {
      expectProblem(await deliveries(s.id, query), 400, "invalid_request", query);
    }
  });

  it("after rotate-secret signs each delivery with the old and the new secret for 24 h, then with the new one only", async () => {
    const r = await receiver();
    const s = await subscribe(r);
    const res = await t.app.inject({ method: "POST", url: `/v1/subscriptions/${s.id}/rotate-secret`, headers: as(), payload: {} });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers["cache-control"]).toBe("no-store");
    const rotated = res.json() as Created;
    expect(rotated).toMatchObject({ id: s.id, url: s.url, status: "active", secret: expect.stringMatching(SECRET) });
    expect(rotated.secret).not.toBe(s.secret);
    const [oldSecret, newSecret] = [s.secret, rotated.secret];
    r.secrets.push(newSecret);

    const deliveredFor = async (appointmentId: string) => {
      await r.waitFor((events) => events.some((e) => e.data.appointmentId === appointmentId));
      return r.of(appointmentId)[0] as ReceivedEvent;
    };

    const during = await deliveredFor(await schedule());
    expect(during.signatures).toHaveLength(2);
    const byOld = during.signatures.filter((sig) => signatureVerifies(during, sig, oldSecret));
    const byNew = during.signatures.filter((sig) => signatureVerifies(during, sig, newSecret));
    expect(byOld).toHaveLength(1);
    expect(byNew).toHaveLength(1);
    expect(byOld[0]).not.toBe(byNew[0]);

    clock.advance(24 * 3600_000 + 60_000);
    const after = await deliveredFor(await schedule());
    expect(after.signatures).toHaveLength(1);
    expect(signatureVerifies(after, after.signatures[0] as string, newSecret)).toBe(true);
    expect(signatureVerifies(after, after.signatures[0] as string, oldSecret)).toBe(false);
  });
});
