import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp } from "../helpers/app.js";
import { bearer, OPERATOR_SCOPES, type ScheduleOptions, scheduledEvent, signedDelivery, uniqueId, userJwt } from "../helpers/fixtures.js";
import { createMigratedDatabase, dropDatabase } from "../helpers/postgres.js";

/**
 * The waiting room (API.md §3, local provider): with `settings.waitingRoom`
 * (default true) a customer is answered 425 `waiting_for_host` with a
 * Retry-After of at most 10 s until the agent holds a live token for the
 * appointment; the agent is never held. The check sits after `too_early` and
 * `join_window_closed` and before `active_elsewhere`, and a held request
 * changes nothing. A database of this file's own: its counts of tokens and
 * refusals are not disturbed by other files.
 */

interface Appointment {
  externalId: string;
  startsAt: string;
  agent: { id: string };
  customer: { id: string };
  settings: { maxParticipants: number; waitingRoom: boolean; recording: boolean };
  join: { agentOpensAt: string; customerOpensAt: string; closesAt: string };
}

interface AuditEntry {
  type: string;
  actor: string;
  outcome: string;
  detail: Record<string, unknown>;
}

const operator = bearer(userJwt("ops-waiting", { scope: OPERATOR_SCOPES }));
/** The waiting room on, as a scheduler says it explicitly (scheduledEvent turns it off unless told). */
const WAITING_ROOM = { waitingRoom: true };

describe("the waiting room (API.md §3)", () => {
  let database: { name: string; url: string };
  let t: TestApp;
  let client: pg.Client;

  beforeAll(async () => {
    database = await createMigratedDatabase();
    t = await startApp({ DATABASE_URL: database.url, RATE_LIMIT_JOIN_PER_MINUTE: "0" });
    client = new pg.Client({ connectionString: database.url });
    await client.connect();
  });
  afterAll(async () => {
    await client?.end();
    await t?.close();
    if (database) await dropDatabase(database.name);
  });

  async function schedule(options: ScheduleOptions = {}): Promise<Appointment> {
    const delivery = signedDelivery(scheduledEvent({ settings: WAITING_ROOM, ...options }));
    const res = await t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: delivery.headers, payload: delivery.payload });
    expect(res.statusCode).toBe(200);
    return res.json().appointment;
  }

  const join = (externalId: string, userId: string, body?: object) =>
    t.app.inject({
      method: "POST",
      url: `/v1/appointments/${encodeURIComponent(externalId)}/join-token`,
      headers: bearer(userJwt(userId)),
      ...(body !== undefined ? { payload: body } : {}),
    });

  async function joined(externalId: string, userId: string, body?: object) {
    const res = await join(externalId, userId, body);
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as { token: string; tokenId: string; role: string };
  }

  /** A customer held in the waiting room: 425 problem+json, Retry-After whole seconds from 1 to 10. */
  async function expectHeld(externalId: string, userId: string, body?: object) {
    const res = await join(externalId, userId, body);
    expect(res.statusCode, res.body).toBe(425);
    expect(res.headers["content-type"]).toContain("application/problem+json");
    expect(res.json()).toMatchObject({ code: "waiting_for_host", status: 425 });
    const retryAfter = String(res.headers["retry-after"]);
    expect(retryAfter).toMatch(/^\d+$/);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Number(retryAfter)).toBeLessThanOrEqual(10);
    return res;
  }

  const introspect = async (token: string) =>
    (await t.app.inject({ method: "POST", url: "/v1/tokens/introspect", headers: operator, payload: { token } })).json();

  const revokeToken = async (tokenId: string) => {
    const res = await t.app.inject({ method: "POST", url: "/v1/tokens/revoke", headers: operator, payload: { tokenId } });
    expect(res.statusCode).toBe(200);
  };

  async function trail(externalId: string): Promise<AuditEntry[]> {
    const res = await t.app.inject({ method: "GET", url: `/v1/appointments/${encodeURIComponent(externalId)}/events`, headers: operator });
    expect(res.statusCode).toBe(200);
    return res.json().events;
  }
  /** Issues and revocations (introspections are audited too, as token.introspected). */
  const tokenEntries = async (externalId: string) =>
    (await trail(externalId)).filter((e) => e.type === "token.issued" || e.type === "token.revoked");

  async function tokensOf(userId: string) {
    const { rows } = await client.query<{ externalId: string; revocationReason: string | null }>(
      `SELECT a.external_id AS "externalId", t.revocation_reason AS "revocationReason"
       FROM join_tokens t JOIN appointments a ON a.id = t.appointment_id WHERE t.user_id = $1 ORDER BY t.issued_at`,
      [userId],
    );
    return rows;
  }

  async function waitingForHostRefusals(): Promise<number> {
    const res = await t.app.inject({ method: "GET", url: "/metrics" });
    expect(res.statusCode).toBe(200);
    const line = /^joinwindow_refusals_total\{code="waiting_for_host"\} (\d+)$/m.exec(res.body);
    return line ? Number(line[1]) : 0;
  }

  it("holds the customer with 425 waiting_for_host until the agent's token is issued, then admits them", async () => {
    const a = await schedule();
    expect(a.settings.waitingRoom).toBe(true);
    for (let attempt = 0; attempt < 3; attempt++) await expectHeld(a.externalId, a.customer.id);

    const agent = await joined(a.externalId, a.agent.id);
    expect(agent.role).toBe("moderator");
    const customer = await joined(a.externalId, a.customer.id);
    expect(customer.role).toBe("participant");
    expect(await introspect(customer.token)).toMatchObject({ active: true, sub: a.customer.id, role: "participant" });
  });

  it("holds the customer by default: an event without settings gets the contract's waitingRoom true", async () => {
    const a = await schedule({ settings: null });
    expect(a.settings).toEqual({ maxParticipants: 2, waitingRoom: true, recording: false });
    await expectHeld(a.externalId, a.customer.id);
    await joined(a.externalId, a.agent.id);
    await joined(a.externalId, a.customer.id);
  });

  it("lets the customer in first when settings.waitingRoom is false", async () => {
    const a = await schedule({ settings: { waitingRoom: false } });
    expect(a.settings.waitingRoom).toBe(false);
    const customer = await joined(a.externalId, a.customer.id);
    expect(customer.role).toBe("participant");
    expect(await introspect(customer.token)).toMatchObject({ active: true, sub: a.customer.id });
    // The agent comes later, as usual.
    await joined(a.externalId, a.agent.id);
  });

  it("follows a settings change: a later event that turns the waiting room on holds the customer", async () => {
    const a = await schedule({ settings: { waitingRoom: false }, revision: 1 });
    const { agent, customer } = a;
    // Same times (no reschedule, no revocation): only the settings change.
    const delivery = signedDelivery(
      scheduledEvent({ externalId: a.externalId, agentId: agent.id, customerId: customer.id, revision: 2, settings: WAITING_ROOM, now: new Date(a.startsAt) }),
    );
    const res = await t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: delivery.headers, payload: delivery.payload });
    expect(res.json().appointment).toMatchObject({ startsAt: a.startsAt, settings: { waitingRoom: true } });
    await expectHeld(a.externalId, customer.id);
    await joined(a.externalId, agent.id);
    await joined(a.externalId, customer.id);
  });

  it("never holds the agent, whether the customer asked before or not", async () => {
    const a = await schedule();
    expect((await joined(a.externalId, a.agent.id)).role).toBe("moderator");
    // A renewal replaces the agent's token; still not held.
    await joined(a.externalId, a.agent.id);

    const b = await schedule();
    await expectHeld(b.externalId, b.customer.id);
    expect((await joined(b.externalId, b.agent.id)).role).toBe("moderator");
  });

  it("holds the customer again once the agent's token is revoked by an operator, until the agent joins again", async () => {
    const a = await schedule();
    const agent = await joined(a.externalId, a.agent.id);
    const customer = await joined(a.externalId, a.customer.id);

    await revokeToken(agent.tokenId);
    expect(await introspect(agent.token)).toMatchObject({ active: false, reason: "revoked", revocationReason: "operator" });
    await expectHeld(a.externalId, a.customer.id);
    // Holding a renewal takes nothing away: the customer's current token is still live.
    expect((await introspect(customer.token)).active).toBe(true);

    await joined(a.externalId, a.agent.id);
    await joined(a.externalId, a.customer.id);
  });

  it("holds the customer again when the agent moved to another appointment (their token here superseded)", async () => {
    const agentId = uniqueId("agent");
    const a = await schedule({ agentId });
    const elsewhere = await schedule({ agentId });
    await joined(a.externalId, agentId);
    await joined(elsewhere.externalId, agentId, { supersede: true });
    await expectHeld(a.externalId, a.customer.id);
  });

  it("does not hold the customer when the agent renewed: the replaced token's successor is live", async () => {
    const a = await schedule();
    const first = await joined(a.externalId, a.agent.id);
    await joined(a.externalId, a.agent.id);
    expect(await introspect(first.token)).toMatchObject({ active: false, revocationReason: "replaced" });
    await joined(a.externalId, a.customer.id);
  });

  it("checks the waiting room after cancelled, blocked, too_early and join_window_closed", async () => {
    const stranger = await join((await schedule()).externalId, uniqueId("stranger"));
    expect(stranger.statusCode).toBe(404);

    const early = await schedule({ startsInMinutes: 8 });
    const tooEarly = await join(early.externalId, early.customer.id);
    expect(tooEarly.statusCode).toBe(425);
    expect(tooEarly.json()).toMatchObject({ code: "too_early", opensAt: early.join.customerOpensAt });
    // The agent's window is open: once they are in, the customer is still too early, not waiting.
    await joined(early.externalId, early.agent.id);
    expect((await join(early.externalId, early.customer.id)).json().code).toBe("too_early");

    const closed = await schedule({ startsInMinutes: -60, durationMinutes: 30 });
    const late = await join(closed.externalId, closed.customer.id);
    expect(late.statusCode).toBe(410);
    expect(late.json()).toMatchObject({ code: "join_window_closed", closedAt: closed.join.closesAt });

    const blocked = await schedule();
    const block = await t.app.inject({
      method: "POST",
      url: `/v1/appointments/${blocked.externalId}/revoke`,
      headers: operator,
      payload: { reason: "test", block: true },
    });
    expect(block.statusCode).toBe(200);
    expect((await join(blocked.externalId, blocked.customer.id)).json().code).toBe("access_blocked");

    const cancelled = await schedule();
    const delivery = signedDelivery({ type: "appointment.cancelled", data: { externalId: cancelled.externalId } });
    await t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: delivery.headers, payload: delivery.payload });
    expect((await join(cancelled.externalId, cancelled.customer.id)).json().code).toBe("appointment_cancelled");
  });

  it("holds before active_elsewhere: supersede while waiting revokes nothing elsewhere", async () => {
    const customerId = uniqueId("cust");
    const elsewhere = await schedule({ customerId, settings: { waitingRoom: false } });
    const here = await schedule({ customerId });
    const held = await joined(elsewhere.externalId, customerId);

    await expectHeld(here.externalId, customerId);
    await expectHeld(here.externalId, customerId, { supersede: true });
    await expectHeld(here.externalId, customerId, { supersede: false });

    // The other appointment's token is untouched: live, and no revocation anywhere.
    expect(await introspect(held.token)).toMatchObject({ active: true, appointmentId: elsewhere.externalId, sub: customerId });
    expect((await tokenEntries(elsewhere.externalId)).map((e) => e.type)).toEqual(["token.issued"]);
    expect(await tokenEntries(here.externalId)).toEqual([]);
    expect(await tokensOf(customerId)).toEqual([{ externalId: elsewhere.externalId, revocationReason: null }]);

    // Once the host is in, the next check applies: active elsewhere, and supersede moves the customer.
    await joined(here.externalId, here.agent.id);
    const refused = await join(here.externalId, customerId);
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toMatchObject({ code: "active_elsewhere", otherAppointmentId: elsewhere.externalId });
    await joined(here.externalId, customerId, { supersede: true });
    expect(await introspect(held.token)).toMatchObject({ active: false, reason: "revoked", revocationReason: "superseded" });
  });

  it("holds before participant_limit", async () => {
    const a = await schedule({ settings: { ...WAITING_ROOM, maxParticipants: 1 } });
    await expectHeld(a.externalId, a.customer.id);
    await joined(a.externalId, a.agent.id);
    const full = await join(a.externalId, a.customer.id);
    expect(full.statusCode).toBe(409);
    expect(full.json().code).toBe("participant_limit");
  });

  it("issues, stores and audits nothing for a held request", async () => {
    const a = await schedule();
    await expectHeld(a.externalId, a.customer.id);
    await expectHeld(a.externalId, a.customer.id, { supersede: true });

    expect(await tokensOf(a.customer.id)).toEqual([]);
    const entries = await trail(a.externalId);
    expect(entries.filter((e) => e.type === "token.issued")).toEqual([]);
    expect(entries.filter((e) => e.actor === `user:${a.customer.id}`)).toEqual([]);

    // The agent's join is audited as usual, and the customer's once admitted.
    await joined(a.externalId, a.agent.id);
    await joined(a.externalId, a.customer.id);
    expect((await tokenEntries(a.externalId)).map((e) => [e.type, e.actor])).toEqual([
      ["token.issued", `user:${a.agent.id}`],
      ["token.issued", `user:${a.customer.id}`],
    ]);
  });

  it("counts every hold in joinwindow_refusals_total{code=\"waiting_for_host\"}", async () => {
    const a = await schedule();
    const before = await waitingForHostRefusals();
    for (let attempt = 0; attempt < 3; attempt++) await expectHeld(a.externalId, a.customer.id);
    expect(await waitingForHostRefusals()).toBe(before + 3);
    // An admitted request is no refusal.
    await joined(a.externalId, a.agent.id);
    await joined(a.externalId, a.customer.id);
    expect(await waitingForHostRefusals()).toBe(before + 3);
  });
});
