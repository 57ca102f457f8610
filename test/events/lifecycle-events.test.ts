import type { LightMyRequestResponse } from "fastify";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp, TestClock } from "../helpers/app.js";
import { type FakeGenesys, startFakeGenesys } from "../helpers/fake-genesys.js";
import {
  bearer,
  cancelledEvent,
  OPERATOR_SCOPES,
  type ScheduleOptions,
  scheduledEvent,
  signedDelivery,
  uniqueId,
  userJwt,
} from "../helpers/fixtures.js";
import { createMigratedDatabase, dropDatabase } from "../helpers/postgres.js";
import { type ReceivedEvent, type Receiver, startReceiver } from "../helpers/receiver.js";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy.js";

/**
 * API.md §9: every change of an appointment emits its lifecycle events once,
 * with the documented `data`, signed so that a subscriber verifying with the
 * `standardwebhooks` library accepts them; a change that was rolled back
 * emits nothing. Real Postgres (a database of this file's own, so that no
 * other file's workers deliver to or fire for it), a real receiver on loopback.
 */

const DAY_S = 86_400;
const MINUTE_MS = 60_000;
const manager = bearer(userJwt("ops-events", { scope: "subscriptions:manage", expiresInSeconds: DAY_S }));
const operator = bearer(userJwt("ops-1", { scope: OPERATOR_SCOPES, expiresInSeconds: DAY_S }));
const user = (sub: string) => bearer(userJwt(sub, { expiresInSeconds: DAY_S }));

/** Emitted by the timed-events worker for appointments whose window is open: not the subject of these tests. */
const TIMED = new Set(["join_window.opened", "join_window.closed", "appointment.no_show"]);
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

type Delivery = ReturnType<typeof signedDelivery>;
type Appointment = Record<string, unknown> & {
  externalId: string;
  agent: { id: string };
  customer: { id: string };
  session: { provider: string; id: string | null; status: string };
  join: { agentOpensAt: string; customerOpensAt: string; closesAt: string };
};
interface Issued {
  token: string;
  tokenId: string;
  role: string;
  notBefore: string;
  expiresAt: string;
}

const send = (t: TestApp, delivery: Delivery) =>
  t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: delivery.headers, payload: delivery.payload });

const readAppointment = async (t: TestApp, externalId: string): Promise<Appointment> => {
  const res = await t.app.inject({ method: "GET", url: `/v1/appointments/${encodeURIComponent(externalId)}`, headers: operator });
  expect(res.statusCode).toBe(200);
  return res.json();
};

const joinRequest = (t: TestApp, externalId: string, userId: string, body?: object) =>
  t.app.inject({
    method: "POST",
    url: `/v1/appointments/${encodeURIComponent(externalId)}/join-token`,
    headers: user(userId),
    ...(body !== undefined ? { payload: body } : {}),
  });

async function subscribe(t: TestApp, receiver: Receiver): Promise<string> {
  const res = await t.app.inject({ method: "POST", url: "/v1/subscriptions", headers: manager, payload: { url: `${receiver.url}/events` } });
  expect(res.statusCode).toBe(201);
  const { secret } = res.json() as { secret: string };
  receiver.secrets.push(secret);
  return secret;
}

/**
 * What a receiver got for the changes of a test, change by change: `emitted`
 * waits until everything written for the appointment so far has been
 * delivered (nothing left in the outbox, no delivery still pending), then
 * answers the events that arrived since the previous call, in `data.sequence`
 * order, after checking what every delivery must be: verified with the
 * subscription's secret, about this appointment, its sequence above every
 * earlier change's, `at` a UTC instant, no token or secret anywhere.
 */
function eventLog(receiver: Receiver, sql: () => pg.Client, secrets: () => string[]) {
  const tokens: string[] = [];
  const consumed = new Map<string, ReceivedEvent[]>();

  const undelivered = async (externalId: string) => {
    const { rows } = await sql().query<{ n: number }>(
      `SELECT (SELECT count(*) FROM outbox_events WHERE external_id = $1)::int
            + (SELECT count(*) FROM subscription_deliveries WHERE external_id = $1 AND status <> 'delivered')::int AS n`,
      [externalId],
    );
    return rows[0]?.n;
  };

  const changeEvents = (externalId: string) => receiver.of(externalId).filter((event) => !TIMED.has(event.type));

  async function emitted(externalId: string): Promise<ReceivedEvent[]> {
    await expect.poll(() => undelivered(externalId), { timeout: 10_000, interval: 50 }).toBe(0);
    const earlier = consumed.get(externalId) ?? [];
    const seen = new Set(earlier.map((event) => event.webhookId));
    const fresh = changeEvents(externalId)
      .filter((event) => !seen.has(event.webhookId))
      .sort((a, b) => a.data.sequence - b.data.sequence);
    let last = earlier.reduce((max, event) => Math.max(max, event.data.sequence), 0);
    for (const event of fresh) {
      expect(event.verified, event.type).toBe(true);
      expect(event.webhookId).toMatch(/^evt_[0-9a-f]{32}$/);
      expect(event.request.method).toBe("POST");
      expect(event.request.headers["content-type"]).toMatch(/^application\/json/);
      expect(event.data.appointmentId).toBe(externalId);
      expect(Number.isInteger(event.data.sequence)).toBe(true);
      expect(event.data.sequence, `${event.type} after the events of the earlier changes`).toBeGreaterThan(last);
      last = event.data.sequence;
      expect(event.data.at).toMatch(ISO_UTC);
      expect(event.timestamp).toMatch(ISO_UTC);
      for (const secret of [...tokens, ...secrets()]) expect(event.request.body).not.toContain(secret);
    }
    consumed.set(externalId, [...earlier, ...fresh]);
    return fresh;
  }

  return {
    emitted,
    /** Join tokens handed out: none may appear in any delivery. */
    tokens,
    /** Per appointment, the events `emitted` answered, change after change. */
    consumed,
    /** Every event received for the appointment, except timed ones. */
    changeEvents,
  };
}

const typesOf = (events: ReceivedEvent[]) => events.map((event) => event.type);

/** The `data` of an event without the members every event has. */
const ownData = (event: ReceivedEvent | undefined) => {
  expect(event).toBeDefined();
  const { appointmentId: _a, sequence: _s, at: _at, ...own } = (event as ReceivedEvent).data;
  return own;
};

describe("lifecycle events of each change (local provider)", () => {
  let database: { name: string; url: string };
  let receiver: Receiver;
  let t: TestApp;
  let sql: pg.Client;
  let secret = "";
  let log: ReturnType<typeof eventLog>;

  beforeAll(async () => {
    database = await createMigratedDatabase();
    sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
    receiver = await startReceiver();
    log = eventLog(receiver, () => sql, () => [secret]);
    t = await startApp({ DATABASE_URL: database.url, SUBSCRIPTIONS_ALLOW_PRIVATE_TARGETS: "true", RATE_LIMIT_JOIN_PER_MINUTE: "0" });
    await t.app.ready();
    secret = await subscribe(t, receiver);
  });
  afterAll(async () => {
    await t?.close();
    await receiver?.close();
    await sql?.end();
    if (database) await dropDatabase(database.name);
  });

  async function schedule(options: ScheduleOptions = {}) {
    const event = scheduledEvent(options);
    const res = await send(t, signedDelivery(event));
    expect(res.statusCode).toBe(200);
    const appointment = res.json().appointment as Appointment;
    return { ...event.data, event, appointment };
  }

  /** A new appointment whose creation events (scheduled, session.ready) have been delivered and checked off. */
  async function scheduled(options: ScheduleOptions = {}) {
    const created = await schedule(options);
    expect(typesOf(await log.emitted(created.externalId))).toEqual(["appointment.scheduled", "session.ready"]);
    return created;
  }

  async function join(externalId: string, userId: string, body?: object): Promise<Issued> {
    const res = await joinRequest(t, externalId, userId, body);
    expect(res.statusCode, res.body).toBe(201);
    const issued = res.json() as Issued;
    log.tokens.push(issued.token);
    return issued;
  }

  /** A join whose token.issued event has been delivered and checked off. */
  async function joined(externalId: string, userId: string): Promise<Issued> {
    const issued = await join(externalId, userId);
    expect(typesOf(await log.emitted(externalId))).toEqual(["token.issued"]);
    return issued;
  }

  const introspect = async (token: string) =>
    (await t.app.inject({ method: "POST", url: "/v1/tokens/introspect", headers: operator, payload: { token } })).json();

  it("a new appointment emits appointment.scheduled with the Appointment as GET shows it, and session.ready with its session", async () => {
    const created = await schedule({ startsInMinutes: 24 * 60 });
    const events = await log.emitted(created.externalId);
    expect(typesOf(events)).toEqual(["appointment.scheduled", "session.ready"]);
    const appointment = await readAppointment(t, created.externalId);
    expect(appointment).toEqual(created.appointment);
    expect(ownData(events[0])).toEqual({ appointment });
    expect(ownData(events[1])).toEqual({ session: appointment.session });
    expect(appointment.session).toMatchObject({ provider: "local", id: expect.stringMatching(/^ses_/), status: "ready" });
    // Both were written by the change's one transaction, at its instant.
    expect(events[1]?.data.at).toBe(events[0]?.data.at);
  });

  it("a reschedule revokes the live agent token (token.revoked, rescheduled) and emits appointment.rescheduled with the new times", async () => {
    const created = await scheduled({ startsInMinutes: 0 });
    const token = await joined(created.externalId, created.agent.id);

    const moved = scheduledEvent({ externalId: created.externalId, startsInMinutes: 5, agentId: created.agent.id, customerId: created.customer.id });
    const res = await send(t, signedDelivery(moved));
    expect(res.statusCode).toBe(200);

    const events = await log.emitted(created.externalId);
    expect(typesOf(events)).toEqual(["token.revoked", "appointment.rescheduled"]);
    expect(ownData(events[0])).toEqual({ tokenId: token.tokenId, userId: created.agent.id, role: "moderator", reason: "rescheduled" });
    const appointment = await readAppointment(t, created.externalId);
    expect(ownData(events[1])).toEqual({ appointment });
    expect(appointment).toEqual(res.json().appointment);
    expect(appointment.startsAt).toBe(new Date(moved.data.startsAt).toISOString());
    expect(appointment.endsAt).toBe(new Date(moved.data.endsAt).toISOString());
  });

  it("a reassignment of the customer revokes the customer's token only (reason reassigned) and emits appointment.reassigned", async () => {
    const created = await scheduled({ startsInMinutes: 0, settings: { waitingRoom: false } });
    const agentToken = await joined(created.externalId, created.agent.id);
    const customerToken = await joined(created.externalId, created.customer.id);

    const newCustomer = uniqueId("cust");
    const res = await send(t, signedDelivery({ ...created.event, data: { ...created.event.data, customer: { id: newCustomer, name: "Sam Roe" } } }));
    expect(res.statusCode).toBe(200);

    const events = await log.emitted(created.externalId);
    expect(typesOf(events)).toEqual(["token.revoked", "appointment.reassigned"]);
    expect(ownData(events[0])).toEqual({
      tokenId: customerToken.tokenId,
      userId: created.customer.id,
      role: "participant",
      reason: "reassigned",
    });
    const appointment = await readAppointment(t, created.externalId);
    expect(ownData(events[1])).toEqual({ appointment });
    expect(appointment.customer).toEqual({ id: newCustomer, name: "Sam Roe" });
    expect((await introspect(agentToken.token)).active).toBe(true);
  });

  it("a settings-only change emits one appointment.updated; a redelivery and an event that changes nothing emit nothing", async () => {
    const created = await scheduled({ startsInMinutes: 24 * 60, settings: { maxParticipants: 2 } });
    const changed = { ...created.event, data: { ...created.event.data, settings: { maxParticipants: 3 } } };
    const delivery = signedDelivery(changed);
    const res = await send(t, delivery);
    expect(res.statusCode).toBe(200);

    const events = await log.emitted(created.externalId);
    expect(typesOf(events)).toEqual(["appointment.updated"]);
    const appointment = await readAppointment(t, created.externalId);
    expect(ownData(events[0])).toEqual({ appointment });
    expect(appointment.settings).toEqual({ maxParticipants: 3, waitingRoom: true, recording: false });
    expect(appointment.startsAt).toBe(created.appointment.startsAt);

    const redelivered = await send(t, delivery);
    expect(redelivered.json()).toEqual(res.json());
    expect(await log.emitted(created.externalId)).toEqual([]);

    const identical = await send(t, signedDelivery(changed));
    expect(identical.statusCode).toBe(200);
    expect(await log.emitted(created.externalId)).toEqual([]);
  });

  it("a cancellation revokes both live tokens (reason cancelled) and emits appointment.cancelled; a rebooking emits appointment.scheduled again", async () => {
    const created = await scheduled({ startsInMinutes: 0, revision: 1 });
    const agentToken = await joined(created.externalId, created.agent.id);
    const customerToken = await joined(created.externalId, created.customer.id);

    const cancelled = await send(t, signedDelivery(cancelledEvent(created.externalId, 2)));
    expect(cancelled.statusCode).toBe(200);
    const events = await log.emitted(created.externalId);
    expect(typesOf(events)).toEqual(["token.revoked", "token.revoked", "appointment.cancelled"]);
    const revoked = events.slice(0, 2).map(ownData);
    expect(revoked).toEqual(
      expect.arrayContaining([
        { tokenId: agentToken.tokenId, userId: created.agent.id, role: "moderator", reason: "cancelled" },
        { tokenId: customerToken.tokenId, userId: created.customer.id, role: "participant", reason: "cancelled" },
      ]),
    );
    const afterCancel = await readAppointment(t, created.externalId);
    expect(afterCancel.status).toBe("cancelled");
    expect(ownData(events[2])).toEqual({ appointment: afterCancel });

    const rebook = scheduledEvent({
      externalId: created.externalId,
      revision: 3,
      startsInMinutes: 24 * 60,
      agentId: created.agent.id,
      customerId: created.customer.id,
    });
    expect((await send(t, signedDelivery(rebook))).statusCode).toBe(200);
    const rebooked = await log.emitted(created.externalId);
    expect(typesOf(rebooked)).toEqual(["appointment.scheduled"]);
    const appointment = await readAppointment(t, created.externalId);
    expect(appointment).toMatchObject({ status: "scheduled", revision: 3 });
    expect(ownData(rebooked[0])).toEqual({ appointment });
  });

  it("a join token emits token.issued as answered; a second one revokes the first (replaced); supersede revokes the other appointment's (superseded)", async () => {
    const agentId = uniqueId("agent");
    const a = await scheduled({ startsInMinutes: 0, agentId });
    const b = await scheduled({ startsInMinutes: 0, agentId });

    const first = await join(a.externalId, agentId);
    const issued = await log.emitted(a.externalId);
    expect(typesOf(issued)).toEqual(["token.issued"]);
    expect(ownData(issued[0])).toEqual({
      tokenId: first.tokenId,
      userId: agentId,
      role: "moderator",
      notBefore: first.notBefore,
      expiresAt: first.expiresAt,
    });
    expect(first.expiresAt).toBe(a.appointment.join.closesAt);

    const second = await join(a.externalId, agentId);
    const replaced = await log.emitted(a.externalId);
    expect(typesOf(replaced)).toEqual(["token.revoked", "token.issued"]);
    expect(ownData(replaced[0])).toEqual({ tokenId: first.tokenId, userId: agentId, role: "moderator", reason: "replaced" });
    expect(ownData(replaced[1])).toMatchObject({ tokenId: second.tokenId, userId: agentId, role: "moderator" });

    // Refused (409 active_elsewhere) without supersede: nothing.
    const refused = await joinRequest(t, b.externalId, agentId);
    expect(refused.statusCode).toBe(409);
    expect(refused.json().code).toBe("active_elsewhere");
    expect(await log.emitted(b.externalId)).toEqual([]);
    expect(await log.emitted(a.externalId)).toEqual([]);

    const elsewhere = await join(b.externalId, agentId, { supersede: true });
    const superseded = await log.emitted(a.externalId);
    expect(typesOf(superseded)).toEqual(["token.revoked"]);
    expect(ownData(superseded[0])).toEqual({ tokenId: second.tokenId, userId: agentId, role: "moderator", reason: "superseded" });
    const inB = await log.emitted(b.externalId);
    expect(typesOf(inB)).toEqual(["token.issued"]);
    expect(ownData(inB[0])).toEqual({
      tokenId: elsewhere.tokenId,
      userId: agentId,
      role: "moderator",
      notBefore: elsewhere.notBefore,
      expiresAt: elsewhere.expiresAt,
    });
  });

  it("a join-token request refused by a rule (425 too_early) emits nothing", async () => {
    const created = await scheduled({ startsInMinutes: 24 * 60 });
    const res = await joinRequest(t, created.externalId, created.agent.id);
    expect(res.statusCode).toBe(425);
    expect(res.json().code).toBe("too_early");
    expect(await log.emitted(created.externalId)).toEqual([]);
    expect(log.changeEvents(created.externalId)).toHaveLength(2);
  });

  it("an operator's revocation emits token.revoked (reason operator) once; revoking it again emits nothing", async () => {
    const created = await scheduled({ startsInMinutes: 0 });
    const token = await joined(created.externalId, created.agent.id);
    const revoke = () => t.app.inject({ method: "POST", url: "/v1/tokens/revoke", headers: operator, payload: { tokenId: token.tokenId } });

    expect((await revoke()).statusCode).toBe(200);
    const events = await log.emitted(created.externalId);
    expect(typesOf(events)).toEqual(["token.revoked"]);
    expect(ownData(events[0])).toEqual({ tokenId: token.tokenId, userId: created.agent.id, role: "moderator", reason: "operator" });

    expect((await revoke()).statusCode).toBe(200);
    expect(await log.emitted(created.externalId)).toEqual([]);
  });

  it("the kill switch emits token.revoked (blocked) per live token and appointment.blocked once; unblock emits appointment.unblocked once; without block, reason operator and no appointment.blocked", async () => {
    const created = await scheduled({ startsInMinutes: 0 });
    const agentToken = await joined(created.externalId, created.agent.id);
    const customerToken = await joined(created.externalId, created.customer.id);
    const path = `/v1/appointments/${encodeURIComponent(created.externalId)}`;

    const blocked = await t.app.inject({ method: "POST", url: `${path}/revoke`, headers: operator, payload: { reason: "abuse reported", block: true } });
    expect(blocked.statusCode).toBe(200);
    expect(blocked.json().revoked).toBe(2);
    const events = await log.emitted(created.externalId);
    expect(typesOf(events)).toEqual(["token.revoked", "token.revoked", "appointment.blocked"]);
    expect(events.slice(0, 2).map(ownData)).toEqual(
      expect.arrayContaining([
        { tokenId: agentToken.tokenId, userId: created.agent.id, role: "moderator", reason: "blocked" },
        { tokenId: customerToken.tokenId, userId: created.customer.id, role: "participant", reason: "blocked" },
      ]),
    );
    const whileBlocked = await readAppointment(t, created.externalId);
    expect(whileBlocked.accessBlocked).toBe(true);
    expect(ownData(events[2])).toEqual({ appointment: whileBlocked, reason: "abuse reported" });

    // Blocking a blocked appointment again changes nothing: no second appointment.blocked (no live token either).
    const twice = await t.app.inject({ method: "POST", url: `${path}/revoke`, headers: operator, payload: { reason: "again", block: true } });
    expect(twice.statusCode).toBe(200);
    expect(await log.emitted(created.externalId)).toEqual([]);

    const unblock = () => t.app.inject({ method: "POST", url: `${path}/unblock`, headers: operator });
    expect((await unblock()).statusCode).toBe(200);
    const unblocked = await log.emitted(created.externalId);
    expect(typesOf(unblocked)).toEqual(["appointment.unblocked"]);
    const afterUnblock = await readAppointment(t, created.externalId);
    expect(afterUnblock.accessBlocked).toBe(false);
    expect(ownData(unblocked[0])).toEqual({ appointment: afterUnblock });

    // Not blocked any more: unblocking changes nothing and emits nothing.
    expect((await unblock()).statusCode).toBe(200);
    expect(await log.emitted(created.externalId)).toEqual([]);

    const again = await joined(created.externalId, created.agent.id);
    const revoked = await t.app.inject({ method: "POST", url: `${path}/revoke`, headers: operator, payload: { reason: "end the call" } });
    expect(revoked.statusCode).toBe(200);
    expect(revoked.json().revoked).toBe(1);
    const operatorEvents = await log.emitted(created.externalId);
    expect(typesOf(operatorEvents)).toEqual(["token.revoked"]);
    expect(ownData(operatorEvents[0])).toEqual({ tokenId: again.tokenId, userId: created.agent.id, role: "moderator", reason: "operator" });
  });

  describe("a change rolled back mid-transaction", () => {
    const QUERY_TIMEOUT_MS = 2000;
    let proxy: TcpProxy;
    let replica: TestApp;

    beforeAll(async () => {
      const direct = new URL(database.url);
      proxy = await startTcpProxy(direct.hostname, Number(direct.port || 5432));
      replica = await startApp({
        DATABASE_URL: proxy.urlFor(database.url),
        DATABASE_QUERY_TIMEOUT_MS: String(QUERY_TIMEOUT_MS),
        DATABASE_ACQUIRE_TIMEOUT_MS: String(QUERY_TIMEOUT_MS),
        SUBSCRIPTIONS_ALLOW_PRIVATE_TARGETS: "true",
        RATE_LIMIT_JOIN_PER_MINUTE: "0",
      });
      await replica.app.ready();
    });
    afterAll(async () => {
      proxy?.restore();
      await replica?.close();
      await proxy?.close();
    });

    /**
     * Holds a lock (taken by `lockSql` in a transaction of its own, on a
     * direct connection) that a late statement of the request needs, so the
     * request stops inside its transaction; then the database goes away
     * under it (the proxy drops every connection). Answers the request's
     * answer, once the blocked backend is gone and the lock released.
     */
    async function failMidTransaction(lockSql: string, params: unknown[], request: () => Promise<LightMyRequestResponse>) {
      const holder = new pg.Client({ connectionString: database.url });
      await holder.connect();
      try {
        await holder.query("BEGIN");
        await holder.query(lockSql, params);
        const blockedBackends = async () =>
          (
            await sql.query<{ pid: number }>(
              "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
            )
          ).rows.map((row) => row.pid);
        const answer = request();
        await expect.poll(blockedBackends, { timeout: 5000, interval: 50 }).toHaveLength(1);
        const [pid] = await blockedBackends();
        proxy.refuse();
        const res = await answer;
        // The backend does not notice its client left while it waits for the lock: end it, so its transaction is rolled back now.
        await sql.query("SELECT pg_terminate_backend($1)", [pid]);
        await expect.poll(blockedBackends, { timeout: 5000, interval: 50 }).toHaveLength(0);
        return res;
      } finally {
        await holder.query("ROLLBACK").catch(() => {});
        await holder.end().catch(() => {});
        proxy.restore();
      }
    }

    const rowsAbout = async (externalId: string) => {
      const outbox = await sql.query<{ type: string }>("SELECT type FROM outbox_events WHERE external_id = $1", [externalId]);
      const deliveries = await sql.query<{ type: string }>("SELECT type FROM subscription_deliveries WHERE external_id = $1 ORDER BY sequence", [
        externalId,
      ]);
      return { outbox: outbox.rows.map((row) => row.type), deliveries: deliveries.rows.map((row) => row.type).filter((type) => !TIMED.has(type)) };
    };

    const expectNotReady = (res: LightMyRequestResponse) => {
      expect(res.statusCode, res.body).toBe(503);
      expect(res.json().code).toBe("not_ready");
    };

    it("a new appointment whose webhook fails at its last statement leaves no event row and emits nothing; delivered again, it emits normally", async () => {
      const event = scheduledEvent({ startsInMinutes: 24 * 60 });
      const { externalId } = event.data;
      const delivery = signedDelivery(event);
      // The delivery's last statement (the appointment, its events, its answer) waits for this uncommitted row's webhook id.
      const res = await failMidTransaction(
        `INSERT INTO webhook_deliveries (webhook_id, event_type, external_id, response_status, response_body) VALUES ($1, 'held', $2, 0, '{}')`,
        [delivery.id, externalId],
        () => send(replica, delivery),
      );
      expectNotReady(res);

      expect(await rowsAbout(externalId)).toEqual({ outbox: [], deliveries: [] });
      expect((await t.app.inject({ method: "GET", url: `/v1/appointments/${externalId}`, headers: operator })).statusCode).toBe(404);
      expect(await log.emitted(externalId)).toEqual([]);

      expect((await send(t, delivery)).statusCode).toBe(200);
      expect(typesOf(await log.emitted(externalId))).toEqual(["appointment.scheduled", "session.ready"]);
    });

    it("a reschedule rolled back after its revocation was written emits neither token.revoked nor appointment.rescheduled; redelivered, it emits both", async () => {
      const created = await scheduled({ startsInMinutes: 0 });
      const token = await joined(created.externalId, created.agent.id);
      const before = await rowsAbout(created.externalId);
      expect(before).toEqual({ outbox: [], deliveries: ["appointment.scheduled", "session.ready", "token.issued"] });

      const moved = scheduledEvent({ externalId: created.externalId, startsInMinutes: 5, agentId: created.agent.id, customerId: created.customer.id });
      const delivery = signedDelivery(moved);
      // The revocation (and its token.revoked event) is written before the last statement, which waits here.
      const res = await failMidTransaction(
        `INSERT INTO webhook_deliveries (webhook_id, event_type, external_id, response_status, response_body) VALUES ($1, 'held', $2, 0, '{}')`,
        [delivery.id, created.externalId],
        () => send(replica, delivery),
      );
      expectNotReady(res);

      expect(await rowsAbout(created.externalId)).toEqual(before);
      expect(await introspect(token.token)).toMatchObject({ active: true, jti: token.tokenId });
      expect((await readAppointment(t, created.externalId)).startsAt).toBe(created.appointment.startsAt);
      expect(await log.emitted(created.externalId)).toEqual([]);

      expect((await send(t, delivery)).statusCode).toBe(200);
      const events = await log.emitted(created.externalId);
      expect(typesOf(events)).toEqual(["token.revoked", "appointment.rescheduled"]);
      expect(ownData(events[0])).toMatchObject({ tokenId: token.tokenId, reason: "rescheduled" });
    });

    it("a join token rolled back while replacing the previous one emits neither token.revoked nor token.issued; asked again, it emits both", async () => {
      const created = await scheduled({ startsInMinutes: 0 });
      const first = await joined(created.externalId, created.agent.id);
      const before = await rowsAbout(created.externalId);

      // The join's one writing statement revokes the caller's previous token first: it waits for this row lock.
      const res = await failMidTransaction("SELECT id FROM join_tokens WHERE id = $1 FOR UPDATE", [first.tokenId], () =>
        joinRequest(replica, created.externalId, created.agent.id),
      );
      expectNotReady(res);

      expect(await rowsAbout(created.externalId)).toEqual(before);
      expect(await introspect(first.token)).toMatchObject({ active: true, jti: first.tokenId });
      expect(await log.emitted(created.externalId)).toEqual([]);

      const second = await join(created.externalId, created.agent.id);
      const events = await log.emitted(created.externalId);
      expect(typesOf(events)).toEqual(["token.revoked", "token.issued"]);
      expect(ownData(events[0])).toMatchObject({ tokenId: first.tokenId, reason: "replaced" });
      expect(ownData(events[1])).toMatchObject({ tokenId: second.tokenId });
    });
  });

  it("per appointment, data.sequence increases in the order the changes were made, and every event received belongs to one change", async () => {
    expect(log.consumed.size).toBeGreaterThan(10);
    for (const [externalId, events] of log.consumed) {
      const sequences = events.map((event) => event.data.sequence);
      expect(sequences, externalId).toEqual([...sequences].sort((a, b) => a - b));
      expect(new Set(sequences).size, externalId).toBe(sequences.length);
      // Nothing arrived for it that no change accounts for (no late event, no duplicate delivery).
      expect(log.changeEvents(externalId).map((event) => event.webhookId).sort(), externalId).toEqual(
        events.map((event) => event.webhookId).sort(),
      );
    }
    for (const event of receiver.received) {
      expect(event.verified).toBe(true);
      for (const token of log.tokens) expect(event.request.body).not.toContain(token);
    }
  });
});

/**
 * session.failed and a late session.ready need a remote provider that fails:
 * the fake Genesys. Its own database, because every replica's reconciler
 * creates the pending sessions of the whole database with its own provider,
 * so a local-provider app on the same database would make these sessions.
 */
describe("session events of a remote provider (genesys)", () => {
  let database: { name: string; url: string };
  let receiver: Receiver;
  let fake: FakeGenesys;
  let t: TestApp;
  let sql: pg.Client;
  let secret = "";
  let log: ReturnType<typeof eventLog>;
  const clock = new TestClock();

  beforeAll(async () => {
    database = await createMigratedDatabase();
    sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
    receiver = await startReceiver();
    log = eventLog(receiver, () => sql, () => [secret]);
    fake = await startFakeGenesys({ clientId: "client-events", clientSecret: "client-events-secret" });
    t = await startApp(
      {
        DATABASE_URL: database.url,
        VIDEO_PROVIDER: "genesys",
        GENESYS_LOGIN_BASE: fake.url,
        GENESYS_API_BASE: fake.url,
        GENESYS_CLIENT_ID: "client-events",
        GENESYS_CLIENT_SECRET: "client-events-secret",
        PROVIDER_TIMEOUT_MS: "300",
        SESSION_RECONCILE_INTERVAL_MS: "200",
        SUBSCRIPTIONS_ALLOW_PRIVATE_TARGETS: "true",
        RATE_LIMIT_JOIN_PER_MINUTE: "0",
      },
      { clock },
    );
    await t.app.ready();
    secret = await subscribe(t, receiver);
  });
  afterAll(async () => {
    await t?.close();
    await fake?.close();
    await receiver?.close();
    await sql?.end();
    if (database) await dropDatabase(database.name);
  });

  async function schedulePending(options: ScheduleOptions) {
    fake.createSession.fail(500);
    const event = scheduledEvent({ now: clock.now(), ...options });
    const res = await send(t, signedDelivery(event));
    expect(res.statusCode).toBe(202);
    expect(res.json().appointment.session).toMatchObject({ provider: "genesys", id: null, status: "pending" });
    // Stored with its session pending: appointment.scheduled only, no session.ready.
    const events = await log.emitted(event.data.externalId);
    expect(typesOf(events)).toEqual(["appointment.scheduled"]);
    expect(ownData(events[0])).toEqual({ appointment: await readAppointment(t, event.data.externalId) });
    return event.data;
  }

  it("a pending session whose join window closes without one emits session.failed once", async () => {
    const { externalId } = await schedulePending({ startsInMinutes: 0, durationMinutes: 5 });
    clock.advance(30 * MINUTE_MS);
    try {
      await expect.poll(async () => (await readAppointment(t, externalId)).session.status, { timeout: 10_000 }).toBe("failed");
      // More reconciler passes go by: still one event.
      await new Promise((resolve) => setTimeout(resolve, 600));
      const events = await log.emitted(externalId);
      expect(typesOf(events)).toEqual(["session.failed"]);
      const appointment = await readAppointment(t, externalId);
      expect(ownData(events[0])).toEqual({ session: appointment.session });
      expect(appointment.session).toEqual({ provider: "genesys", id: null, status: "failed", roomUrl: null });
    } finally {
      clock.advance(-30 * MINUTE_MS);
      fake.createSession.reset();
    }
  });

  it("a pending session the provider creates later emits session.ready once", async () => {
    const { externalId } = await schedulePending({ startsInMinutes: 60 });
    fake.createSession.reset();
    // Past the reconciler's backoff after the failed attempt.
    clock.advance(10 * MINUTE_MS);
    try {
      await expect.poll(async () => (await readAppointment(t, externalId)).session.status, { timeout: 10_000 }).toBe("ready");
      await new Promise((resolve) => setTimeout(resolve, 600));
      const events = await log.emitted(externalId);
      expect(typesOf(events)).toEqual(["session.ready"]);
      const appointment = await readAppointment(t, externalId);
      expect(ownData(events[0])).toEqual({ session: appointment.session });
      expect(appointment.session).toMatchObject({ provider: "genesys", id: expect.any(String), status: "ready" });
      expect(fake.sessions.has(String(appointment.session.id))).toBe(true);
    } finally {
      clock.advance(-10 * MINUTE_MS);
    }
  });
});
