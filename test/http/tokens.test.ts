import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp, TestClock } from "../helpers/app.js";
import { bearer, OPERATOR_SCOPES, type ScheduleOptions, scheduledEvent, signedDelivery, uniqueId, userJwt } from "../helpers/fixtures.js";

const HOUR = 3_600_000;

describe("introspection, revocation, reading and the audit trail", () => {
  let t: TestApp;
  const clock = new TestClock();
  // Long-lived JWTs: the tests move the service's clock hours ahead.
  const gateway = bearer(userJwt("gateway-1", { scope: "tokens:introspect", expiresInSeconds: 86_400 }));
  const operator = bearer(userJwt("ops-1", { scope: OPERATOR_SCOPES, expiresInSeconds: 86_400 }));

  beforeAll(async () => {
    t = await startApp({ RATE_LIMIT_JOIN_PER_MINUTE: "0" }, { clock });
  });
  afterAll(async () => {
    await t.close();
  });

  async function scheduleAndJoin(options: ScheduleOptions = {}) {
    const event = scheduledEvent({ now: clock.now(), ...options });
    const delivery = signedDelivery(event, { timestamp: new Date() });
    const scheduled = await t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: delivery.headers, payload: delivery.payload });
    expect(scheduled.statusCode).toBe(200);
    const joined = await t.app.inject({
      method: "POST",
      url: `/v1/appointments/${event.data.externalId}/join-token`,
      headers: bearer(userJwt(event.data.customer.id, { expiresInSeconds: 86_400 })),
    });
    expect(joined.statusCode).toBe(201);
    return { event: event.data, appointment: scheduled.json().appointment, issued: joined.json() };
  }

  const introspect = (payload: unknown, headers: Record<string, string> = gateway) =>
    t.app.inject({ method: "POST", url: "/v1/tokens/introspect", headers, payload: payload as object });

  it("says active with the contract's claims, from a JSON or a form body", async () => {
    const { event, appointment, issued } = await scheduleAndJoin();
    const expected = {
      active: true,
      jti: issued.tokenId,
      sub: event.customer.id,
      role: "participant",
      appointmentId: event.externalId,
      sessionId: appointment.session.id,
      provider: "local",
      iat: expect.any(Number),
      nbf: Math.floor(Date.parse(appointment.join.customerOpensAt) / 1000),
      exp: Math.floor(Date.parse(appointment.join.closesAt) / 1000),
    };
    const json = await introspect({ token: issued.token });
    expect(json.statusCode).toBe(200);
    expect(json.json()).toEqual(expected);
    const form = await t.app.inject({
      method: "POST",
      url: "/v1/tokens/introspect",
      headers: { ...gateway, "content-type": "application/x-www-form-urlencoded" },
      payload: `token=${encodeURIComponent(issued.token)}`,
    });
    expect(form.statusCode).toBe(200);
    expect(form.json()).toEqual(expected);
  });

  it("fails closed: an unknown token, or one altered in any byte, is inactive", async () => {
    const { issued } = await scheduleAndJoin();
    expect((await introspect({ token: "not-a-token" })).json()).toEqual({ active: false, reason: "unknown" });
    const last = issued.token.at(-1) === "A" ? "B" : "A";
    const altered = `${issued.token.slice(0, -1)}${last}`;
    expect((await introspect({ token: altered })).json()).toEqual({ active: false, reason: "unknown" });
    expect((await introspect({ token: `${issued.token} ` })).json()).toEqual({ active: false, reason: "unknown" });
  });

  it("says expired after closesAt and not_yet_valid before the opening time", async () => {
    const { issued } = await scheduleAndJoin({ startsInMinutes: 3 });
    clock.advance(2 * HOUR);
    try {
      expect((await introspect({ token: issued.token })).json()).toEqual({ active: false, reason: "expired" });
    } finally {
      clock.advance(-2 * HOUR);
    }
    // Tokens are only issued once the window is open, so "not yet valid" is what a
    // gateway hears from a replica whose clock runs behind: here, 5 minutes.
    clock.advance(-5 * 60_000);
    try {
      expect((await introspect({ token: issued.token })).json()).toEqual({ active: false, reason: "not_yet_valid" });
    } finally {
      clock.advance(5 * 60_000);
    }
    expect((await introspect({ token: issued.token })).json().active).toBe(true);
  });

  it("needs the tokens:introspect scope and a valid JWT", async () => {
    expect((await introspect({ token: "x" }, {})).statusCode).toBe(401);
    const noScope = await introspect({ token: "x" }, bearer(userJwt("someone", { scope: "appointments:read" })));
    expect(noScope.statusCode).toBe(403);
    expect(noScope.json().code).toBe("insufficient_scope");
  });

  it("answers 400 without a token and 415 for other media types", async () => {
    expect((await introspect({})).statusCode).toBe(400);
    expect((await introspect({ token: 42 })).statusCode).toBe(400);
    const xml = await t.app.inject({
      method: "POST",
      url: "/v1/tokens/introspect",
      headers: { ...gateway, "content-type": "application/xml" },
      payload: "<token/>",
    });
    expect(xml.statusCode).toBe(415);
    expect(xml.json().code).toBe("unsupported_media_type");
  });

  it("audits every introspection without the token", async () => {
    const { event, issued } = await scheduleAndJoin();
    await introspect({ token: issued.token });
    const events = await t.app.inject({ method: "GET", url: `/v1/appointments/${event.externalId}/events`, headers: operator });
    expect(events.statusCode).toBe(200);
    const types = events.json().events.map((e: { type: string; outcome: string }) => `${e.type}:${e.outcome}`);
    expect(types).toEqual(["webhook.applied:created", "session.created:ready", "token.issued:issued", "token.introspected:active"]);
    expect(events.body).not.toContain(issued.token);
    for (const e of events.json().events) expect(e.at).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  });

  it("revokes one token by value or by id (200 {} whatever the token), with reason operator", async () => {
    const one = await scheduleAndJoin();
    const two = await scheduleAndJoin();
    const revoke = (payload: unknown) => t.app.inject({ method: "POST", url: "/v1/tokens/revoke", headers: operator, payload: payload as object });
    const byValue = await revoke({ token: one.issued.token });
    expect(byValue.statusCode).toBe(200);
    expect(byValue.json()).toEqual({});
    expect((await revoke({ tokenId: two.issued.tokenId })).json()).toEqual({});
    for (const { issued } of [one, two]) {
      expect((await introspect({ token: issued.token })).json()).toEqual({ active: false, reason: "revoked", revocationReason: "operator" });
    }
    expect((await revoke({ token: "never-issued" })).statusCode).toBe(200);
    expect((await revoke({ tokenId: "not-a-uuid" })).statusCode).toBe(200);
    expect((await revoke({ token: one.issued.token })).statusCode).toBe(200);
    expect((await revoke({})).statusCode).toBe(400);
    const form = await t.app.inject({
      method: "POST",
      url: "/v1/tokens/revoke",
      headers: { ...operator, "content-type": "application/x-www-form-urlencoded" },
      payload: "token=whatever",
    });
    expect(form.statusCode).toBe(200);
    const noScope = await t.app.inject({ method: "POST", url: "/v1/tokens/revoke", headers: gateway, payload: { token: "x" } });
    expect(noScope.statusCode).toBe(403);
  });

  it("the kill switch revokes every live token and counts them", async () => {
    const { event, issued } = await scheduleAndJoin();
    const res = await t.app.inject({
      method: "POST",
      url: `/v1/appointments/${event.externalId}/revoke`,
      headers: operator,
      payload: { reason: "agent reported abuse" },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ revoked: 1, appointment: { externalId: event.externalId, accessBlocked: false } });
    expect((await introspect({ token: issued.token })).json()).toMatchObject({ revocationReason: "operator" });
    const unknown = await t.app.inject({ method: "POST", url: `/v1/appointments/${uniqueId()}/revoke`, headers: operator, payload: {} });
    expect(unknown.statusCode).toBe(404);
    const events = (await t.app.inject({ method: "GET", url: `/v1/appointments/${event.externalId}/events`, headers: operator })).json();
    expect(events.events.find((e: { type: string }) => e.type === "token.revoked")).toMatchObject({
      actor: "operator:ops-1",
      detail: { reason: "agent reported abuse", count: 1 },
    });
  });

  it("blocking revokes with reason blocked", async () => {
    const { event, issued } = await scheduleAndJoin();
    await t.app.inject({ method: "POST", url: `/v1/appointments/${event.externalId}/revoke`, headers: operator, payload: { block: true } });
    expect((await introspect({ token: issued.token })).json()).toMatchObject({ revocationReason: "blocked" });
  });

  it("pages the audit trail with after and limit", async () => {
    const { event } = await scheduleAndJoin();
    const url = `/v1/appointments/${event.externalId}/events`;
    const first = (await t.app.inject({ method: "GET", url: `${url}?limit=2`, headers: operator })).json();
    expect(first.events).toHaveLength(2);
    expect(first.nextCursor).toBe(first.events[1].id);
    const rest = (await t.app.inject({ method: "GET", url: `${url}?after=${first.nextCursor}&limit=100`, headers: operator })).json();
    expect(rest.events.map((e: { type: string }) => e.type)).toEqual(["token.issued"]);
    expect(rest.nextCursor).toBeNull();
    for (const bad of ["limit=0", "limit=501", "limit=abc", "after=-1"]) {
      expect((await t.app.inject({ method: "GET", url: `${url}?${bad}`, headers: operator })).statusCode).toBe(400);
    }
    expect((await t.app.inject({ method: "GET", url: `/v1/appointments/${uniqueId()}/events`, headers: operator })).statusCode).toBe(404);
    const participant = bearer(userJwt(event.customer.id));
    expect((await t.app.inject({ method: "GET", url, headers: participant })).statusCode).toBe(403);
  });

  it("lets the agent, the customer and appointments:read read an appointment, and nobody else", async () => {
    const { event, appointment } = await scheduleAndJoin();
    const url = `/v1/appointments/${event.externalId}`;
    for (const headers of [bearer(userJwt(event.agent.id)), bearer(userJwt(event.customer.id)), operator]) {
      const res = await t.app.inject({ method: "GET", url, headers });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual(appointment);
    }
    const stranger = await t.app.inject({ method: "GET", url, headers: bearer(userJwt("stranger")) });
    expect(stranger.statusCode).toBe(404);
    expect((await t.app.inject({ method: "GET", url })).statusCode).toBe(401);
  });

  it("publishes the local provider's public keys without any private member", async () => {
    await scheduleAndJoin();
    const res = await t.app.inject({ method: "GET", url: "/.well-known/jwks.json" });
    expect(res.statusCode).toBe(200);
    const { keys } = res.json();
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) {
      expect(Object.keys(key).sort()).toEqual(["alg", "crv", "kid", "kty", "use", "x", "y"]);
    }
  });
});
