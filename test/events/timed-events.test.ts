import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp, TestClock } from "../helpers/app.js";
import { bearer, cancelledEvent, type ScheduleOptions, userJwt } from "../helpers/fixtures.js";
import { bearerAt, closeFlow, connectSql, deliver, eventAt, HOUR, MINUTE, requestJoinToken, SECOND, sleep, subscribe } from "../helpers/flow.js";
import { createMigratedDatabase } from "../helpers/postgres.js";
import { type ReceivedEvent, type Receiver, startReceiver } from "../helpers/receiver.js";

// Timed events (API.md §9): `join_window.opened` per role, `join_window.closed`,
// `appointment.no_show`. Time moves only through the TestClock; the worker runs
// every second on its own, so each step waits (bounded) for what it emits.

/** The contract's bound (within 5 s of the instant), plus the dispatcher's own half second and a loaded machine. */
const EMIT_WITHIN_MS = 6000;
/** How long a check for "nothing (more) was emitted" watches: two worker passes and a dispatch. */
const QUIET_MS = 2700;

const TIMED_TYPES = ["join_window.opened", "join_window.closed", "appointment.no_show"];

interface Scheduled {
  externalId: string;
  agentId: string;
  customerId: string;
  startsAt: string;
  agentOpensAt: string;
  customerOpensAt: string;
  closesAt: string;
  /** startsAt + NO_SHOW_MINUTES (10). */
  noShowAt: string;
}

const iso = (ms: number) => new Date(ms).toISOString();
/** A received event as one short key: `opened:moderator`, `closed`, `no_show`. */
const keyOf = (e: ReceivedEvent) =>
  e.type === "join_window.opened" ? `opened:${String(e.data.role)}` : e.type === "join_window.closed" ? "closed" : "no_show";

describe("timed events (API.md §9)", () => {
  let database: { name: string; url: string };
  let t: TestApp;
  let receiver: Receiver;
  let client: pg.Client;
  const clock = new TestClock();
  const env = () => ({ DATABASE_URL: database.url, SUBSCRIPTIONS_ALLOW_PRIVATE_TARGETS: "true", RATE_LIMIT_JOIN_PER_MINUTE: "0" });

  beforeAll(async () => {
    database = await createMigratedDatabase();
    receiver = await startReceiver();
    t = await startApp(env(), { clock });
    await subscribe(t, bearer(userJwt("ops-timed", { scope: "subscriptions:manage" })), receiver, {
      events: TIMED_TYPES,
      description: "timed events test",
    });
    client = await connectSql(database.url);
  });
  afterAll(() => closeFlow({ sql: client, app: t, receiver, database }));

  /** An appointment.scheduled delivery with times relative to the test clock. */
  async function schedule(options: ScheduleOptions = {}, app: TestApp = t): Promise<Scheduled> {
    const res = await deliver(app, eventAt(clock, options));
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.applied).toBe(true);
    const { appointment } = body;
    return {
      externalId: appointment.externalId,
      agentId: appointment.agent.id,
      customerId: appointment.customer.id,
      startsAt: appointment.startsAt,
      ...appointment.join,
      noShowAt: iso(Date.parse(appointment.startsAt) + 10 * MINUTE),
    };
  }

  async function cancel(externalId: string, revision?: number) {
    const res = await deliver(t, cancelledEvent(externalId, revision));
    expect(res.statusCode).toBe(200);
    expect(res.json().applied).toBe(true);
  }

  /** A join token for `userId`, with a user JWT valid at the test clock's time. */
  async function join(externalId: string, userId: string) {
    const res = await requestJoinToken(t, externalId, bearerAt(clock, userId));
    expect(res.statusCode).toBe(201);
    return res.json();
  }

  /** The video gateway's presence report (API.md §10) about a token's holder, with a gateway JWT valid at the test clock's time. */
  async function gatewayReports(token: string, state: "joined" | "left") {
    const res = await t.app.inject({
      method: "POST",
      url: "/v1/presence",
      headers: bearerAt(clock, "gw-timed", "tokens:introspect"),
      payload: { token, state },
    });
    expect(res.statusCode, res.body).toBe(200);
  }

  /** Moves the test clock to `offsetMs` after `instant`. */
  const advanceTo = (instant: string, offsetMs: number) => clock.advance(Date.parse(instant) + offsetMs - clock.now().getTime());

  const timedOf = (externalId: string) => receiver.of(externalId).filter((e) => TIMED_TYPES.includes(e.type));
  const keysOf = (externalId: string) => timedOf(externalId).map(keyOf).sort();
  const count = (externalId: string, key: string) => timedOf(externalId).filter((e) => keyOf(e) === key).length;
  const one = (externalId: string, key: string) => {
    const events = timedOf(externalId).filter((e) => keyOf(e) === key);
    expect(events, `${key} of ${externalId}`).toHaveLength(1);
    return events[0]!;
  };
  const waitForKeys = (externalId: string, keys: string[], timeoutMs = EMIT_WITHIN_MS) =>
    receiver.waitFor(() => keys.every((key) => timedOf(externalId).some((e) => keyOf(e) === key)), timeoutMs);

  /** The appointment's stored timed-event state. */
  async function stateOf(externalId: string): Promise<{ emitted: string[]; next: Date | null }> {
    const { rows } = await client.query<{ emitted: string[]; next: Date | null }>(
      "SELECT timed_events_emitted AS emitted, next_timed_event_at AS next FROM appointments WHERE external_id = $1",
      [externalId],
    );
    expect(rows).toHaveLength(1);
    return rows[0]!;
  }

  /** The timed events written for an appointment, fanned out or not yet (whatever the receiver got). */
  async function writtenTypes(externalId: string): Promise<string[]> {
    const { rows } = await client.query<{ type: string }>(
      `SELECT type FROM outbox_events WHERE external_id = $1 AND type = ANY ($2)
       UNION ALL SELECT type FROM subscription_deliveries WHERE external_id = $1 AND type = ANY ($2)`,
      [externalId, TIMED_TYPES],
    );
    return rows.map((r) => r.type).sort();
  }

  async function until(check: () => Promise<boolean>, timeoutMs = EMIT_WITHIN_MS) {
    const giveUpAt = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > giveUpAt) throw new Error(`not true within ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  it("emits each timed event once at its instant, with that instant as `at`, and nothing before or after", async () => {
    const a = await schedule({ startsInMinutes: 30, durationMinutes: 30 });
    expect(Date.parse(a.agentOpensAt)).toBe(Date.parse(a.startsAt) - 10 * MINUTE);
    expect(Date.parse(a.customerOpensAt)).toBe(Date.parse(a.startsAt) - 5 * MINUTE);
    expect(Date.parse(a.closesAt)).toBe(Date.parse(a.startsAt) + 45 * MINUTE);

    await sleep(QUIET_MS);
    expect(timedOf(a.externalId)).toEqual([]);
    advanceTo(a.agentOpensAt, -30 * SECOND);
    await sleep(QUIET_MS);
    expect(timedOf(a.externalId)).toEqual([]);

    advanceTo(a.agentOpensAt, 1 * SECOND);
    await waitForKeys(a.externalId, ["opened:moderator"]);
    const agentOpened = one(a.externalId, "opened:moderator");
    expect(agentOpened).toMatchObject({ type: "join_window.opened", verified: true });
    expect(agentOpened.data).toEqual({ appointmentId: a.externalId, sequence: expect.any(Number), at: a.agentOpensAt, role: "moderator" });
    expect(agentOpened.webhookId).toMatch(/^evt_[0-9a-f]{32}$/);
    expect(keysOf(a.externalId)).toEqual(["opened:moderator"]);

    advanceTo(a.customerOpensAt, 1 * SECOND);
    await waitForKeys(a.externalId, ["opened:participant"]);
    expect(one(a.externalId, "opened:participant").data).toEqual({
      appointmentId: a.externalId,
      sequence: expect.any(Number),
      at: a.customerOpensAt,
      role: "participant",
    });
    expect(keysOf(a.externalId)).toEqual(["opened:moderator", "opened:participant"]);

    advanceTo(a.noShowAt, 1 * SECOND);
    await waitForKeys(a.externalId, ["no_show"]);
    expect(one(a.externalId, "no_show")).toMatchObject({
      type: "appointment.no_show",
      data: { appointmentId: a.externalId, at: a.noShowAt, missing: ["moderator", "participant"] },
    });
    expect(count(a.externalId, "closed")).toBe(0);

    advanceTo(a.closesAt, 1 * SECOND);
    await waitForKeys(a.externalId, ["closed"]);
    const closed = one(a.externalId, "closed");
    expect(closed.type).toBe("join_window.closed");
    expect(closed.data).toEqual({ appointmentId: a.externalId, sequence: expect.any(Number), at: a.closesAt });

    // Each later than the one before it.
    const sequences = ["opened:moderator", "opened:participant", "no_show", "closed"].map((key) => one(a.externalId, key).data.sequence);
    expect([...sequences].sort((x, y) => x - y)).toEqual(sequences);
    expect(await stateOf(a.externalId)).toEqual({ emitted: ["agent_opened", "customer_opened", "closed", "no_show"], next: null });

    await sleep(QUIET_MS);
    clock.advance(3 * HOUR);
    await sleep(QUIET_MS);
    expect(keysOf(a.externalId)).toEqual(["closed", "no_show", "opened:moderator", "opened:participant"]);
    expect(new Set(timedOf(a.externalId).map((e) => e.webhookId)).size).toBe(4);
  });

  it("names in appointment.no_show only the roles that were not issued a token, and emits none when both were", async () => {
    const agentOnly = await schedule({ startsInMinutes: 30 });
    const customerOnly = await schedule({ startsInMinutes: 30 });
    const both = await schedule({ startsInMinutes: 30 });
    const nobody = await schedule({ startsInMinutes: 30 });

    advanceTo(agentOnly.customerOpensAt, 1 * MINUTE);
    await join(agentOnly.externalId, agentOnly.agentId);
    await join(customerOnly.externalId, customerOnly.customerId);
    await join(both.externalId, both.agentId);
    await join(both.externalId, both.customerId);

    advanceTo(agentOnly.noShowAt, 1 * SECOND);
    await waitForKeys(agentOnly.externalId, ["no_show"]);
    await waitForKeys(customerOnly.externalId, ["no_show"]);
    await waitForKeys(nobody.externalId, ["no_show"]);
    expect(one(agentOnly.externalId, "no_show").data).toMatchObject({ at: agentOnly.noShowAt, missing: ["participant"] });
    expect(one(customerOnly.externalId, "no_show").data).toMatchObject({ at: customerOnly.noShowAt, missing: ["moderator"] });
    expect(one(nobody.externalId, "no_show").data).toMatchObject({ at: nobody.noShowAt, missing: ["moderator", "participant"] });

    // Both there: the kind was handled (it counts as emitted) but no event was written.
    await until(async () => (await stateOf(both.externalId)).emitted.includes("no_show"));
    await sleep(QUIET_MS);
    expect(count(both.externalId, "no_show")).toBe(0);
    expect(await writtenTypes(both.externalId)).toEqual(["join_window.opened", "join_window.opened"]);
    expect((await stateOf(both.externalId)).next).toEqual(new Date(both.closesAt));
  });

  it("counts for appointment.no_show only a token issued for the current times, not one revoked by a reschedule to earlier times", async () => {
    const stale = await schedule({ startsInMinutes: 30, revision: 1 });
    const rejoined = await schedule({ startsInMinutes: 30, revision: 1 });
    advanceTo(stale.agentOpensAt, 1 * MINUTE);
    await join(stale.externalId, stale.agentId);
    await join(rejoined.externalId, rejoined.agentId);

    // 5 minutes earlier than booked: the new agent opening is before the moment the token was issued.
    const staleNow = await schedule({ externalId: stale.externalId, agentId: stale.agentId, customerId: stale.customerId, startsInMinutes: 4, revision: 2 });
    const rejoinedNow = await schedule({
      externalId: rejoined.externalId,
      agentId: rejoined.agentId,
      customerId: rejoined.customerId,
      startsInMinutes: 4,
      revision: 2,
    });
    const { rows: revoked } = await client.query<{ reason: string }>(
      `SELECT t.revocation_reason AS reason FROM join_tokens t JOIN appointments a ON a.id = t.appointment_id WHERE a.external_id = $1`,
      [stale.externalId],
    );
    expect(revoked).toEqual([{ reason: "rescheduled" }]);
    // The other agent joins again for the new times.
    await join(rejoined.externalId, rejoined.agentId);

    advanceTo(staleNow.noShowAt, 1 * SECOND);
    await waitForKeys(stale.externalId, ["no_show"]);
    await waitForKeys(rejoined.externalId, ["no_show"]);
    expect(one(rejoined.externalId, "no_show").data).toMatchObject({ at: rejoinedNow.noShowAt, missing: ["participant"] });
    // The agent of `stale` holds no token for the current times (theirs was revoked as `rescheduled`) and never joined again.
    expect(one(stale.externalId, "no_show").data).toMatchObject({ at: staleNow.noShowAt, missing: ["moderator", "participant"] });
  });

  it("once the gateway reported on the window, names in appointment.no_show who it never saw, token or not", async () => {
    const agentSeen = await schedule({ startsInMinutes: 30 });
    const customerSeen = await schedule({ startsInMinutes: 30 });
    const bothSeen = await schedule({ startsInMinutes: 30 });
    const agentCameAndWent = await schedule({ startsInMinutes: 30 });
    const unreported = await schedule({ startsInMinutes: 30 });

    advanceTo(agentSeen.customerOpensAt, 1 * MINUTE);
    // Both hold tokens everywhere but in agentCameAndWent (no customer token there).
    const tokens = new Map<string, { agent: string; customer?: string }>();
    for (const a of [agentSeen, customerSeen, bothSeen, unreported]) {
      tokens.set(a.externalId, { agent: (await join(a.externalId, a.agentId)).token, customer: (await join(a.externalId, a.customerId)).token });
    }
    tokens.set(agentCameAndWent.externalId, { agent: (await join(agentCameAndWent.externalId, agentCameAndWent.agentId)).token });
    const tokenOf = (a: Scheduled, role: "agent" | "customer") => tokens.get(a.externalId)![role]!;

    await gatewayReports(tokenOf(agentSeen, "agent"), "joined");
    await gatewayReports(tokenOf(customerSeen, "customer"), "joined");
    await gatewayReports(tokenOf(bothSeen, "agent"), "joined");
    await gatewayReports(tokenOf(bothSeen, "customer"), "joined");
    await gatewayReports(tokenOf(agentCameAndWent, "agent"), "joined");
    clock.advance(2 * MINUTE);
    // Leaving before the no-show instant does not make them absent: they came.
    await gatewayReports(tokenOf(bothSeen, "customer"), "left");
    await gatewayReports(tokenOf(agentCameAndWent, "agent"), "left");

    advanceTo(agentSeen.noShowAt, 1 * SECOND);
    for (const a of [agentSeen, customerSeen, agentCameAndWent]) await waitForKeys(a.externalId, ["no_show"]);
    // A token alone no longer counts once the gateway reported the other participant.
    expect(one(agentSeen.externalId, "no_show").data).toMatchObject({ at: agentSeen.noShowAt, missing: ["participant"] });
    expect(one(customerSeen.externalId, "no_show").data).toMatchObject({ at: customerSeen.noShowAt, missing: ["moderator"] });
    expect(one(agentCameAndWent.externalId, "no_show").data).toMatchObject({ at: agentCameAndWent.noShowAt, missing: ["participant"] });

    // Both seen, and both holding tokens with no report at all (tokens count until a report): no event.
    for (const a of [bothSeen, unreported]) {
      await until(async () => (await stateOf(a.externalId)).emitted.includes("no_show"));
    }
    await sleep(QUIET_MS);
    expect(count(bothSeen.externalId, "no_show")).toBe(0);
    expect(count(unreported.externalId, "no_show")).toBe(0);
    expect(await writtenTypes(bothSeen.externalId)).toEqual(["join_window.opened", "join_window.opened"]);
    expect(await writtenTypes(unreported.externalId)).toEqual(["join_window.opened", "join_window.opened"]);
  });

  it("counts for appointment.no_show only reports on the current window: after a reschedule, tokens count again until a new report", async () => {
    const r = await schedule({ startsInMinutes: 30, revision: 1 });
    advanceTo(r.customerOpensAt, 1 * MINUTE);
    await join(r.externalId, r.agentId);
    const customer = await join(r.externalId, r.customerId);
    await gatewayReports(customer.token, "joined");

    // An hour later: the report above was before the new window opened.
    const later = await schedule({ externalId: r.externalId, agentId: r.agentId, customerId: r.customerId, startsInMinutes: 60, revision: 2 });
    expect(Date.parse(later.agentOpensAt)).toBeGreaterThan(clock.now().getTime());
    advanceTo(later.agentOpensAt, 1 * MINUTE);
    // Only the agent joins the new window, and no presence source reports on it.
    await join(r.externalId, r.agentId);

    advanceTo(later.noShowAt, 1 * SECOND);
    await waitForKeys(r.externalId, ["no_show"]);
    // Were the old report still counted, the customer would count as come and the agent (never reported) as missing.
    expect(one(r.externalId, "no_show").data).toMatchObject({ at: later.noShowAt, missing: ["participant"] });
  });

  it("emits at once every timed event of an appointment stored after all its instants, each with its own `at`, in instant order", async () => {
    // Ended an hour ago: opened at -100 and -95 min, no-show at -80, closed at -45.
    const past = await schedule({ startsInMinutes: -90, durationMinutes: 30 });
    await waitForKeys(past.externalId, ["opened:moderator", "opened:participant", "no_show", "closed"]);
    const events = [...timedOf(past.externalId)].sort((x, y) => x.data.sequence - y.data.sequence);
    expect(events.map((e) => [keyOf(e), e.data.at])).toEqual([
      ["opened:moderator", past.agentOpensAt],
      ["opened:participant", past.customerOpensAt],
      ["no_show", past.noShowAt],
      ["closed", past.closesAt],
    ]);
    expect(events[2]!.data.missing).toEqual(["moderator", "participant"]);
    expect(new Set(events.map((e) => e.data.sequence)).size).toBe(4);
    await sleep(QUIET_MS);
    expect(timedOf(past.externalId)).toHaveLength(4);
  });

  it("after a reschedule emits the openings again at the new instants, and not again for new instants that have passed", async () => {
    const r = await schedule({ startsInMinutes: 30, revision: 1 });
    advanceTo(r.customerOpensAt, 1 * MINUTE);
    await waitForKeys(r.externalId, ["opened:moderator", "opened:participant"]);

    // Tomorrow: both openings are ahead again.
    const tomorrow = await schedule({ externalId: r.externalId, startsInMinutes: 24 * 60, revision: 2 });
    expect(tomorrow.agentOpensAt).not.toBe(r.agentOpensAt);
    expect(await stateOf(r.externalId)).toEqual({ emitted: [], next: new Date(tomorrow.agentOpensAt) });
    await sleep(QUIET_MS);
    expect(keysOf(r.externalId)).toEqual(["opened:moderator", "opened:participant"]);

    advanceTo(tomorrow.agentOpensAt, -30 * SECOND);
    await sleep(QUIET_MS);
    expect(keysOf(r.externalId)).toEqual(["opened:moderator", "opened:participant"]);

    advanceTo(tomorrow.agentOpensAt, 1 * SECOND);
    await receiver.waitFor(() => count(r.externalId, "opened:moderator") === 2, EMIT_WITHIN_MS);
    advanceTo(tomorrow.customerOpensAt, 1 * SECOND);
    await receiver.waitFor(() => count(r.externalId, "opened:participant") === 2, EMIT_WITHIN_MS);
    const openedAt = (role: string) =>
      timedOf(r.externalId)
        .filter((e) => keyOf(e) === `opened:${role}`)
        .map((e) => e.data.at)
        .sort();
    expect(openedAt("moderator")).toEqual([r.agentOpensAt, tomorrow.agentOpensAt]);
    expect(openedAt("participant")).toEqual([r.customerOpensAt, tomorrow.customerOpensAt]);
    // The old times' no-show and closing were never emitted.
    expect(keysOf(r.externalId)).toEqual(["opened:moderator", "opened:moderator", "opened:participant", "opened:participant"]);

    // Slightly earlier, 11 minutes ago: both openings have passed and were emitted (not again); the no-show,
    // which has passed too and was not emitted, is emitted at once with its new instant.
    const earlier = await schedule({ externalId: r.externalId, startsInMinutes: -11, revision: 3 });
    expect(Date.parse(earlier.customerOpensAt)).toBeLessThan(clock.now().getTime());
    await waitForKeys(r.externalId, ["no_show"]);
    expect(one(r.externalId, "no_show").data).toMatchObject({ at: earlier.noShowAt, missing: ["moderator", "participant"] });
    await sleep(QUIET_MS);
    expect(keysOf(r.externalId)).toEqual(["no_show", "opened:moderator", "opened:moderator", "opened:participant", "opened:participant"]);
    expect(await stateOf(r.externalId)).toEqual({
      emitted: ["agent_opened", "customer_opened", "no_show"],
      next: new Date(earlier.closesAt),
    });
  });

  it("drops on cancellation the timed events not yet emitted", async () => {
    const cancelledEarly = await schedule({ startsInMinutes: 30 });
    const cancelledOpen = await schedule({ startsInMinutes: 30 });
    const kept = await schedule({ startsInMinutes: 30 });
    await cancel(cancelledEarly.externalId);
    expect(await stateOf(cancelledEarly.externalId)).toEqual({ emitted: [], next: null });

    advanceTo(kept.agentOpensAt, 1 * SECOND);
    await waitForKeys(kept.externalId, ["opened:moderator"]);
    await waitForKeys(cancelledOpen.externalId, ["opened:moderator"]);
    await cancel(cancelledOpen.externalId);

    clock.advance(3 * HOUR);
    await waitForKeys(kept.externalId, ["opened:moderator", "opened:participant", "no_show", "closed"]);
    await sleep(QUIET_MS);
    expect(timedOf(cancelledEarly.externalId)).toEqual([]);
    expect(await writtenTypes(cancelledEarly.externalId)).toEqual([]);
    expect(keysOf(cancelledOpen.externalId)).toEqual(["opened:moderator"]);
    expect(await writtenTypes(cancelledOpen.externalId)).toEqual(["join_window.opened"]);
  });

  it("emits after a downtime the events it missed, late, each with its own instant as `at`", async () => {
    const d = await schedule({ startsInMinutes: 30 });
    await t.close();
    clock.advance(2 * HOUR);
    t = await startApp(env(), { clock });
    const restartedAt = clock.now().getTime();

    await waitForKeys(d.externalId, ["opened:moderator", "opened:participant", "no_show", "closed"]);
    const instants: Record<string, string> = {
      "opened:moderator": d.agentOpensAt,
      "opened:participant": d.customerOpensAt,
      no_show: d.noShowAt,
      closed: d.closesAt,
    };
    for (const [key, at] of Object.entries(instants)) {
      const event = one(d.externalId, key);
      expect(event.data.at).toBe(at);
      expect(Date.parse(event.timestamp)).toBeGreaterThan(Date.parse(at));
      expect(Date.parse(event.timestamp)).toBeGreaterThanOrEqual(restartedAt - SECOND);
    }
    await sleep(QUIET_MS);
    expect(timedOf(d.externalId)).toHaveLength(4);
  });

  it("with two replicas on one database emits each timed event exactly once", async () => {
    const second = await startApp(env(), { clock });
    try {
      const appointments: Scheduled[] = [];
      for (let i = 0; i < 6; i++) appointments.push(await schedule({ startsInMinutes: 30 + i }, i % 2 === 0 ? t : second));
      clock.advance(3 * HOUR);
      for (const a of appointments) await waitForKeys(a.externalId, ["opened:moderator", "opened:participant", "no_show", "closed"]);
      await sleep(QUIET_MS);

      const ids = new Set(appointments.map((a) => a.externalId));
      const events = receiver.received.filter((e) => ids.has(e.data.appointmentId) && TIMED_TYPES.includes(e.type));
      expect(events).toHaveLength(24);
      expect(new Set(events.map((e) => e.webhookId)).size).toBe(24);
      for (const a of appointments) {
        expect(keysOf(a.externalId)).toEqual(["closed", "no_show", "opened:moderator", "opened:participant"]);
      }
      // Nor was any of them written twice (to be retried or not).
      for (const a of appointments) expect(await writtenTypes(a.externalId)).toHaveLength(4);
    } finally {
      await second.close();
    }
  });

  it("reads due appointments through appointments_timed_events_idx, never the whole table", async () => {
    await client.query(
      `INSERT INTO appointments (id, external_id, starts_at, ends_at, agent_id, customer_id, agent_opens_at, customer_opens_at,
         closes_at, provider, session_status, updated_at)
       SELECT gen_random_uuid(), 'explain-' || g, now(), now() + interval '30 minutes', 'agent-' || g, 'cust-' || g,
         now() - interval '10 minutes', now() - interval '5 minutes', now() + interval '45 minutes', 'local', 'ready', now()
       FROM generate_series(1, 5000) AS g`,
    );
    // And a few with a timed event due in a month (the worker's queue is small; the table is not).
    await client.query(
      `INSERT INTO appointments (id, external_id, starts_at, ends_at, agent_id, customer_id, agent_opens_at, customer_opens_at,
         closes_at, provider, session_status, updated_at, next_timed_event_at)
       SELECT gen_random_uuid(), 'explain-due-' || g, now() + interval '30 days', now() + interval '30 days 30 minutes', 'agent', 'cust',
         now() + interval '30 days', now() + interval '30 days', now() + interval '30 days', 'local', 'ready', now(), now() + interval '30 days'
       FROM generate_series(1, 20) AS g`,
    );
    const { rows: nulls } = await client.query<{ n: number }>("SELECT count(*)::int AS n FROM appointments WHERE next_timed_event_at IS NULL");
    expect(nulls[0]!.n).toBeGreaterThanOrEqual(5000);
    await client.query("ANALYZE appointments");

    // The shape of the worker's claim (src/db/repositories/timed-events.ts, CLAIM_DUE).
    const { rows } = await client.query<{ "QUERY PLAN": [{ Plan: PlanNode }] }>(
      `EXPLAIN (FORMAT JSON)
       SELECT a.id, a.external_id, a.starts_at, a.agent_opens_at, a.customer_opens_at, a.closes_at, a.timed_events_emitted
       FROM appointments a
       WHERE a.next_timed_event_at <= $1
       ORDER BY a.next_timed_event_at
       LIMIT 200
       FOR UPDATE OF a SKIP LOCKED`,
      [clock.now()],
    );
    const nodes = flatten(rows[0]!["QUERY PLAN"][0].Plan);
    const onAppointments = nodes.filter((n) => n["Relation Name"] === "appointments");
    expect(onAppointments.map((n) => [n["Node Type"], n["Index Name"]])).toEqual([["Index Scan", "appointments_timed_events_idx"]]);
    expect(nodes.some((n) => n["Node Type"] === "Seq Scan")).toBe(false);
  });
});

interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Index Name"?: string;
  Plans?: PlanNode[];
}

const flatten = (node: PlanNode): PlanNode[] => [node, ...(node.Plans ?? []).flatMap(flatten)];
