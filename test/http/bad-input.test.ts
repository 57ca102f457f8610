import { createHash, createHmac, randomUUID } from "node:crypto";
import net from "node:net";
import type { LightMyRequestResponse } from "fastify";
import { createSigner } from "fast-jwt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, TEST_JWT_SECRET, type TestApp } from "../helpers/app.js";
import { liveKitParticipantEvent, type SignedWebhook, signLiveKitWebhook } from "../helpers/fake-livekit.js";
import { bearer, OPERATOR_SCOPES, scheduledEvent, signedDelivery, userJwt } from "../helpers/fixtures.js";
import { createMigratedDatabase, dropDatabase } from "../helpers/postgres.js";

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
    { method: "POST" as const, url: "/v1/presence" },
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
      const typed = route.url.startsWith("/v1/tokens/") || route.url === "/v1/presence" ? ['{"token": {"$gt": ""}}'] : [];
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
      ["/v1/presence", { token: ["a"], state: "joined" }, "/token"],
      ["/v1/presence", { token: "x".repeat(9000), state: "joined" }, "/token"],
      ["/v1/presence", { token: "", state: "joined" }, "/token"],
      ["/v1/presence", { tokenId: 7, state: "left" }, "/tokenId"],
      ["/v1/presence", { tokenId: "x".repeat(65), state: "left" }, "/tokenId"],
      ["/v1/presence", { tokenId: null, state: "left" }, "/tokenId"],
      ["/v1/presence", { token: "a", state: "present" }, "/state"],
      ["/v1/presence", { token: "a", state: true }, "/state"],
      ["/v1/presence", { token: "a", state: ["joined"] }, "/state"],
      ["/v1/presence", { token: "a" }, "/state"],
    ];
    for (const [url, payload, path] of cases) {
      const res = await t.app.inject({ method: "POST", url, headers: callerFor(url), payload });
      const body = expectProblem(res);
      expect(res.statusCode).toBe(400);
      expect(body.errors.map((e: { path: string }) => e.path)).toContain(path);
    }
  });

  it("answers junk presence reports with stable codes: 400 invalid_request, 415, 413, JSON or form", async () => {
    const headers = bearer(operator);
    const json = { ...headers, "content-type": "application/json" };
    const form = { ...headers, "content-type": "application/x-www-form-urlencoded" };
    const post = (h: Record<string, string>, payload: string) => t.app.inject({ method: "POST", url: "/v1/presence", headers: h, payload });
    for (const payload of ["{", '{"token": "a", "state": "joined"', "null", "[]", '"joined"', "0", "{}", '{"__proto__": {"state": "joined"}, "token": "a"}']) {
      expect(expectProblem(await post(json, payload)).code, payload).toBe("invalid_request");
    }
    for (const payload of ["", "token=a", "state=joined", "token=a&token=b&state=joined", "token=a&state=joined&state=left", "token=a&tokenId=b&state=joined"]) {
      expect(expectProblem(await post(form, payload)).code, payload).toBe("invalid_request");
    }
    for (const type of ["text/plain", "application/xml", "multipart/form-data; boundary=x", "application/octet-stream"]) {
      expect(expectProblem(await post({ ...headers, "content-type": type }, "token=a&state=joined")).code, type).toBe("unsupported_media_type");
    }
    expect(expectProblem(await post(json, JSON.stringify({ token: "x".repeat(80 * 1024), state: "joined" }))).code).toBe("payload_too_large");
    expect(expectProblem(await post(form, `token=${"x".repeat(80 * 1024)}&state=joined`)).code).toBe("payload_too_large");
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

describe("LiveKit's callbacks with junk (VIDEO_PROVIDER=livekit)", () => {
  const credentials = { apiKey: "APIbadInput7Xq", apiSecret: "bad-input-livekit-secret-0123456789abcdefgh" };
  const url = "/v1/providers/livekit/events";
  let database: { name: string; url: string };
  let t: TestApp;
  /** A well-formed participant_joined for a room nobody knows: the baseline every junk variant departs from. */
  let body: string;
  let signed: SignedWebhook;

  beforeAll(async () => {
    // Its own database: this app's workers would otherwise try to reach LiveKit for the run's appointments.
    database = await createMigratedDatabase();
    t = await startApp({
      DATABASE_URL: database.url,
      VIDEO_PROVIDER: "livekit",
      // Nothing listens there: these requests never need LiveKit's API.
      LIVEKIT_URL: `http://127.0.0.1:${await closedPort()}`,
      LIVEKIT_API_KEY: credentials.apiKey,
      LIVEKIT_API_SECRET: credentials.apiSecret,
    });
    const at = new Date();
    body = liveKitParticipantEvent({ event: "participant_joined", room: "joinwindow-nobody", identity: "someone", createdAt: at, joinedAt: at });
    signed = await signLiveKitWebhook(body, credentials);
  });
  afterAll(async () => {
    await t?.close();
    if (database) await dropDatabase(database.name);
  });

  const post = (headers: Record<string, string>, payload: string) => t.app.inject({ method: "POST", url, headers, payload });

  function expectProblem(res: LightMyRequestResponse) {
    expect(res.statusCode, res.body).toBeGreaterThanOrEqual(400);
    expect(res.statusCode, res.body).toBeLessThan(500);
    expect(res.headers["content-type"]).toContain("application/problem+json");
    const problem = res.json();
    expect(problem.status).toBe(res.statusCode);
    expect(res.body).not.toMatch(/\bat .+:\d+:\d+/);
    expect(res.body).not.toContain(credentials.apiSecret);
    expect(res.body).not.toContain("eyJ");
    return problem as { code: string; status: number };
  }

  /** A JWT shaped as LiveKit signs webhooks, with the claims and key given. */
  const liveKitJwt = (claims: Record<string, unknown>, secret = credentials.apiSecret) =>
    createSigner({ algorithm: "HS256", key: secret })({ iss: credentials.apiKey, nbf: Math.floor(Date.now() / 1000), ...claims });
  const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest("base64");

  it("takes a correctly signed callback (so the refusals below are about the junk)", async () => {
    const res = await post(signed.headers, body);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({ taken: 0, ignored: 1 });
  });

  it("answers junk Authorization headers with 401 invalid_signature", async () => {
    const now = Math.floor(Date.now() / 1000);
    const authorizations = [
      undefined,
      "",
      "Bearer",
      "Basic dXNlcjpwYXNz",
      "a.b.c",
      "x".repeat(10_000),
      "eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.",
      // Right shape, wrong secret / key / body / time.
      liveKitJwt({ sha256: sha256(body), exp: now + 300 }, "another-secret-that-is-long-enough-0123456789"),
      liveKitJwt({ sha256: sha256(body), exp: now + 300, iss: "APIsomeoneElse" }),
      liveKitJwt({ sha256: sha256(`${body} `), exp: now + 300 }),
      liveKitJwt({ exp: now + 300 }),
      liveKitJwt({ sha256: sha256(body), exp: now - 3600, nbf: now - 7200 }),
      liveKitJwt({ sha256: sha256(body), exp: now + 7200, nbf: now + 3600 }),
      `${signed.headers.authorization}x`,
      signed.headers.authorization.split(".").slice(0, 2).join("."),
    ];
    for (const authorization of authorizations) {
      const headers: Record<string, string> = { "content-type": "application/webhook+json", ...(authorization !== undefined ? { authorization } : {}) };
      const problem = expectProblem(await post(headers, body));
      expect(problem.code, String(authorization).slice(0, 40)).toBe("invalid_signature");
      expect(problem.status).toBe(401);
    }
  });

  it("answers junk bodies with 401 invalid_signature unsigned, and a 4xx when signed", async () => {
    const junk = ["", "{", "null", "[]", '"participant_joined"', "0", '{"event": 5}', '{"event": "participant_joined", "room": "r"}', "\u0000", "{\"__proto__\": {}}"];
    for (const payload of junk) {
      for (const type of ["application/json", "application/webhook+json"]) {
        // Signed for another body: the signature covers these exact bytes.
        const problem = expectProblem(await post({ ...signed.headers, "content-type": type }, payload));
        expect(problem.code, payload).toBe("invalid_signature");
      }
      const { headers } = await signLiveKitWebhook(payload, credentials);
      const res = await post(headers, payload);
      expect(res.statusCode, `${payload}: ${res.body}`).toBeLessThan(500);
      if (res.statusCode >= 400) expect(["invalid_signature", "invalid_request"], payload).toContain(expectProblem(res).code);
    }
  });

  it("answers bodies over 64 KiB with 413 payload_too_large, before looking at the signature", async () => {
    const huge = JSON.stringify({ event: "participant_joined", padding: "x".repeat(80 * 1024) });
    const { headers } = await signLiveKitWebhook(huge, credentials);
    for (const attempt of [headers, signed.headers, { "content-type": "application/json" }]) {
      expect(expectProblem(await post(attempt, huge)).code).toBe("payload_too_large");
    }
  });

  it("answers other media types with 415 unsupported_media_type", async () => {
    for (const type of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml", "application/octet-stream"]) {
      const problem = expectProblem(await post({ ...signed.headers, "content-type": type }, body));
      expect(problem.code, type).toBe("unsupported_media_type");
    }
  });

  it("answers another provider's callback path with 404 not_found", async () => {
    for (const provider of ["daily", "vonage", "local", "LiveKit", "genesys"]) {
      const res = await t.app.inject({ method: "POST", url: `/v1/providers/${provider}/events`, headers: signed.headers, payload: body });
      expect(expectProblem(res).code, provider).toBe("not_found");
    }
    // A name longer than any provider's fails the path's schema first: still a 4xx.
    expectProblem(await t.app.inject({ method: "POST", url: `/v1/providers/${"x".repeat(100)}/events`, headers: signed.headers, payload: body }));
  });
});

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
