import { randomUUID } from "node:crypto";
import { Validator } from "@seriousme/openapi-schema-validator";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startApp, type TestApp } from "../helpers/app.js";
import { bearer, OPERATOR_SCOPES, scheduledEvent, signedDelivery, userJwt } from "../helpers/fixtures.js";
import { type OpenApiDocument, takeMismatches } from "../helpers/openapi.js";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy.js";

type Schema = { anyOf?: Schema[]; properties?: Record<string, Schema>; required?: string[]; enum?: unknown[] };
type Operation = OpenApiDocument["paths"][string][string] & {
  responses: Record<string, { headers?: Record<string, { required?: boolean }>; content?: Record<string, { schema: Schema }> }>;
};

const operator = bearer(userJwt("ops-1", { scope: OPERATOR_SCOPES, expiresInSeconds: 3_600 }));
const subscriber = bearer(userJwt("ops-2", { scope: "subscriptions:manage", expiresInSeconds: 3_600 }));

/**
 * For every operation of the document, a request that passes authentication
 * and validation; what it meets after that is up to each test. A new route
 * fails "has a request for every operation" until it gets one here.
 */
const REQUESTS: Record<string, () => { headers?: Record<string, string>; payload?: string }> = {
  "GET /": () => ({}),
  "GET /openapi.json": () => ({}),
  "GET /docs": () => ({}),
  "GET /healthz": () => ({}),
  "GET /readyz": () => ({}),
  "GET /metrics": () => ({}),
  "GET /.well-known/jwks.json": () => ({}),
  "POST /v1/webhooks/appointments": () => {
    const delivery = signedDelivery(scheduledEvent());
    return { headers: delivery.headers, payload: delivery.payload };
  },
  "GET /v1/appointments/{externalId}": () => ({ headers: operator }),
  "POST /v1/appointments/{externalId}/join-token": () => ({ headers: bearer(userJwt("someone")) }),
  "POST /v1/appointments/{externalId}/revoke": () => ({ headers: operator }),
  "POST /v1/appointments/{externalId}/unblock": () => ({ headers: operator }),
  "GET /v1/appointments/{externalId}/events": () => ({ headers: operator }),
  "POST /v1/tokens/introspect": () => ({ headers: { ...operator, "content-type": "application/json" }, payload: '{"token":"x"}' }),
  "POST /v1/tokens/revoke": () => ({
    headers: { ...operator, "content-type": "application/json" },
    payload: JSON.stringify({ tokenId: randomUUID() }),
  }),
  // A literal public address: nothing to resolve, so the database is the next thing the request meets.
  "POST /v1/subscriptions": () => ({
    headers: { ...subscriber, "content-type": "application/json" },
    payload: JSON.stringify({ url: "https://93.184.215.14/hooks" }),
  }),
  "GET /v1/subscriptions": () => ({ headers: subscriber }),
  "POST /v1/presence": () => ({
    headers: { ...operator, "content-type": "application/json" },
    payload: '{"tokenId":"0f3e0000-0000-4000-8000-000000000000","state":"left"}',
  }),
  "GET /v1/subscriptions/{id}": () => ({ headers: subscriber }),
  "DELETE /v1/subscriptions/{id}": () => ({ headers: subscriber }),
  "POST /v1/subscriptions/{id}/rotate-secret": () => ({ headers: subscriber }),
  "POST /v1/subscriptions/{id}/enable": () => ({ headers: subscriber }),
  "GET /v1/subscriptions/{id}/deliveries": () => ({ headers: subscriber }),
};

function operationsOf(document: OpenApiDocument) {
  return Object.entries(document.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, operation]) => ({
      key: `${method.toUpperCase()} ${path}`,
      method: method.toUpperCase() as "GET" | "POST" | "DELETE",
      // A subscription id is a UUID (anything else is unknown without asking the database); an externalId anything.
      url: path.replace("{id}", randomUUID()).replace(/\{[^}]+\}/g, "x"),
      operation: operation as Operation,
    })),
  );
}

/** The problem codes an error response of the document names. */
function codesOf(operation: Operation, status: number): string[] {
  const schema = operation.responses[String(status)]?.content?.["application/problem+json"]?.schema;
  if (!schema) return [];
  return (schema.anyOf ?? [schema]).map((variant) => String(variant.properties?.code?.enum?.[0]));
}

describe("the OpenAPI document", () => {
  let t: TestApp;
  let document: OpenApiDocument;
  let operations: ReturnType<typeof operationsOf>;
  beforeAll(async () => {
    t = await startApp();
    const served = await t.app.inject({ method: "GET", url: "/openapi.json" });
    expect(served.statusCode).toBe(200);
    document = served.json();
    operations = operationsOf(document);
  });
  afterAll(async () => {
    await t.close();
  });

  it("is served whole at /openapi.json and is valid OpenAPI 3.1", async () => {
    expect(document).toEqual(JSON.parse(JSON.stringify(t.app.swagger())));
    const validator = new Validator();
    const result = await validator.validate(document);
    expect(result.errors).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(validator.version).toBe("3.1");
  });

  it("has a request for every operation (so that the sweeps below cover each)", () => {
    expect(operations.map((o) => o.key).sort()).toEqual(Object.keys(REQUESTS).sort());
  });

  it("lists the operations pages of API.md §7 with their media types", () => {
    const content = (path: string) => Object.keys(document.paths[path]?.get?.responses["200"]?.content ?? {});
    expect(content("/metrics")).toEqual(["text/plain"]);
    expect(content("/docs")).toEqual(["text/html"]);
    expect(content("/openapi.json")).toEqual(["application/json"]);
  });

  it("declares every error as application/problem+json, with its codes and the members they add", () => {
    for (const { key, operation } of operations) {
      for (const [status, response] of Object.entries(operation.responses)) {
        if (Number(status) < 400) continue;
        expect(Object.keys(response.content ?? {}), `${key} ${status}`).toEqual(["application/problem+json"]);
        expect(codesOf(operation, Number(status)).length, `${key} ${status}`).toBeGreaterThan(0);
      }
      // What any request may get before its route runs (the server's own refusals, shutting down).
      for (const [status, code] of [
        [400, "invalid_request"],
        [408, "request_timeout"],
        [417, "expectation_failed"],
        [431, "headers_too_large"],
        [503, "shutting_down"],
      ] as const) {
        expect(codesOf(operation, status), `${key} ${status}`).toContain(code);
      }
    }
    const join = document.paths["/v1/appointments/{externalId}/join-token"]?.post as Operation;
    expect(codesOf(join, 409).sort()).toEqual(["active_elsewhere", "appointment_cancelled", "participant_limit"]);
    expect(codesOf(join, 503).sort()).toEqual(["not_ready", "provider_unavailable", "shutting_down"]);
    const variant = (status: number, code: string) => {
      const schema = join.responses[String(status)]?.content?.["application/problem+json"]?.schema as Schema;
      return (schema.anyOf ?? [schema]).find((v) => v.properties?.code?.enum?.[0] === code);
    };
    expect(variant(425, "too_early")?.required).toContain("opensAt");
    expect(variant(410, "join_window_closed")?.required).toContain("closedAt");
    expect(variant(409, "active_elsewhere")?.required).toContain("otherAppointmentId");
    expect(variant(400, "invalid_request")?.properties).toHaveProperty("errors");
    for (const status of [425, 429, 503]) expect(join.responses[String(status)]?.headers?.["Retry-After"]?.required).toBe(true);
    const webhook = document.paths["/v1/webhooks/appointments"]?.post as Operation;
    expect(codesOf(webhook, 401)).toEqual(["invalid_signature"]);
    expect(codesOf(webhook, 422).sort()).toEqual(["invalid_time_range", "invalid_time_zone", "missing_time_zone", "nonexistent_local_time"]);
  });

  it("takes a form where RFC 7662/7009 clients send one, and marks optional bodies as not required", () => {
    for (const path of ["/v1/tokens/introspect", "/v1/tokens/revoke"]) {
      expect(Object.keys(document.paths[path]?.post?.requestBody?.content ?? {})).toEqual([
        "application/json",
        "application/x-www-form-urlencoded",
      ]);
    }
    const required = (path: string) => document.paths[path]?.post?.requestBody?.required;
    expect(required("/v1/appointments/{externalId}/join-token")).toBe(false);
    expect(required("/v1/appointments/{externalId}/revoke")).toBe(false);
    expect(required("/v1/appointments/{externalId}/unblock")).toBe(false);
    expect(required("/v1/webhooks/appointments")).toBe(true);
    expect(required("/v1/tokens/introspect")).toBe(true);
  });

  it("declares 401 unauthenticated exactly on the operations with a bearer scheme, each answering it", async () => {
    for (const { key, method, url, operation } of operations) {
      const secured = operation.security !== undefined;
      expect(codesOf(operation, 401).includes("unauthenticated"), key).toBe(secured);
      if (!secured) continue;
      const res = await t.app.inject({ method, url });
      expect(res.statusCode, key).toBe(401);
    }
  });

  it("declares 413 and 415 exactly on the operations that take a body, each answering them", async () => {
    const oversized = JSON.stringify({ pad: "a".repeat(64 * 1024) });
    for (const { key, method, url, operation } of operations) {
      const takesBody = operation.requestBody !== undefined;
      expect(codesOf(operation, 413), key).toEqual(takesBody ? ["payload_too_large"] : []);
      expect(codesOf(operation, 415), key).toEqual(takesBody ? ["unsupported_media_type"] : []);
      if (!takesBody) continue;
      const { headers } = REQUESTS[key]?.() ?? {};
      const tooLarge = await t.app.inject({ method, url, headers: { ...headers, "content-type": "application/json" }, payload: oversized });
      expect(tooLarge.statusCode, key).toBe(413);
      const text = await t.app.inject({ method, url, headers: { ...headers, "content-type": "text/plain" }, payload: "x" });
      expect(text.statusCode, key).toBe(415);
    }
  });
});

describe("the document's 429 and 503", () => {
  it("declares 429 rate_limited exactly where the per-address limit answers it", async () => {
    const limited = await startApp({ RATE_LIMIT_PER_MINUTE: "1" });
    try {
      const operations = operationsOf(limited.app.swagger() as unknown as OpenApiDocument);
      // Spends the address's one request of the minute.
      await limited.app.inject({ method: "GET", url: "/v1/appointments/x" });
      for (const { key, method, url, operation } of operations) {
        const res = await limited.app.inject({ method, url, ...REQUESTS[key]?.() });
        expect(res.statusCode === 429, `${key} answered ${res.statusCode}`).toBe(codesOf(operation, 429).includes("rate_limited"));
      }
    } finally {
      await limited.close();
    }
  });

  describe("while the database is unreachable", () => {
    let proxy: TcpProxy;
    let t: TestApp;
    beforeAll(async () => {
      const direct = new URL(inject("databaseUrl"));
      proxy = await startTcpProxy(direct.hostname, Number(direct.port || 5432));
      t = await startApp({
        DATABASE_URL: proxy.urlFor(direct.toString()),
        DATABASE_ACQUIRE_TIMEOUT_MS: "500",
        RATE_LIMIT_JOIN_PER_MINUTE: "0",
      });
    });
    afterAll(async () => {
      proxy.restore();
      await t.close();
      await proxy.close();
    });

    it("declares 503 not_ready exactly where the service answers it", async () => {
      const operations = operationsOf(t.app.swagger() as unknown as OpenApiDocument);
      proxy.refuse();
      try {
        for (const { key, method, url, operation } of operations) {
          const res = await t.app.inject({ method, url, ...REQUESTS[key]?.() });
          const notReady = res.statusCode === 503 && res.json().code === "not_ready";
          expect(notReady, `${key} answered ${res.statusCode}`).toBe(codesOf(operation, 503).includes("not_ready"));
        }
      } finally {
        proxy.restore();
      }
    });
  });
});

describe("the check of every answer against the document", () => {
  type Document = OpenApiDocument & { paths: Record<string, Record<string, Operation>> };
  const tampered = (change: (document: Document) => void) => (served: OpenApiDocument) => {
    change(served as Document);
    return served;
  };

  it("fails an inject whose status, media type, body or headers the document does not declare", async () => {
    const t = await startApp(
      {},
      {
        document: tampered((document) => {
          const read = document.paths["/v1/appointments/{externalId}"]?.get as Operation;
          delete read.responses["404"];
          const problem = read.responses["401"]?.content?.["application/problem+json"]?.schema as Schema;
          delete problem.properties?.detail;
          problem.required = problem.required?.filter((name) => name !== "detail");
          const healthz = document.paths["/healthz"]?.get?.responses["200"]?.content?.["application/json"]?.schema as Schema;
          (healthz.properties as Record<string, unknown>).status = { const: "fine" };
          const ready = document.paths["/readyz"]?.get?.responses["200"] as Operation["responses"][string];
          ready.content = { "text/html": { schema: {} } };
          const jwks = document.paths["/.well-known/jwks.json"]?.get?.responses["200"] as { headers?: unknown };
          jwks.headers = { "X-Signed-By": { required: true, schema: { type: "string" } } };
          delete document.paths["/metrics"];
        }),
      },
    );
    try {
      const jwt = bearer(userJwt("someone"));
      await expect(t.app.inject({ method: "GET", url: "/v1/appointments/nobody", headers: jwt })).rejects.toThrow(
        /GET \/v1\/appointments\/\{externalId\}: status 404 is not declared/,
      );
      await expect(t.app.inject({ method: "GET", url: "/v1/appointments/x" })).rejects.toThrow(/must NOT have unevaluated properties/);
      await expect(t.app.inject({ method: "GET", url: "/healthz" })).rejects.toThrow(/body\/status must be equal to constant/);
      await expect(t.app.inject({ method: "GET", url: "/readyz" })).rejects.toThrow(/media type "application\/json" is not declared/);
      await expect(t.app.inject({ method: "GET", url: "/.well-known/jwks.json" })).rejects.toThrow(
        /required header x-signed-by is missing/,
      );
      await expect(t.app.inject({ method: "GET", url: "/metrics" })).rejects.toThrow(/route the document does not describe/);

      await t.listen();
      expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
      const overHttp = takeMismatches();
      expect(overHttp).toHaveLength(1);
      expect(overHttp[0]).toMatch(/GET \/healthz \(200\)[\s\S]*must be equal to constant/);
    } finally {
      await t.close();
    }
  });

  it("lets through what the document declares, over inject and HTTP", async () => {
    const t = await startApp();
    try {
      expect((await t.app.inject({ method: "GET", url: "/v1/appointments/x" })).statusCode).toBe(401);
      await t.listen();
      expect((await fetch(`${t.url}/v1/appointments/x`)).status).toBe(401);
      expect((await fetch(`${t.url}/no/such/route`)).status).toBe(404);
      expect(takeMismatches()).toEqual([]);
    } finally {
      await t.close();
    }
  });
});
