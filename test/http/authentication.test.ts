import { type KeyObject, createHmac, generateKeyPairSync, randomUUID } from "node:crypto";
import { type IncomingMessage, type Server, type ServerResponse, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { type Algorithm, createSigner } from "fast-jwt";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import authentication, {
  type AuthenticationConfig,
  hasScope,
  requireScope,
  unauthenticated,
} from "../../src/http/plugins/authentication.js";
import problemDetails from "../../src/http/plugins/problem-details.js";

const SECRET = "authentication-test-secret-0123456789-abcdef";
const seconds = (ms: number) => Math.floor(ms / 1000);

/**
 * The injected clock every app in this file reads: on a whole second, so the
 * 30 s boundaries are exact, and an hour behind the real one, so a test
 * passing by accident on the real clock is impossible.
 */
let clock = Math.floor(Date.now() / 1000) * 1000 - 3_600_000;
const now = () => clock;

type Claims = Record<string, unknown>;

function claims(extra: Claims = {}): Claims {
  return { sub: "user-1", iat: seconds(clock), exp: seconds(clock) + 300, ...extra };
}

function without(name: string, extra: Claims = {}): Claims {
  const all = claims(extra);
  delete all[name];
  return all;
}

const pem = (key: KeyObject) => key.export({ type: "pkcs8", format: "pem" }) as string;
const publicPem = (key: KeyObject) => key.export({ type: "spki", format: "pem" }) as string;

function sign(payload: Claims, key: string | KeyObject = SECRET, algorithm: Algorithm = "HS256", kid?: string) {
  return createSigner({ key: typeof key === "string" ? key : pem(key), algorithm, kid })(payload);
}

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

/** fast-jwt refuses to sign malformed claims, so these are assembled by hand. */
function handSignedHs256(header: Claims, payload: Claims, secret: string = SECRET) {
  const input = `${b64url(header)}.${b64url(payload)}`;
  return `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
}

const NO_AUTH: AuthenticationConfig = {
  authJwtSecret: undefined,
  authJwtPublicKey: undefined,
  authJwksUrl: undefined,
  authJwtIssuer: undefined,
  authJwtAudience: undefined,
};

interface AppOptions {
  clock?: boolean;
  logLines?: string[];
}

async function buildTestApp(config: Partial<AuthenticationConfig>, options: AppOptions = {}) {
  const lines = options.logLines;
  const app = Fastify(
    lines ? { logger: { level: "warn", stream: { write: (line: string) => void lines.push(line) } } } : {},
  );
  await app.register(problemDetails);
  await app.register(authentication, {
    config: { ...NO_AUTH, ...config },
    ...(options.clock !== false && { now }),
  });
  app.get("/whoami", { onRequest: [app.authenticate] }, async (request) => ({
    userId: request.caller.userId,
    scopes: [...request.caller.scopes].sort(),
  }));
  app.get("/revoke-only", { onRequest: [app.authenticate, requireScope("tokens:revoke")] }, async (request) => ({
    userId: request.caller.userId,
    canRead: hasScope(request.caller, "appointments:read"),
  }));
  await app.ready();
  return app;
}

function call(app: FastifyInstance, authorization: string | undefined, url = "/whoami") {
  return app.inject({ method: "GET", url, headers: authorization === undefined ? {} : { authorization } });
}

async function accepted(app: FastifyInstance, token: string) {
  const res = await call(app, `Bearer ${token}`);
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as { userId: string; scopes: string[] };
}

/** A 401/403 problem+json that names the code and carries no part of the token. */
async function rejected(
  app: FastifyInstance,
  authorization: string | undefined,
  { status = 401, code = "unauthenticated", url = "/whoami" } = {},
) {
  const res = await call(app, authorization, url);
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
  const body = res.json() as { code: string; status: number; detail: string };
  expect(body).toMatchObject({ status, code, type: `urn:joinwindow:problem:${code}` });
  for (const part of (authorization ?? "").replace(/^\S+\s*/, "").split(/[.\s]+/)) {
    if (part.length >= 8) expect(res.body).not.toContain(part);
  }
  return { res, detail: body.detail };
}

describe("authentication with AUTH_JWT_SECRET (HS256)", () => {
  let app: FastifyInstance;
  beforeAll(async () => {
    app = await buildTestApp({ authJwtSecret: SECRET });
  });
  afterAll(async () => {
    await app.close();
  });

  it("accepts a valid token and exposes the caller", async () => {
    expect(await accepted(app, sign(claims()))).toEqual({ userId: "user-1", scopes: [] });
  });

  it("uses the real clock when none is injected", async () => {
    const real = await buildTestApp({ authJwtSecret: SECRET }, { clock: false });
    const issued = Date.now();
    await accepted(real, sign({ sub: "u", iat: seconds(issued), exp: seconds(issued) + 60 }));
    await rejected(real, `Bearer ${sign({ sub: "u", iat: seconds(issued) - 600, exp: seconds(issued) - 120 })}`);
    await real.close();
  });

  it("rejects an expired token, and allows 30 s of clock skew on exp", async () => {
    const { detail } = await rejected(app, `Bearer ${sign(claims({ exp: seconds(clock) - 31 }))}`);
    expect(detail).toBe("The token has expired.");
    await accepted(app, sign(claims({ exp: seconds(clock) - 20 })));
  });

  it("honours nbf with 30 s of tolerance (a future nbf is a 401, not fast-jwt's 500)", async () => {
    const { detail } = await rejected(app, `Bearer ${sign(claims({ nbf: seconds(clock) + 120 }))}`);
    expect(detail).toBe("The token is not valid yet.");
    await rejected(app, `Bearer ${sign(claims({ nbf: seconds(clock) + 31 }))}`);
    await accepted(app, sign(claims({ nbf: seconds(clock) + 20 })));
  });

  it("requires exp and sub", async () => {
    expect((await rejected(app, `Bearer ${sign(without("exp"))}`)).detail).toBe("The token lacks a required claim.");
    await rejected(app, `Bearer ${sign(without("sub"))}`);
  });

  it("requires sub to be a non-empty string of at most 200 characters", async () => {
    await rejected(app, `Bearer ${sign(claims({ sub: "" }))}`);
    await rejected(app, `Bearer ${sign(claims({ sub: 42 }))}`);
    await rejected(app, `Bearer ${sign(claims({ sub: "u".repeat(201) }))}`);
    expect((await accepted(app, sign(claims({ sub: "u".repeat(200) })))).userId).toHaveLength(200);
  });

  it("rejects wrongly typed claims (fast-jwt passes those through as a 500)", async () => {
    await rejected(app, `Bearer ${handSignedHs256({ alg: "HS256", typ: "JWT" }, claims({ exp: "tomorrow" }))}`);
    await rejected(app, `Bearer ${handSignedHs256({ alg: "HS256", typ: "JWT" }, claims({ nbf: [1] }))}`);
  });

  it("rejects a token signed with another secret", async () => {
    const { detail } = await rejected(app, `Bearer ${sign(claims(), "another-secret-of-sufficient-length-000000")}`);
    expect(detail).toBe("The token's signature or algorithm is not accepted.");
  });

  it("rejects alg none, with or without a signature segment", async () => {
    const unsigned = `${b64url({ alg: "none", typ: "JWT" })}.${b64url(claims())}.`;
    await rejected(app, `Bearer ${unsigned}`);
    await rejected(app, `Bearer ${unsigned}c2lnbmF0dXJl`);
  });

  it("rejects HS384/HS512 even with the right secret (an allowlist miss is a 500 in @fastify/jwt)", async () => {
    await rejected(app, `Bearer ${sign(claims(), SECRET, "HS512")}`);
    await rejected(app, `Bearer ${sign(claims(), SECRET, "HS384")}`);
  });

  it("rejects malformed tokens", async () => {
    await rejected(app, "Bearer abc.def.ghi");
    await rejected(app, `Bearer ${Buffer.from("{not json").toString("base64url")}.${b64url(claims())}.c2ln`);
    await rejected(app, `Bearer ${b64url({ alg: "HS256" })}.${Buffer.from('"a string"').toString("base64url")}.c2ln`);
    await rejected(app, `Bearer ${handSignedHs256({ alg: "HS256" }, [1, 2] as unknown as Claims)}`);
  });

  it("answers every junk Authorization header with 401 unauthenticated", async () => {
    const token = sign(claims());
    const missing = await rejected(app, undefined);
    expect(missing.detail).toBe("Missing bearer token.");
    expect(missing.res.headers["www-authenticate"]).toBe("Bearer");
    expect((await rejected(app, "Basic dXNlcjpwYXNzd29yZA==")).res.headers["www-authenticate"]).toBe("Bearer");
    expect((await rejected(app, "Bearer")).res.headers["www-authenticate"]).toBe('Bearer error="invalid_token"');
    for (const junk of [
      "",
      "   ",
      "Bearer ",
      "Bearertoken",
      `Token ${token}`,
      `Bearer ${token} ${token}`,
      `Bearer ${token},${token}`,
      "Bearer a b",
      `Bearer ${"x".repeat(10 * 1024)}`,
      `Bearer ${"eyJhbGciOiJIUzI1NiJ9.".repeat(500)}`,
      "Bearer not-a-jwt",
      "Bearer ../../etc/passwd",
      "Bearer \u00e9t\u00e9.\u00e9t\u00e9.x",
    ]) {
      await rejected(app, junk);
    }
    // A token in the wrong place is not echoed either.
    await rejected(app, `Basic ${token}`);
  });

  it("accepts the scheme in any case and extra spaces after it", async () => {
    await accepted(app, sign(claims()));
    expect((await call(app, `bearer ${sign(claims())}`)).statusCode).toBe(200);
    expect((await call(app, `BEARER   ${sign(claims())}`)).statusCode).toBe(200);
  });

  it("reads a space-separated scope claim and answers 403 insufficient_scope without the needed one", async () => {
    const both = sign(claims({ scope: "appointments:read  tokens:revoke extra" }));
    expect((await accepted(app, both)).scopes).toEqual(["appointments:read", "extra", "tokens:revoke"]);
    const ok = await call(app, `Bearer ${both}`, "/revoke-only");
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual({ userId: "user-1", canRead: true });

    const readOnly = sign(claims({ scope: "appointments:read" }));
    const { res, detail } = await rejected(app, `Bearer ${readOnly}`, {
      status: 403,
      code: "insufficient_scope",
      url: "/revoke-only",
    });
    expect(detail).toBe("This operation needs the tokens:revoke scope.");
    expect(res.headers["www-authenticate"]).toBe('Bearer error="insufficient_scope", scope="tokens:revoke"');
    // Authentication still comes first.
    await rejected(app, undefined, { url: "/revoke-only" });
    await rejected(app, `Bearer ${sign(claims({ scope: "tokens:revoke", exp: seconds(clock) - 600 }))}`, {
      url: "/revoke-only",
    });
  });

  it("also accepts scope/scp as arrays of strings; any other shape grants nothing", async () => {
    expect((await accepted(app, sign(claims({ scope: ["tokens:revoke"] })))).scopes).toEqual(["tokens:revoke"]);
    expect((await accepted(app, sign(claims({ scp: ["tokens:revoke", "a"] })))).scopes).toEqual(["a", "tokens:revoke"]);
    expect((await accepted(app, sign(claims({ scp: "tokens:introspect" })))).scopes).toEqual(["tokens:introspect"]);
    for (const scope of [42, { "tokens:revoke": true }, [1, "tokens:revoke"], null, true]) {
      expect((await accepted(app, sign(claims({ scope })))).scopes).toEqual([]);
      await rejected(app, `Bearer ${sign(claims({ scope }))}`, {
        status: 403,
        code: "insufficient_scope",
        url: "/revoke-only",
      });
    }
  });

  it("ignores iss and aud when AUTH_JWT_ISSUER / AUTH_JWT_AUDIENCE are unset", async () => {
    await accepted(app, sign(claims({ iss: "https://anyone.example", aud: ["x", "y"] })));
  });
});

describe("issuer and audience", () => {
  let app: FastifyInstance;
  const iss = "https://idp.example.com/";
  const aud = "joinwindow";
  beforeAll(async () => {
    app = await buildTestApp({ authJwtSecret: SECRET, authJwtIssuer: iss, authJwtAudience: aud });
  });
  afterAll(async () => {
    await app.close();
  });

  it("accepts the configured iss and aud (aud may be an array)", async () => {
    await accepted(app, sign(claims({ iss, aud })));
    await accepted(app, sign(claims({ iss, aud: ["other", aud] })));
  });

  it("rejects a wrong or missing iss", async () => {
    expect((await rejected(app, `Bearer ${sign(claims({ iss: "https://evil.example/", aud }))}`)).detail).toBe(
      "The token's issuer is not accepted.",
    );
    await rejected(app, `Bearer ${sign(claims({ iss: "https://idp.example.com", aud }))}`);
    await rejected(app, `Bearer ${sign(claims({ aud }))}`);
    await rejected(app, `Bearer ${sign(claims({ iss: [iss], aud }))}`);
  });

  it("rejects a wrong or missing aud", async () => {
    expect((await rejected(app, `Bearer ${sign(claims({ iss, aud: "someone-else" }))}`)).detail).toBe(
      "The token's audience is not accepted.",
    );
    await rejected(app, `Bearer ${sign(claims({ iss, aud: ["a", "b"] }))}`);
    await rejected(app, `Bearer ${sign(claims({ iss }))}`);
  });
});

describe("authentication with AUTH_JWT_PUBLIC_KEY", () => {
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const p256 = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" });
  const ed25519 = generateKeyPairSync("ed25519");
  const otherRsa = generateKeyPairSync("rsa", { modulusLength: 2048 });

  it("RSA: accepts RS256 and PS256, rejects other keys, algorithms and the HMAC confusion", async () => {
    const app = await buildTestApp({ authJwtPublicKey: publicPem(rsa.publicKey) });
    await accepted(app, sign(claims(), rsa.privateKey, "RS256"));
    await accepted(app, sign(claims(), rsa.privateKey, "PS256"));
    await rejected(app, `Bearer ${sign(claims(), otherRsa.privateKey, "RS256")}`);
    await rejected(app, `Bearer ${sign(claims(), rsa.privateKey, "RS512")}`);
    // The public PEM used as an HMAC secret: the classic algorithm confusion (a 500 in @fastify/jwt).
    const confusion = sign(claims(), publicPem(rsa.publicKey), "HS256");
    expect((await rejected(app, `Bearer ${confusion}`)).detail).toBe(
      "The token's signature or algorithm is not accepted.",
    );
    await rejected(app, `Bearer ${handSignedHs256({ alg: "HS256" }, claims(), publicPem(rsa.publicKey))}`);
    await rejected(app, `Bearer ${b64url({ alg: "none" })}.${b64url(claims())}.`);
    await rejected(app, `Bearer ${sign(claims({ exp: seconds(clock) - 60 }), rsa.privateKey, "RS256")}`);
    await app.close();
  });

  it("EC P-256: accepts ES256 only", async () => {
    const app = await buildTestApp({ authJwtPublicKey: publicPem(p256.publicKey) });
    await accepted(app, sign(claims(), p256.privateKey, "ES256"));
    await rejected(app, `Bearer ${sign(claims(), p384.privateKey, "ES384")}`);
    const stranger = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
    await rejected(app, `Bearer ${sign(claims(), stranger, "ES256")}`);
    await rejected(app, `Bearer ${sign(claims(), publicPem(p256.publicKey), "HS256")}`);
    await app.close();
  });

  it("EC P-384: accepts ES384", async () => {
    const app = await buildTestApp({ authJwtPublicKey: publicPem(p384.publicKey) });
    await accepted(app, sign(claims(), p384.privateKey, "ES384"));
    await rejected(app, `Bearer ${sign(claims(), p256.privateKey, "ES256")}`);
    await app.close();
  });

  it("Ed25519: accepts EdDSA", async () => {
    const app = await buildTestApp({ authJwtPublicKey: publicPem(ed25519.publicKey) });
    const scoped = sign(claims({ scope: "tokens:revoke" }), ed25519.privateKey, "EdDSA");
    expect(await accepted(app, scoped)).toEqual({ userId: "user-1", scopes: ["tokens:revoke"] });
    await rejected(app, `Bearer ${sign(claims(), generateKeyPairSync("ed25519").privateKey, "EdDSA")}`);
    await rejected(app, `Bearer ${sign(claims(), rsa.privateKey, "RS256")}`);
    await rejected(app, `Bearer ${sign(claims(), publicPem(ed25519.publicKey), "HS256")}`);
    await app.close();
  });

  it("refuses to start with a key type it cannot pin an algorithm for", async () => {
    const p521 = generateKeyPairSync("ec", { namedCurve: "P-521" });
    await expect(buildTestApp({ authJwtPublicKey: publicPem(p521.publicKey) })).rejects.toThrow(/AUTH_JWT_PUBLIC_KEY/);
    const garbled = "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----";
    await expect(buildTestApp({ authJwtPublicKey: garbled })).rejects.toThrow(/AUTH_JWT_PUBLIC_KEY/);
  });
});

describe("no verification method configured", () => {
  it("answers every request 401", async () => {
    const app = await buildTestApp({});
    const { detail } = await rejected(app, `Bearer ${sign(claims())}`);
    expect(detail).toBe("No identity provider is configured to verify bearer tokens.");
    await rejected(app, undefined);
    await app.close();
  });
});

describe("authentication with AUTH_JWKS_URL", () => {
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const ed = generateKeyPairSync("ed25519");

  const jwk = (key: KeyObject, kid: string, alg?: string) => ({
    ...key.export({ format: "jwk" }),
    kid,
    use: "sig",
    ...(alg && { alg }),
  });

  /** The identity provider: a JWKS the test can change, and a log of its hits. */
  const idp = {
    keys: [] as Record<string, unknown>[],
    status: 200,
    hits: [] as string[],
  };
  let server: Server;
  let jwksUrl: string;
  let app: FastifyInstance;
  const logLines: string[] = [];

  beforeAll(async () => {
    server = createServer((request: IncomingMessage, response: ServerResponse) => {
      idp.hits.push(request.url ?? "");
      response.writeHead(idp.status, { "content-type": "application/json" });
      response.end(JSON.stringify(idp.status === 200 ? { keys: idp.keys } : { error: "unavailable" }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    jwksUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/oauth2/v1/keys?tenant=t1`;
    idp.keys = [jwk(rsa.publicKey, "rsa-1", "RS256")];
    app = await buildTestApp({ authJwksUrl: jwksUrl }, { logLines });
  });
  afterAll(async () => {
    await app.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const rsaToken = (extra: Claims = {}, kid = "rsa-1") => sign(claims(extra), rsa.privateKey, "RS256", kid);

  it("fetches exactly AUTH_JWKS_URL and caches the key by kid", async () => {
    const before = idp.hits.length;
    expect(await accepted(app, rsaToken({ scope: "appointments:read" }))).toEqual({
      userId: "user-1",
      scopes: ["appointments:read"],
    });
    await accepted(app, rsaToken());
    await accepted(app, rsaToken({ sub: "user-2" }));
    expect(idp.hits.slice(before)).toEqual(["/oauth2/v1/keys?tenant=t1"]);
  });

  it("still checks signature, claims and algorithms of JWKS-verified tokens", async () => {
    const before = idp.hits.length;
    const stranger = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
    await rejected(app, `Bearer ${sign(claims(), stranger, "RS256", "rsa-1")}`);
    await rejected(app, `Bearer ${rsaToken({ exp: seconds(clock) - 600 })}`);
    await rejected(app, `Bearer ${rsaToken({ nbf: seconds(clock) + 600 })}`);
    await rejected(app, `Bearer ${sign(without("sub"), rsa.privateKey, "RS256", "rsa-1")}`);
    // Symmetric and unsigned tokens never reach the identity provider.
    await rejected(app, `Bearer ${sign(claims(), SECRET, "HS256", "rsa-1")}`);
    await rejected(app, `Bearer ${sign(claims(), publicPem(rsa.publicKey), "HS256", "rsa-1")}`);
    await rejected(app, `Bearer ${b64url({ alg: "none", kid: "rsa-1" })}.${b64url(claims())}.`);
    await rejected(app, `Bearer ${sign(claims(), rsa.privateKey, "RS256")}`); // no kid
    expect(idp.hits.length).toBe(before);
  });

  it("picks up a key the provider rotates in (after a refetch)", async () => {
    clock += 61_000;
    idp.keys = [jwk(rsa.publicKey, "rsa-1", "RS256"), jwk(ed.publicKey, "ed-2"), jwk(ec.publicKey, "ec-3", "ES256")];
    const before = idp.hits.length;
    expect((await accepted(app, sign(claims(), ed.privateKey, "EdDSA", "ed-2"))).userId).toBe("user-1");
    expect(idp.hits.length).toBe(before + 1);
    await accepted(app, sign(claims(), ed.privateKey, "EdDSA", "ed-2"));
    await accepted(app, rsaToken());
    expect(idp.hits.length).toBe(before + 1);
  });

  it("fetches at most once a minute for unknown kids, however many arrive", async () => {
    clock += 61_000;
    const before = idp.hits.length;
    const flood = Array.from({ length: 20 }, () =>
      call(app, `Bearer ${sign(claims(), rsa.privateKey, "RS256", randomUUID())}`),
    );
    for (const res of await Promise.all(flood)) {
      expect(res.statusCode).toBe(401);
      expect(res.json()).toMatchObject({ code: "unauthenticated", detail: "The token's signing key is not known." });
    }
    for (let i = 0; i < 20; i++) await rejected(app, `Bearer ${sign(claims(), rsa.privateKey, "RS256", `junk-${i}`)}`);
    expect(idp.hits.length - before).toBe(1);
    // The price: a key published meanwhile waits for the next window.
    await rejected(app, `Bearer ${sign(claims(), ec.privateKey, "ES256", "ec-3")}`);
    clock += 30_000;
    await rejected(app, `Bearer ${sign(claims(), ec.privateKey, "ES256", "ec-3")}`);
    expect(idp.hits.length - before).toBe(1);
    clock += 31_000;
    await accepted(app, sign(claims(), ec.privateKey, "ES256", "ec-3"));
    expect(idp.hits.length - before).toBe(2);
    // Known kids kept working throughout, from the cache.
    await accepted(app, rsaToken());
    expect(idp.hits.length - before).toBe(2);
  });

  it("rejects a kid whose JWK is symmetric or whose key type does not fit alg", async () => {
    clock += 61_000;
    idp.keys = [...idp.keys, { kty: "oct", k: Buffer.from(SECRET).toString("base64url"), kid: "sym" }];
    await rejected(app, `Bearer ${sign(claims(), rsa.privateKey, "RS256", "sym")}`);
    clock += 61_000;
    // ed-2 is published without alg, so get-jwks would hand it out for any alg.
    await rejected(app, `Bearer ${sign(claims(), rsa.privateKey, "RS256", "ed-2")}`);
  });

  it("refetches a key after ten minutes and stops accepting it once the provider withdraws it", async () => {
    clock += 61_000;
    await accepted(app, rsaToken());
    clock += 10 * 60_000;
    let before = idp.hits.length;
    const concurrent = await Promise.all(Array.from({ length: 10 }, () => call(app, `Bearer ${rsaToken()}`)));
    expect(concurrent.map((res) => res.statusCode)).toEqual(Array(10).fill(200));
    expect(idp.hits.length - before).toBe(1);

    clock += 10 * 60_000;
    const published = idp.keys;
    idp.keys = published.filter((key) => key.kid !== "rsa-1");
    try {
      before = idp.hits.length;
      expect((await rejected(app, `Bearer ${rsaToken()}`)).detail).toBe("The token's signing key is not known.");
      // From now on it is an unknown kid like any other: one more fetch, then none within the minute.
      await rejected(app, `Bearer ${rsaToken()}`);
      await rejected(app, `Bearer ${rsaToken()}`);
      expect(idp.hits.length - before).toBe(2);
    } finally {
      idp.keys = published;
    }
  });

  it("keeps accepting keys the provider published while it is down, retrying once a minute", async () => {
    const edToken = () => sign(claims(), ed.privateKey, "EdDSA", "ed-2");
    clock += 61_000;
    await accepted(app, edToken());
    clock += 10 * 60_000;
    idp.status = 503;
    try {
      const before = idp.hits.length;
      await accepted(app, edToken());
      await accepted(app, edToken());
      expect(idp.hits.length - before).toBe(1);
      expect((await rejected(app, `Bearer ${sign(claims(), rsa.privateKey, "RS256", "never-seen")}`)).detail).toBe(
        "The identity provider's signing keys could not be retrieved.",
      );
      expect(idp.hits.length - before).toBe(1);
      clock += 61_000;
      await accepted(app, edToken());
      expect(idp.hits.length - before).toBe(2);
    } finally {
      idp.status = 200;
    }
    clock += 61_000;
    await accepted(app, edToken());
    await accepted(app, edToken());
    expect(logLines.some((line) => line.includes("JWKS could not be fetched"))).toBe(true);
  });

  it("answers 401 (not 500) when the provider is down, and logs a warning without the token", async () => {
    const down = await buildTestApp({ authJwksUrl: "http://127.0.0.1:9/jwks.json" }, { logLines });
    const token = rsaToken();
    const { detail } = await rejected(down, `Bearer ${token}`);
    expect(detail).toBe("The identity provider's signing keys could not be retrieved.");
    // No retry against a provider that just failed.
    await rejected(down, `Bearer ${rsaToken({ sub: "user-2" })}`);
    await down.close();

    clock += 61_000;
    idp.status = 503;
    try {
      const before = idp.hits.length;
      const failing = await buildTestApp({ authJwksUrl: jwksUrl }, { logLines });
      await rejected(failing, `Bearer ${token}`);
      await rejected(failing, `Bearer ${sign(claims(), ec.privateKey, "ES256", "ec-3")}`);
      expect(idp.hits.length - before).toBe(1);
      await failing.close();
    } finally {
      idp.status = 200;
    }

    const warnings = logLines.filter((line) => line.includes("JWKS could not be fetched"));
    expect(warnings.length).toBeGreaterThanOrEqual(2);
    for (const line of logLines) expect(line).not.toContain(token.split(".")[2]);
  });
});

describe("unauthenticated()", () => {
  it("builds the contract's 401 with an RFC 6750 challenge", () => {
    const error = unauthenticated("The token has expired.");
    expect(error).toMatchObject({ status: 401, code: "unauthenticated", detail: "The token has expired." });
    expect(error.headers).toEqual({ "www-authenticate": 'Bearer error="invalid_token"' });
  });
});
