import { createHash, createPublicKey } from "node:crypto";
import { createVerifier } from "fast-jwt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp } from "../helpers/app.js";
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

describe("POST /v1/appointments/{externalId}/join-token", () => {
  let t: TestApp;
  const operator = bearer(userJwt("ops-1", { scope: OPERATOR_SCOPES }));

  beforeAll(async () => {
    t = await startApp({ RATE_LIMIT_JOIN_PER_MINUTE: "0" });
  });
  afterAll(async () => {
    await t.close();
  });

  async function schedule(options: ScheduleOptions = {}) {
    const event = scheduledEvent(options);
    const delivery = signedDelivery(event);
    const res = await t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: delivery.headers, payload: delivery.payload });
    expect(res.statusCode).toBe(200);
    return { ...event.data, appointment: res.json().appointment };
  }

  const deliver = async (body: unknown) => {
    const delivery = signedDelivery(body);
    return t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: delivery.headers, payload: delivery.payload });
  };

  const join = (externalId: string, userId: string, body?: unknown) =>
    t.app.inject({
      method: "POST",
      url: `/v1/appointments/${encodeURIComponent(externalId)}/join-token`,
      headers: bearer(userJwt(userId)),
      ...(body !== undefined ? { payload: body as object } : {}),
    });

  const introspect = (token: string) =>
    t.app.inject({ method: "POST", url: "/v1/tokens/introspect", headers: operator, payload: { token } });

  it("issues the agent a moderator token and the customer a participant token, as API.md §3 shows", async () => {
    const a = await schedule();
    const res = await join(a.externalId, a.agent.id);
    expect(res.statusCode).toBe(201);
    expect(res.headers["cache-control"]).toBe("no-store");
    const body = res.json();
    expect(body).toEqual({
      appointmentId: a.externalId,
      provider: "local",
      applicationId: null,
      sessionId: a.appointment.session.id,
      token: expect.any(String),
      tokenId: expect.stringMatching(/^[0-9a-f-]{36}$/),
      roomUrl: null,
      role: "moderator",
      notBefore: a.appointment.join.agentOpensAt,
      expiresAt: a.appointment.join.closesAt,
    });
    const customer = await join(a.externalId, a.customer.id, { supersede: false });
    expect(customer.statusCode).toBe(201);
    expect(customer.json()).toMatchObject({ role: "participant", notBefore: a.appointment.join.customerOpensAt });
  });

  it("signs a local token that verifies with the published JWKS and carries exactly the contract's claims", async () => {
    const a = await schedule();
    const issued = (await join(a.externalId, a.customer.id)).json();
    const jwks = (await t.app.inject({ method: "GET", url: "/.well-known/jwks.json" })).json();
    const header = JSON.parse(Buffer.from(issued.token.split(".")[0], "base64url").toString());
    expect(header).toMatchObject({ alg: "ES256", kid: expect.any(String) });
    const jwk = jwks.keys.find((k: { kid: string }) => k.kid === header.kid);
    expect(jwk).toBeDefined();
    expect(jwk.d).toBeUndefined();
    const key = createPublicKey({ key: jwk, format: "jwk" }).export({ type: "spki", format: "pem" }).toString();
    const claims = createVerifier({ key, algorithms: ["ES256"], allowedAud: "joinwindow" })(issued.token);
    expect(claims).toEqual({
      iss: "joinwindow",
      sub: a.customer.id,
      aud: "joinwindow",
      sid: a.appointment.session.id,
      role: "participant",
      nbf: Math.floor(Date.parse(a.appointment.join.customerOpensAt) / 1000),
      exp: Math.floor(Date.parse(a.appointment.join.closesAt) / 1000),
      iat: expect.any(Number),
      jti: issued.tokenId,
    });
  });

  it("stores only a hash of the token", async () => {
    const a = await schedule();
    const issued = (await join(a.externalId, a.agent.id)).json();
    const row = await t.db.prisma.joinToken.findUniqueOrThrow({ where: { id: issued.tokenId } });
    expect(row.tokenHash).toBe(createHash("sha256").update(issued.token).digest("hex"));
    expect(JSON.stringify(row)).not.toContain(issued.token);
    const audit = await t.db.prisma.auditEvent.findMany({ where: { externalId: a.externalId } });
    expect(JSON.stringify(audit.map((e) => e.detail))).not.toContain(issued.token);
  });

  it("replaces the caller's previous token: one live token per participant", async () => {
    const a = await schedule();
    const first = (await join(a.externalId, a.agent.id)).json();
    const second = (await join(a.externalId, a.agent.id)).json();
    expect(second.tokenId).not.toBe(first.tokenId);
    expect((await introspect(first.token)).json()).toEqual({ active: false, reason: "revoked", revocationReason: "replaced" });
    expect((await introspect(second.token)).json()).toMatchObject({ active: true, jti: second.tokenId });
  });

  it("answers 401 without a valid JWT, before anything else", async () => {
    const a = await schedule();
    for (const headers of [{}, { authorization: "Bearer junk" }, { authorization: "Basic dXNlcjpwYXNz" }]) {
      const res = await t.app.inject({ method: "POST", url: `/v1/appointments/${a.externalId}/join-token`, headers, payload: { supersede: "x" } });
      expect(res.statusCode).toBe(401);
      expect(res.json().code).toBe("unauthenticated");
    }
    const expired = await t.app.inject({
      method: "POST",
      url: `/v1/appointments/${a.externalId}/join-token`,
      headers: bearer(userJwt(a.agent.id, { expiresInSeconds: -120 })),
    });
    expect(expired.statusCode).toBe(401);
  });

  it("answers 400 for a body that does not match the schema, before looking the appointment up", async () => {
    const res = await join("no-such-appointment", "someone", { supersede: "yes" });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ code: "invalid_request", errors: [{ path: "/supersede" }] });
    const notJson = await t.app.inject({
      method: "POST",
      url: "/v1/appointments/x/join-token",
      headers: { ...bearer(userJwt("someone")), "content-type": "application/json" },
      payload: "{",
    });
    expect(notJson.statusCode).toBe(400);
  });

  it("answers 404 alike for an unknown appointment and for a stranger", async () => {
    const a = await schedule();
    const unknown = await join(uniqueId(), a.agent.id);
    const stranger = await join(a.externalId, "someone-else");
    expect(unknown.statusCode).toBe(404);
    expect(stranger.statusCode).toBe(404);
    expect(stranger.json()).toEqual(unknown.json());
  });

  it("answers 409 appointment_cancelled, before the kill switch", async () => {
    const a = await schedule();
    await t.app.inject({ method: "POST", url: `/v1/appointments/${a.externalId}/revoke`, headers: operator, payload: { block: true } });
    await deliver(cancelledEvent(a.externalId));
    const res = await join(a.externalId, a.agent.id);
    expect(res.statusCode).toBe(409);
    expect(res.json().code).toBe("appointment_cancelled");
  });

  it("answers 403 access_blocked under the kill switch, before the window check, until unblocked", async () => {
    const a = await schedule({ startsInMinutes: 120 });
    const blocked = await t.app.inject({
      method: "POST",
      url: `/v1/appointments/${a.externalId}/revoke`,
      headers: operator,
      payload: { reason: "suspected fraud", block: true },
    });
    expect(blocked.statusCode).toBe(200);
    expect(blocked.json()).toMatchObject({ revoked: 0, appointment: { accessBlocked: true } });
    const res = await join(a.externalId, a.agent.id);
    expect(res.statusCode).toBe(403);
    expect(res.json().code).toBe("access_blocked");
    const unblocked = await t.app.inject({ method: "POST", url: `/v1/appointments/${a.externalId}/unblock`, headers: operator });
    expect(unblocked.json().appointment.accessBlocked).toBe(false);
    expect((await join(a.externalId, a.agent.id)).statusCode).toBe(425);
  });

  it("answers 425 too_early with opensAt and Retry-After, per role", async () => {
    const a = await schedule({ startsInMinutes: 8 });
    const agent = await join(a.externalId, a.agent.id);
    expect(agent.statusCode).toBe(201);
    const customer = await join(a.externalId, a.customer.id);
    expect(customer.statusCode).toBe(425);
    expect(customer.json()).toMatchObject({ code: "too_early", opensAt: a.appointment.join.customerOpensAt });
    const retryAfter = Number(customer.headers["retry-after"]);
    expect(retryAfter).toBeGreaterThan(150);
    expect(retryAfter).toBeLessThanOrEqual(180);
  });

  it("answers 410 join_window_closed with closedAt after the grace period", async () => {
    const a = await schedule({ startsInMinutes: -60, durationMinutes: 30 });
    const res = await join(a.externalId, a.customer.id);
    expect(res.statusCode).toBe(410);
    expect(res.json()).toMatchObject({ code: "join_window_closed", closedAt: a.appointment.join.closesAt });
    // Still inside the grace period: 20 minutes after a start, a 10-minute appointment is open for 5 more.
    const late = await schedule({ startsInMinutes: -20, durationMinutes: 10 });
    expect((await join(late.externalId, late.customer.id)).statusCode).toBe(201);
  });

  it("answers 409 active_elsewhere with the other appointment, and supersede moves the caller", async () => {
    const customerId = uniqueId("cust");
    const first = await schedule({ customerId });
    const second = await schedule({ customerId });
    const held = (await join(first.externalId, customerId)).json();
    const refused = await join(second.externalId, customerId);
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toMatchObject({ code: "active_elsewhere", otherAppointmentId: first.externalId });
    expect((await introspect(held.token)).json().active).toBe(true);

    const moved = await join(second.externalId, customerId, { supersede: true });
    expect(moved.statusCode).toBe(201);
    expect((await introspect(held.token)).json()).toEqual({ active: false, reason: "revoked", revocationReason: "superseded" });
  });

  it("audits what a join revoked, per appointment, next to the token it issued", async () => {
    const customerId = uniqueId("cust");
    const first = await schedule({ customerId });
    const second = await schedule({ customerId });
    const trail = async (externalId: string) =>
      (await t.app.inject({ method: "GET", url: `/v1/appointments/${externalId}/events`, headers: operator }))
        .json()
        .events.filter((e: { type: string }) => e.type.startsWith("token."))
        .map((e: { type: string; actor: string; outcome: string; detail: unknown }) => ({
          type: e.type,
          actor: e.actor,
          outcome: e.outcome,
          detail: e.detail,
        }));

    const held = (await join(first.externalId, customerId)).json();
    const renewed = (await join(first.externalId, customerId)).json();
    const moved = (await join(second.externalId, customerId, { supersede: true })).json();

    const actor = `user:${customerId}`;
    const issued = (token: { tokenId: string; expiresAt: string }) => ({
      tokenId: token.tokenId,
      userId: customerId,
      role: "participant",
      expiresAt: token.expiresAt,
    });
    expect(await trail(first.externalId)).toEqual([
      { type: "token.issued", actor, outcome: "issued", detail: issued(held) },
      { type: "token.revoked", actor, outcome: "revoked", detail: { reason: "replaced", count: 1, userId: customerId } },
      { type: "token.issued", actor, outcome: "replaced_previous", detail: issued(renewed) },
      {
        type: "token.revoked",
        actor,
        outcome: "revoked",
        detail: { reason: "superseded", count: 1, userId: customerId, by: second.externalId },
      },
    ]);
    expect(await trail(second.externalId)).toEqual([{ type: "token.issued", actor, outcome: "issued", detail: issued(moved) }]);
  });

  it("answers 409 participant_limit when maxParticipants is 1", async () => {
    const a = await schedule({ settings: { maxParticipants: 1 } });
    expect((await join(a.externalId, a.agent.id)).statusCode).toBe(201);
    const res = await join(a.externalId, a.customer.id);
    expect(res.statusCode).toBe(409);
    expect(res.json().code).toBe("participant_limit");
    // The holder may still renew their own token.
    expect((await join(a.externalId, a.agent.id)).statusCode).toBe(201);
  });

  it("makes one more attempt at a pending session on the first join request", async () => {
    const a = await schedule();
    // As an earlier provider outage leaves it (test/providers/outages.test.ts has providers that fail).
    await t.db.prisma.appointment.update({
      where: { externalId: a.externalId },
      data: { sessionId: null, sessionStatus: "pending", sessionNextAttemptAt: new Date(Date.now() + 3_600_000) },
    });
    const res = await join(a.externalId, a.agent.id);
    expect(res.statusCode).toBe(201);
    const row = await t.db.prisma.appointment.findUniqueOrThrow({ where: { externalId: a.externalId } });
    expect(row).toMatchObject({ sessionStatus: "ready", sessionId: res.json().sessionId });
  });

  it("revokes on reschedule, reassignment and cancellation, with the contract's reasons", async () => {
    const a = await schedule({ revision: 1 });
    const agentToken = (await join(a.externalId, a.agent.id)).json().token;
    const customerToken = (await join(a.externalId, a.customer.id)).json().token;

    // Reassign the customer: only the replaced customer's token goes.
    await deliver(scheduledEvent({ externalId: a.externalId, revision: 2, agentId: a.agent.id, customerId: "new-customer", now: new Date(a.startsAt) }));
    expect((await introspect(customerToken)).json()).toMatchObject({ reason: "revoked", revocationReason: "reassigned" });
    expect((await introspect(agentToken)).json().active).toBe(true);
    expect((await join(a.externalId, a.customer.id)).statusCode).toBe(404);

    // Reschedule: everyone's tokens go.
    const newCustomerToken = (await join(a.externalId, "new-customer")).json().token;
    await deliver(scheduledEvent({ externalId: a.externalId, revision: 3, agentId: a.agent.id, customerId: "new-customer", startsInMinutes: 2 }));
    expect((await introspect(agentToken)).json()).toMatchObject({ revocationReason: "rescheduled" });
    expect((await introspect(newCustomerToken)).json()).toMatchObject({ revocationReason: "rescheduled" });

    // Cancel: the fresh token goes too.
    const fresh = (await join(a.externalId, a.agent.id)).json().token;
    await deliver(cancelledEvent(a.externalId, 4));
    expect((await introspect(fresh)).json()).toMatchObject({ revocationReason: "cancelled" });
  });

  it("changes nothing when a request is refused", async () => {
    const customerId = uniqueId("cust");
    const first = await schedule({ customerId });
    const second = await schedule({ customerId });
    await join(first.externalId, customerId);
    const before = await t.db.prisma.joinToken.count({ where: { userId: customerId } });
    expect((await join(second.externalId, customerId)).statusCode).toBe(409);
    expect(await t.db.prisma.joinToken.count({ where: { userId: customerId } })).toBe(before);
  });
});

describe("per-user join rate limit", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp({ RATE_LIMIT_JOIN_PER_MINUTE: "2" });
  });
  afterAll(async () => {
    await t.close();
  });

  it("answers 429 rate_limited with Retry-After past the limit, per user", async () => {
    const codes: number[] = [];
    let last;
    for (let i = 0; i < 3; i++) {
      last = await t.app.inject({ method: "POST", url: `/v1/appointments/x${i}/join-token`, headers: bearer(userJwt("busy-user")) });
      codes.push(last.statusCode);
    }
    expect(codes).toEqual([404, 404, 429]);
    expect(last?.json().code).toBe("rate_limited");
    expect(Number(last?.headers["retry-after"])).toBeGreaterThan(0);
    const other = await t.app.inject({ method: "POST", url: "/v1/appointments/x/join-token", headers: bearer(userJwt("calm-user")) });
    expect(other.statusCode).toBe(404);
  });
});

describe("AUTH_JWT_USER_CLAIM=email: users matched by e-mail while the identity provider's sub is opaque", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp({ RATE_LIMIT_JOIN_PER_MINUTE: "0", AUTH_JWT_USER_CLAIM: "email" });
  });
  afterAll(async () => {
    await t.close();
  });

  const asUser = (email: string, sub = `00u${uniqueId("idp")}`, scope?: string) =>
    bearer(userJwt(sub, { claims: { email }, ...(scope ? { scope } : {}) }));

  it("gives the scheduler's e-mail ids their tokens, reads their own appointment, and knows nobody by sub", async () => {
    const agent = `${uniqueId("dr")}@clinic.example`;
    const customer = `${uniqueId("pat")}@mail.example`;
    const event = scheduledEvent({ agentId: agent, customerId: customer });
    const delivery = signedDelivery(event);
    const stored = await t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: delivery.headers, payload: delivery.payload });
    expect(stored.statusCode).toBe(200);
    const { externalId } = event.data;
    const join = (headers: Record<string, string>) =>
      t.app.inject({ method: "POST", url: `/v1/appointments/${externalId}/join-token`, headers });

    const agentToken = await join(asUser(agent));
    expect(agentToken.statusCode).toBe(201);
    expect(agentToken.json()).toMatchObject({ role: "moderator" });
    expect((await join(asUser(customer))).json()).toMatchObject({ role: "participant" });
    const own = await t.app.inject({ method: "GET", url: `/v1/appointments/${externalId}`, headers: asUser(customer) });
    expect(own.statusCode).toBe(200);

    // The e-mail as sub, without the email claim, is nobody: the claim is required.
    const bySub = await join(bearer(userJwt(agent)));
    expect(bySub.statusCode).toBe(401);
    expect(bySub.json()).toMatchObject({ code: "unauthenticated" });
    // Someone else's e-mail is not theirs to use.
    expect((await join(asUser(`${uniqueId("other")}@mail.example`))).statusCode).toBe(404);
  });
});
