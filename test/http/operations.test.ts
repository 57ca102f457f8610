import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startApp, TEST_WEBHOOK_SECRET, type TestApp } from "../helpers/app.js";
import { scheduledEvent, signedDelivery, userJwt } from "../helpers/fixtures.js";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy.js";

describe("operations endpoints", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp();
  });
  afterAll(async () => {
    await t.close();
  });

  it("GET / sends a browser to the API documentation", async () => {
    const res = await t.app.inject({ method: "GET", url: "/" });
    expect(res.statusCode).toBe(302);
    expect(res.headers.location).toBe("/docs");
  });

  it("GET /healthz answers while the process is up", async () => {
    const res = await t.app.inject({ method: "GET", url: "/healthz" });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: "ok" });
  });

  it("GET /readyz answers 200 when the database is reachable", async () => {
    const res = await t.app.inject({ method: "GET", url: "/readyz" });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: "ready" });
  });

  it("answers unknown routes with a problem+json 404 that does not echo the path", async () => {
    const res = await t.app.inject({ method: "GET", url: "/v1/nowhere/eyJhbGciOiJIUzI1NiJ9.secret" });
    expect(res.statusCode).toBe(404);
    expect(res.headers["content-type"]).toBe("application/problem+json; charset=utf-8");
    expect(res.json()).toEqual({
      type: "urn:joinwindow:problem:not_found",
      title: "Not Found",
      status: 404,
      detail: "No such route.",
      code: "not_found",
    });
    expect(res.body).not.toContain("eyJhbGciOiJIUzI1NiJ9");
  });

  it("gives every answer a request id, and keeps a caller's well-formed one", async () => {
    const mine = await t.app.inject({ method: "GET", url: "/healthz", headers: { "x-request-id": "trace-123" } });
    expect(mine.headers["x-request-id"]).toBe("trace-123");
    const bad = await t.app.inject({ method: "GET", url: "/healthz", headers: { "x-request-id": "no spaces <>" } });
    expect(bad.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("sets helmet's security headers", async () => {
    const res = await t.app.inject({ method: "GET", url: "/healthz" });
    expect(res.headers["x-content-type-options"]).toBe("nosniff");
    expect(res.headers["content-security-policy"]).toContain("default-src 'none'");
  });

  it("publishes an OpenAPI 3.1 document and a docs page", async () => {
    const spec = await t.app.inject({ method: "GET", url: "/openapi.json" });
    expect(spec.statusCode).toBe(200);
    expect(spec.json()).toMatchObject({ openapi: "3.1.0", info: { title: "joinwindow" } });
    expect(Object.keys(spec.json().paths)).toEqual(expect.arrayContaining(["/healthz", "/readyz"]));
    for (const url of ["/docs", "/docs/"]) {
      const docs = await t.app.inject({ method: "GET", url });
      expect(docs.statusCode).toBe(200);
      expect(docs.headers["content-type"]).toContain("text/html");
    }
  });

  it("counts requests per route template and status in Prometheus text", async () => {
    await t.app.inject({ method: "GET", url: "/healthz" });
    await t.app.inject({ method: "GET", url: "/no/such/thing" });
    const res = await t.app.inject({ method: "GET", url: "/metrics" });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toContain("text/plain");
    expect(res.body).toMatch(/http_requests_total\{method="GET",route="\/healthz",status_code="200"\} \d+/);
    expect(res.body).toMatch(/http_requests_total\{method="GET",route="unmatched",status_code="404"\} \d+/);
    expect(res.body).toMatch(/http_request_duration_seconds_bucket\{le="0.005",method="GET",route="\/healthz"/);
    expect(res.body).not.toContain("/no/such/thing");
  });
});

describe("when the database goes away", () => {
  let proxy: TcpProxy;
  let t: TestApp;
  beforeAll(async () => {
    const direct = new URL(inject("databaseUrl"));
    proxy = await startTcpProxy(direct.hostname, Number(direct.port || 5432));
    t = await startApp({ DATABASE_URL: proxy.urlFor(direct.toString()), DATABASE_ACQUIRE_TIMEOUT_MS: "500" });
    await t.listen();
  });
  afterAll(async () => {
    proxy.restore();
    await t.close();
    await proxy.close();
  });

  it("/readyz says 503 not_ready while it is refused, and 200 again when it returns", async () => {
    expect((await fetch(`${t.url}/readyz`)).status).toBe(200);

    proxy.refuse();
    const down = await fetch(`${t.url}/readyz`);
    expect(down.status).toBe(503);
    expect(down.headers.get("content-type")).toContain("application/problem+json");
    expect(await down.json()).toMatchObject({ status: 503, code: "not_ready" });

    proxy.restore();
    await expect.poll(async () => (await fetch(`${t.url}/readyz`)).status, { timeout: 5000 }).toBe(200);
  });

  it("a stalled database fails requests with 503 not_ready within the acquire timeout instead of hanging", async () => {
    proxy.stall();
    try {
      const started = Date.now();
      const res = await fetch(`${t.url}/readyz`);
      expect(res.status).toBe(503);
      expect(((await res.json()) as { code: string }).code).toBe("not_ready");
      expect(Date.now() - started).toBeLessThan(4000);
      const jwt = userJwt("someone");
      for (const [method, path] of [["GET", "/v1/appointments/x"], ["POST", "/v1/appointments/x/join-token"]] as const) {
        const answer = await fetch(`${t.url}${path}`, { method, headers: { authorization: `Bearer ${jwt}` } });
        expect(answer.status).toBe(503);
        expect(((await answer.json()) as { code: string }).code).toBe("not_ready");
      }
    } finally {
      proxy.restore();
    }
    await expect.poll(async () => (await fetch(`${t.url}/readyz`)).status, { timeout: 5000 }).toBe(200);
  });
});

describe("CORS for portals on other origins", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp({ CORS_ORIGINS: "https://portal.example.com" });
  });
  afterAll(async () => {
    await t.close();
  });

  it("answers a preflight from an allowed origin and exposes Date and Retry-After", async () => {
    const preflight = await t.app.inject({
      method: "OPTIONS",
      url: "/v1/appointments/appt-1/join-token",
      headers: {
        origin: "https://portal.example.com",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type",
      },
    });
    expect(preflight.statusCode).toBe(204);
    expect(preflight.headers["access-control-allow-origin"]).toBe("https://portal.example.com");
    expect(String(preflight.headers["access-control-allow-headers"])).toContain("authorization");
    const actual = await t.app.inject({ method: "GET", url: "/healthz", headers: { origin: "https://portal.example.com" } });
    expect(actual.headers["access-control-allow-origin"]).toBe("https://portal.example.com");
    expect(String(actual.headers["access-control-expose-headers"]).toLowerCase()).toMatch(/date.*retry-after/);
  });

  it("does not allow other origins", async () => {
    const res = await t.app.inject({ method: "GET", url: "/healthz", headers: { origin: "https://evil.example" } });
    expect(res.headers["access-control-allow-origin"]).toBeUndefined();
  });
});

describe("per-address rate limit", () => {
  it("answers 429 rate_limited with Retry-After past RATE_LIMIT_PER_MINUTE, and 0 turns it off", async () => {
    const limited = await startApp({ RATE_LIMIT_PER_MINUTE: "3" });
    try {
      const codes: number[] = [];
      let last;
      for (let i = 0; i < 4; i++) {
        last = await limited.app.inject({ method: "GET", url: "/v1/appointments/x" });
        codes.push(last.statusCode);
      }
      expect(codes).toEqual([401, 401, 401, 429]);
      expect(last?.headers["content-type"]).toContain("application/problem+json");
      expect(last?.json().code).toBe("rate_limited");
      expect(Number(last?.headers["retry-after"])).toBeGreaterThan(0);
      // Probes and scrapers are never limited.
      expect((await limited.app.inject({ method: "GET", url: "/healthz" })).statusCode).toBe(200);
    } finally {
      await limited.close();
    }
    const unlimited = await startApp({ RATE_LIMIT_PER_MINUTE: "0" });
    try {
      for (let i = 0; i < 5; i++) {
        expect((await unlimited.app.inject({ method: "GET", url: "/v1/appointments/x" })).statusCode).toBe(401);
      }
    } finally {
      await unlimited.close();
    }
  });
});

describe("domain metrics", () => {
  it("counts refusals by code", async () => {
    const t = await startApp();
    try {
      await t.app.inject({ method: "GET", url: "/v1/appointments/x" });
      const res = await t.app.inject({ method: "GET", url: "/metrics" });
      expect(res.body).toMatch(/joinwindow_refusals_total\{code="unauthenticated"\} 1/);
      for (const name of ["joinwindow_webhooks_total", "joinwindow_tokens_issued_total", "joinwindow_introspections_total"]) {
        expect(res.body).toContain(`# TYPE ${name} counter`);
      }
    } finally {
      await t.close();
    }
  });
});

describe("logs", () => {
  it("never carry a token, a JWT or a webhook signature", async () => {
    const lines: string[] = [];
    const t = await startApp({ LOG_LEVEL: "info" }, { logDestination: { write: (line: string) => void lines.push(line) } });
    const { app } = t;
    try {
      const jwt = userJwt("gateway-1", { scope: "tokens:introspect" });
      await app.inject({
        method: "POST",
        url: "/v1/tokens/introspect?token=eyJsecret.query.token",
        headers: { authorization: `Bearer ${jwt}` },
        payload: { token: "eyJsecret.body.token" },
      });
      const delivery = signedDelivery(scheduledEvent());
      await app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: delivery.headers, payload: delivery.payload });
      const all = lines.join("\n");
      expect(all).toContain("request completed");
      for (const secret of ["eyJsecret", jwt, delivery.headers["webhook-signature"], TEST_WEBHOOK_SECRET]) {
        expect(all).not.toContain(secret);
      }
    } finally {
      await t.close();
    }
  });
});
