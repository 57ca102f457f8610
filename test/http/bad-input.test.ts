import { createHmac, randomUUID } from "node:crypto";
import net from "node:net";
import { createSigner } from "fast-jwt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, TEST_JWT_SECRET, type TestApp } from "../helpers/app.js";
import { bearer, OPERATOR_SCOPES, scheduledEvent, signedDelivery, userJwt } from "../helpers/fixtures.js";

/**
 * Malformed input anywhere is a 4xx problem+json with a stable code: never a
 * 5xx, never a stack trace, never the credential echoed back.
 */
describe("bad input", () => {
  let t: TestApp;
  let externalId: string;
  const operator = userJwt("ops-1", { scope: OPERATOR_SCOPES });
  // The subscriptions routes (API.md §9) need their own scope; their ids are unknown: nothing is ever created here.
  const manager = userJwt("ops-1", { scope: "subscriptions:manage" });
  const callerFor = (url: string) => bearer(url.startsWith("/v1/subscriptions") ? manager : operator);
  const subscriptionId = randomUUID();

  beforeAll(async () => {
    t = await startApp({ RATE_LIMIT_JOIN_PER_MINUTE: "0" });
    const event = scheduledEvent();
    externalId = event.data.externalId;
    const delivery = signedDelivery(event);
    await t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: delivery.headers, payload: delivery.payload });
  });
  afterAll(async () => {
    await t.close();
  });

  const routes = () => [
    { method: "POST" as const, url: `/v1/appointments/${externalId}/join-token` },
    { method: "GET" as const, url: `/v1/appointments/${externalId}` },
    { method: "GET" as const, url: `/v1/appointments/${externalId}/events` },
    { method: "POST" as const, url: "/v1/tokens/introspect" },
    { method: "POST" as const, url: "/v1/tokens/revoke" },
    { method: "POST" as const, url: `/v1/appointments/${externalId}/revoke` },
    { method: "POST" as const, url: `/v1/appointments/${externalId}/unblock` },
    { method: "POST" as const, url: "/v1/subscriptions" },
    { method: "GET" as const, url: "/v1/subscriptions" },
    { method: "GET" as const, url: `/v1/subscriptions/${subscriptionId}` },
    { method: "DELETE" as const, url: `/v1/subscriptions/${subscriptionId}` },
    { method: "POST" as const, url: `/v1/subscriptions/${subscriptionId}/rotate-secret` },
    { method: "POST" as const, url: `/v1/subscriptions/${subscriptionId}/enable` },
    { method: "GET" as const, url: `/v1/subscriptions/${subscriptionId}/deliveries` },
  ];

  function expectProblem(res: { statusCode: number; headers: Record<string, unknown>; body: string }, secret?: string) {
    expect(res.statusCode, res.body).toBeGreaterThanOrEqual(400);
    expect(res.statusCode, res.body).toBeLessThan(500);
    expect(res.headers["content-type"]).toContain("application/problem+json");
    const body = JSON.parse(res.body);
    expect(typeof body.code).toBe("string");
    expect(body.status).toBe(res.statusCode);
    expect(res.body).not.toMatch(/\bat .+:\d+:\d+/);
    if (secret) expect(res.body).not.toContain(secret);
    return body;
  }

  const wrongKey = createSigner({ algorithm: "HS256", key: "another-secret-that-is-long-enough-0123456789" })({
    sub: "agent",
    exp: Math.floor(Date.now() / 1000) + 600,
  });
  const now = Math.floor(Date.now() / 1000);
  // Signed by hand: fast-jwt's signer refuses to make some of these malformed tokens.
  const sign = (claims: Record<string, unknown>) => {
    const part = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
    const unsigned = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
    return `${unsigned}.${createHmac("sha256", TEST_JWT_SECRET).update(unsigned).digest("base64url")}`;
  };
  const junkAuthorization = [
    "",
    "Bearer",
    "Bearer ",
    "bearer a.b.c",
    "Basic dXNlcjpwYXNz",
    `Bearer ${"x".repeat(10_000)}`,
    "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    `Bearer ${wrongKey}`,
    `Bearer ${sign({ sub: "agent", exp: now - 3600 })}`,
    `Bearer ${sign({ sub: "agent" })}`,
    `Bearer ${sign({ exp: now + 600 })}`,
    `Bearer ${sign({ sub: "agent", exp: "tomorrow" })}`,
    `Bearer ${sign({ sub: 42, exp: now + 600 })}`,
    `Bearer ${sign({ sub: "agent", exp: now + 600, nbf: now + 3600 })}`,
    "Bearer a b",
    "Bearer \u00ff\u00fe",
  ];

  it("answers every junk Authorization header with 401 unauthenticated on every authenticated route", async () => {
    for (const route of routes()) {
      for (const authorization of junkAuthorization) {
        const res = await t.app.inject({ ...route, headers: authorization ? { authorization } : {}, payload: route.method === "POST" ? {} : undefined });
        const body = expectProblem(res, authorization.slice(7, 40) || undefined);
        expect(body.code).toBe("unauthenticated");
      }
    }
  });

  it("answers malformed bodies with 400, unknown media types with 415, huge ones with 413", async () => {
    for (const route of routes().filter((r) => r.method === "POST")) {
      const headers = callerFor(route.url);
      const typed = route.url.startsWith("/v1/tokens/") ? ['{"token": {"$gt": ""}}'] : [];
      for (const payload of ["{", "[1,2", "null", '"a string"', "123", "[]", ...typed]) {
        const res = await t.app.inject({ ...route, headers: { ...headers, "content-type": "application/json" }, payload });
        const body = expectProblem(res);
        if (route.url.startsWith("/v1/subscriptions")) expect(body.code, `${route.url} ${payload}`).toBe("invalid_request");
      }
      const text = expectProblem(await t.app.inject({ ...route, headers: { ...headers, "content-type": "text/plain" }, payload: "hi" }));
      if (route.url.startsWith("/v1/subscriptions")) expect(text.code, route.url).toBe("unsupported_media_type");
      const huge = await t.app.inject({
        ...route,
        headers: { ...headers, "content-type": "application/json" },
        payload: JSON.stringify({ token: "x".repeat(80 * 1024) }),
      });
      expect(expectProblem(huge).code).toBe("payload_too_large");
    }
  });

  it("answers wrong types and over-long strings with 400 and the field's path", async () => {
    const cases: [string, object, string][] = [
      [`/v1/appointments/${externalId}/join-token`, { supersede: 1 }, "/supersede"],
      ["/v1/tokens/introspect", { token: ["a"] }, "/token"],
      ["/v1/tokens/introspect", { token: "x".repeat(9000) }, "/token"],
      ["/v1/tokens/revoke", { tokenId: 7 }, "/tokenId"],
      [`/v1/appointments/${externalId}/revoke`, { block: "true" }, "/block"],
      [`/v1/appointments/${externalId}/revoke`, { reason: "r".repeat(501) }, "/reason"],
      ["/v1/subscriptions", { url: 5 }, "/url"],
      ["/v1/subscriptions", { url: "https://example.invalid/hook", events: "all" }, "/events"],
      ["/v1/subscriptions", { url: "https://example.invalid/hook", events: [1] }, "/events/0"],
      ["/v1/subscriptions", { url: "https://example.invalid/hook", events: ["token.revoked", "token.revoked"] }, "/events"],
      ["/v1/subscriptions", { url: "https://example.invalid/hook", description: 7 }, "/description"],
      ["/v1/subscriptions", { url: "https://example.invalid/hook", description: "d".repeat(501) }, "/description"],
      ["/v1/subscriptions", { url: `https://example.invalid/${"u".repeat(2048)}` }, "/url"],
      ["/v1/subscriptions", { url: "" }, "/url"],
      ["/v1/subscriptions", { events: ["token.revoked"] }, "/url"],
    ];
    for (const [url, payload, path] of cases) {
      const res = await t.app.inject({ method: "POST", url, headers: callerFor(url), payload });
      const body = expectProblem(res);
      expect(res.statusCode).toBe(400);
      expect(body.errors.map((e: { path: string }) => e.path)).toContain(path);
    }
  });

  it("answers odd path parameters and query strings with 4xx", async () => {
    for (const url of [
      `/v1/appointments/${"a".repeat(300)}`,
      "/v1/appointments/%00",
      "/v1/appointments/%E0%A4%A",
      `/v1/appointments/${externalId}/events?limit=-5`,
      `/v1/appointments/${externalId}/events?after=99999999999999999999999`,
    ]) {
      expectProblem(await t.app.inject({ method: "GET", url, headers: bearer(operator) }));
    }
  });

  it("answers odd subscription ids with 4xx, unknown ones with 404 not_found, on every subscriptions route with an id", async () => {
    const idRoutes = (id: string) => [
      { method: "GET" as const, url: `/v1/subscriptions/${id}` },
      { method: "DELETE" as const, url: `/v1/subscriptions/${id}` },
      { method: "POST" as const, url: `/v1/subscriptions/${id}/rotate-secret` },
      { method: "POST" as const, url: `/v1/subscriptions/${id}/enable` },
      { method: "GET" as const, url: `/v1/subscriptions/${id}/deliveries` },
    ];
    for (const id of [randomUUID(), randomUUID().toUpperCase(), "not-a-uuid", "0", "%00", "%20", encodeURIComponent("' OR 1=1 --")]) {
      for (const route of idRoutes(id)) {
        const body = expectProblem(await t.app.inject({ ...route, headers: callerFor(route.url) }));
        expect(body.code, `${route.method} ${route.url}`).toBe("not_found");
      }
    }
    for (const id of ["a".repeat(300), "%E0%A4%A"]) {
      for (const route of idRoutes(id)) {
        expectProblem(await t.app.inject({ ...route, headers: callerFor(route.url) }));
      }
    }
  });

  it("answers junk query strings on the deliveries log with 400 invalid_request", async () => {
    const url = `/v1/subscriptions/${subscriptionId}/deliveries`;
    for (const query of [
      "limit=0",
      "limit=201",
      "limit=-5",
      "limit=abc",
      "limit=1.5",
      "limit=1e2",
      "limit=99999",
      "limit=",
      "limit=1&limit=2",
      "after=abc",
      "after=-1",
      "after=",
      "after=1.5",
      "after=99999999999999999999999",
      "after=1&after=2",
      "after=%00",
    ]) {
      const body = expectProblem(await t.app.inject({ method: "GET", url: `${url}?${query}`, headers: callerFor(url) }));
      expect(body.code, query).toBe("invalid_request");
    }
    const unknown = expectProblem(await t.app.inject({ method: "GET", url: `${url}?limit=5&after=10`, headers: callerFor(url) }));
    expect(unknown.code).toBe("not_found");
  });

  it("answers a webhook with junk headers and bodies with 4xx", async () => {
    const event = scheduledEvent();
    for (const [headers, payload] of [
      [{ "content-type": "application/json", "webhook-id": "x", "webhook-timestamp": "1", "webhook-signature": "v1,x" }, "{}"],
      [{ "content-type": "application/json", "webhook-id": "", "webhook-timestamp": "", "webhook-signature": "" }, "{}"],
      [{ "content-type": "application/json" }, ""],
      [{ "content-type": "application/json", "webhook-signature": "v1,".repeat(5000) }, JSON.stringify(event)],
    ] as const) {
      expectProblem(await t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers, payload }));
    }
    const signed = [
      JSON.stringify({ ...event, data: { ...event.data, startsAt: "2026-13-45T99:99:99" } }),
      JSON.stringify({ ...event, data: { ...event.data, timeZone: "x".repeat(65) } }),
      JSON.stringify({ ...event, data: { ...event.data, agent: "agent-7" } }),
      JSON.stringify({ ...event, data: null }),
      JSON.stringify({ type: "appointment.cancelled" }),
      "[]",
    ];
    for (const raw of signed) {
      const delivery = signedDelivery(undefined, { raw });
      expectProblem(await t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: delivery.headers, payload: raw }));
    }
  });
});

describe("input the database cannot store, and HTTP the parser rejects", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp();
    await t.listen();
  });
  afterAll(async () => {
    await t.close();
  });

  const deliver = (body: unknown) => {
    const delivery = signedDelivery(body);
    return t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: delivery.headers, payload: delivery.payload });
  };

  it("refuses NUL characters and lone surrogates in free text with 400", async () => {
    const event = scheduledEvent();
    for (const agent of [{ id: "a", name: "a\u0000b" }, { id: "a", name: "x\ud800y" }, { id: "a\u0000" }]) {
      const res = await deliver({ ...event, data: { ...event.data, agent } });
      expect(res.statusCode).toBe(400);
    }
    const operator = bearer(userJwt("ops-1", { scope: OPERATOR_SCOPES }));
    await deliver(event);
    const res = await t.app.inject({
      method: "POST",
      url: `/v1/appointments/${event.data.externalId}/revoke`,
      headers: operator,
      payload: { reason: "x\u0000y" },
    });
    expect(res.statusCode).toBe(400);
  });

  it("refuses a JWT whose sub holds control characters with 401", async () => {
    const res = await t.app.inject({ method: "POST", url: "/v1/appointments/x/join-token", headers: bearer(userJwt("a\u0000b")) });
    expect(res.statusCode).toBe(401);
  });

  it("refuses years whose join window would leave the representable range", async () => {
    const event = scheduledEvent();
    for (const [startsAt, endsAt] of [
      ["0001-01-01T00:05:00Z", "0001-01-01T00:35:00Z"],
      ["9999-12-31T23:00:00Z", "9999-12-31T23:30:00Z"],
    ]) {
      const res = await deliver({ ...event, data: { ...event.data, startsAt, endsAt } });
      expect(res.statusCode).toBe(400);
    }
  });

  it("ignores unknown settings instead of storing them", async () => {
    const event = scheduledEvent();
    const res = await deliver({
      ...event,
      data: { ...event.data, settings: { maxParticipants: 2, agentId: "mallory", accessBlocked: true, revision: 99, foo: 1 } },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json().appointment).toMatchObject({ agent: { id: event.data.agent.id }, accessBlocked: false, revision: null });
  });

  it("stores the canonical spelling of the time zone", async () => {
    const event = scheduledEvent();
    const res = await deliver({ ...event, data: { ...event.data, timeZone: "america/new_york" } });
    expect(res.json().appointment.timeZone).toBe("America/New_York");
  });

  it("refuses a webhook-timestamp that is not plain unix seconds", async () => {
    const delivery = signedDelivery(scheduledEvent());
    const res = await t.app.inject({
      method: "POST",
      url: "/v1/webhooks/appointments",
      headers: { ...delivery.headers, "webhook-timestamp": `${delivery.headers["webhook-timestamp"]}abc` },
      payload: delivery.payload,
    });
    expect(res.statusCode).toBe(401);
  });

  it("answers text/plain with 415 and revoke with both token and tokenId with 400", async () => {
    const text = await t.app.inject({
      method: "POST",
      url: "/v1/appointments/x/join-token",
      headers: { ...bearer(userJwt("u")), "content-type": "text/plain" },
      payload: "{}",
    });
    expect(text.statusCode).toBe(415);
    const both = await t.app.inject({
      method: "POST",
      url: "/v1/tokens/revoke",
      headers: bearer(userJwt("ops", { scope: OPERATOR_SCOPES })),
      payload: { token: "a", tokenId: "b" },
    });
    expect(both.statusCode).toBe(400);
  });

  it("answers HTTP that Node's parser rejects with problem+json", async () => {
    const { port } = new URL(t.url);
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(port), "127.0.0.1", () => {
        socket.write("POST /v1/tokens/introspect HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
      });
      let data = "";
      socket.on("data", (chunk) => {
        data += chunk;
      });
      socket.on("end", () => resolve(data));
      socket.on("error", reject);
    });
    expect(raw).toMatch(/^HTTP\/1\.1 400/);
    expect(raw).toContain("application/problem+json");
    expect(raw).toContain('"code":"invalid_request"');
  });
});
