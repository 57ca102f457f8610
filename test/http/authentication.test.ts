import { type KeyObject, createHmac, generateKeyPairSync, randomUUID } from "node:crypto";
import { type Algorithm, createSigner } from "fast-jwt";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { unauthenticated } from "../../src/http/plugins/auth-errors.js";
import authentication, { type AuthenticationConfig, hasScope, requireScope } from "../../src/http/plugins/authentication.js";
import { jwksMaxAgeMs } from "../../src/http/plugins/bearer-keys.js";
import problemDetails from "../../src/http/plugins/problem-details.js";
import { JWKS_PATH, type Jwk, publicJwk, startFakeJwks } from "../helpers/fake-jwks.js";

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
  jwksFetchTimeoutMs?: number;
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
    ...(options.jwksFetchTimeoutMs !== undefined && { jwksFetchTimeoutMs: options.jwksFetchTimeoutMs }),
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

describe("AUTH_JWT_USER_CLAIM: the claim that holds the user id", () => {
  let byEmail: FastifyInstance;
  let bySub: FastifyInstance;
  beforeAll(async () => {
    byEmail = await buildTestApp({ authJwtSecret: SECRET, authJwtUserClaim: "email" });
    bySub = await buildTestApp({ authJwtSecret: SECRET });
  });
  afterAll(async () => {
    await byEmail.close();
    await bySub.close();
  });

  it("takes the user id from the named claim (the scheduler knows users by e-mail, the identity provider's sub is opaque)", async () => {
    const token = sign(claims({ sub: "00u1a2b3c4opaque", email: "pat.doe@clinic.example", scope: "appointments:read" }));
    expect(await accepted(byEmail, token)).toEqual({ userId: "pat.doe@clinic.example", scopes: ["appointments:read"] });
    // Unset, it is sub, as before.
    expect((await accepted(bySub, token)).userId).toBe("00u1a2b3c4opaque");
  });

  it("requires the named claim in every JWT, and still requires sub", async () => {
    await rejected(byEmail, `Bearer ${sign(claims())}`);
    expect((await rejected(byEmail, `Bearer ${sign(without("sub", { email: "pat.doe@clinic.example" }))}`)).detail).toBe(
      "The token lacks a required claim.",
    );
  });

  it("holds the named claim to the rules of sub: a string of 1 to 200 printable characters", async () => {
    for (const email of ["", 42, ["pat.doe@clinic.example"], "a".repeat(201), "pat\u0000doe@clinic.example"]) {
      const { detail } = await rejected(byEmail, `Bearer ${sign(claims({ email }))}`);
      expect(detail, JSON.stringify(email)).toMatch(/^The token's email claim must be 1 to 200 printable characters\.$|^The token lacks a required claim\.$/);
    }
    expect((await rejected(byEmail, `Bearer ${sign(claims({ email: 42 }))}`)).detail).toBe(
      "The token's email claim must be 1 to 200 printable characters.",
    );
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
  const COOLDOWN_MS = 5_000;
  const DEFAULT_MAX_AGE_MS = 10 * 60_000;
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const ed = generateKeyPairSync("ed25519");
  const rsaJwk = publicJwk(rsa.publicKey, "rsa-1", { alg: "RS256" });
  const ecJwk = publicJwk(ec.publicKey, "ec-2", { alg: "ES256" });
  // Without alg, as several providers publish keys.
  const edJwk = publicJwk(ed.publicKey, "ed-3");

  // A jti of its own per token, so none is answered from the verified-token cache without a key lookup.
  const token = (key: KeyObject, algorithm: Algorithm, kid: string, extra: Claims = {}) =>
    sign(claims({ jti: randomUUID(), ...extra }), key, algorithm, kid);
  const rsaToken = (extra: Claims = {}) => token(rsa.privateKey, "RS256", "rsa-1", extra);
  const ecToken = () => token(ec.privateKey, "ES256", "ec-2");
  const edToken = () => token(ed.privateKey, "EdDSA", "ed-3");
  const madeUpKid = () => `Bearer ${token(rsa.privateKey, "RS256", randomUUID())}`;

  const UNKNOWN_KEY = "The token's signing key is not known.";
  const KEY_UNAVAILABLE = "The identity provider's signing keys could not be retrieved.";
  const FETCH_FAILED = "JWKS could not be fetched";

  const opened: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    for (const handle of opened.splice(0)) await handle.close();
  });

  /** A provider publishing `keys`, and an app of its own in front of it (so no test inherits another's cache). */
  async function provider(keys: Jwk[], options: AppOptions = {}) {
    const idp = await startFakeJwks(keys);
    const logLines: string[] = [];
    const app = await buildTestApp({ authJwksUrl: idp.jwksUrl }, { logLines, ...options });
    opened.push(app, idp);
    return { idp, app, logLines, fetches: () => idp.requests.length };
  }

  async function unknownKid(app: FastifyInstance) {
    return (await rejected(app, madeUpKid())).detail;
  }

  it("fetches exactly AUTH_JWKS_URL once and accepts every key of the set at once", async () => {
    const { idp, app, fetches } = await provider([rsaJwk, ecJwk, edJwk]);
    expect(await accepted(app, rsaToken({ scope: "appointments:read" }))).toEqual({
      userId: "user-1",
      scopes: ["appointments:read"],
    });
    // ES256 and EdDSA keys of the same set, never asked for before: no fetch of their own.
    await accepted(app, ecToken());
    await accepted(app, edToken());
    await accepted(app, rsaToken());
    expect(idp.requests.map((request) => request.path)).toEqual([JWKS_PATH]);
    expect(fetches()).toBe(1);
  });

  it("still checks signature, claims and algorithms of JWKS-verified tokens", async () => {
    const { app, fetches } = await provider([rsaJwk]);
    await accepted(app, rsaToken());
    const stranger = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
    await rejected(app, `Bearer ${token(stranger, "RS256", "rsa-1")}`);
    await rejected(app, `Bearer ${rsaToken({ exp: seconds(clock) - 600 })}`);
    await rejected(app, `Bearer ${rsaToken({ nbf: seconds(clock) + 600 })}`);
    await rejected(app, `Bearer ${sign(without("sub"), rsa.privateKey, "RS256", "rsa-1")}`);
    // Symmetric and unsigned tokens never reach the identity provider.
    await rejected(app, `Bearer ${sign(claims(), SECRET, "HS256", "rsa-1")}`);
    await rejected(app, `Bearer ${sign(claims(), publicPem(rsa.publicKey), "HS256", "rsa-1")}`);
    await rejected(app, `Bearer ${b64url({ alg: "none", kid: "rsa-1" })}.${b64url(claims())}.`);
    await rejected(app, `Bearer ${sign(claims(), rsa.privateKey, "RS256")}`); // no kid
    expect(fetches()).toBe(1);
  });

  it("rejects a kid whose JWK is symmetric, not for signatures, or does not fit alg", async () => {
    const other = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const { app } = await provider([
      rsaJwk,
      ecJwk,
      edJwk,
      { kty: "oct", k: Buffer.from(SECRET).toString("base64url"), kid: "sym" },
      publicJwk(other.publicKey, "enc-4", { use: "enc" }),
    ]);
    await rejected(app, `Bearer ${token(rsa.privateKey, "RS256", "sym")}`);
    await rejected(app, `Bearer ${token(other.privateKey, "RS256", "enc-4")}`);
    // ed-3 is published without alg: its key type still decides.
    await rejected(app, `Bearer ${token(rsa.privateKey, "RS256", "ed-3")}`);
    // rsa-1 is published for RS256 only; ec-2 is a P-256 key.
    await rejected(app, `Bearer ${token(rsa.privateKey, "PS256", "rsa-1")}`);
    await rejected(app, `Bearer ${token(generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey, "ES384", "ec-2")}`);
    await accepted(app, rsaToken());
  });

  it("picks up a key the provider rotates in within one cooldown", async () => {
    const { idp, app, fetches } = await provider([rsaJwk]);
    await accepted(app, rsaToken());
    idp.keys = [rsaJwk, ecJwk];
    // Right after a fetch the provider is not asked again.
    clock += 1_000;
    expect((await rejected(app, `Bearer ${ecToken()}`)).detail).toBe(UNKNOWN_KEY);
    expect(fetches()).toBe(1);
    clock += COOLDOWN_MS - 1_000;
    await accepted(app, ecToken());
    expect(fetches()).toBe(2);
    await accepted(app, ecToken());
    await accepted(app, rsaToken());
    expect(fetches()).toBe(2);
  });

  it("answers a spray of made-up kids with one fetch per cooldown and never locks out a valid key", async () => {
    const { idp, app, fetches } = await provider([rsaJwk, ecJwk, edJwk]);
    await accepted(app, rsaToken());
    for (let round = 1; round <= 3; round++) {
      clock += COOLDOWN_MS;
      const spray = await Promise.all(Array.from({ length: 50 }, () => call(app, madeUpKid())));
      for (const res of spray) expect(res.json()).toMatchObject({ status: 401, detail: UNKNOWN_KEY });
      for (let i = 0; i < 50; i++) expect(await unknownKid(app)).toBe(UNKNOWN_KEY);
      expect(fetches()).toBe(1 + round);
      // Published keys never asked for before work in the middle of the spray, without a fetch.
      await accepted(app, ecToken());
      await accepted(app, edToken());
      expect(fetches()).toBe(1 + round);
    }
    // A key rotated in while the spray goes on is picked up by the next fetch it allows.
    const rotated = generateKeyPairSync("rsa", { modulusLength: 2048 });
    idp.keys = [...idp.keys, publicJwk(rotated.publicKey, "rsa-5", { alg: "RS256" })];
    expect(await unknownKid(app)).toBe(UNKNOWN_KEY);
    clock += COOLDOWN_MS;
    expect(await unknownKid(app)).toBe(UNKNOWN_KEY);
    await accepted(app, token(rotated.privateKey, "RS256", "rsa-5"));
    expect(fetches()).toBe(5);
  });

  it("refetches the set when its max-age runs out and stops accepting a key the provider withdrew", async () => {
    const { idp, app, fetches } = await provider([rsaJwk, edJwk]);
    await accepted(app, rsaToken());
    clock += DEFAULT_MAX_AGE_MS - 1;
    await accepted(app, rsaToken());
    expect(fetches()).toBe(1);
    clock += 1;
    // Requests arriving during the refetch share it.
    const concurrent = await Promise.all(Array.from({ length: 10 }, () => call(app, `Bearer ${rsaToken()}`)));
    expect(concurrent.map((res) => res.statusCode)).toEqual(Array(10).fill(200));
    expect(fetches()).toBe(2);

    idp.keys = [edJwk];
    clock += DEFAULT_MAX_AGE_MS;
    expect((await rejected(app, `Bearer ${rsaToken()}`)).detail).toBe(UNKNOWN_KEY);
    expect(fetches()).toBe(3);
    // From now on it is an unknown kid like any other: one fetch per cooldown.
    await rejected(app, `Bearer ${rsaToken()}`);
    expect(fetches()).toBe(3);
    clock += COOLDOWN_MS;
    await rejected(app, `Bearer ${rsaToken()}`);
    expect(fetches()).toBe(4);
    await accepted(app, edToken());
  });

  it("keeps a set as long as its Cache-Control max-age (less Age) says, within one minute and one hour", async () => {
    const cases: [Record<string, string>, number][] = [
      [{ "cache-control": "public, max-age=120, must-revalidate" }, 120_000],
      [{ "cache-control": "max-age=900", age: "600" }, 300_000],
      [{ "cache-control": "max-age=5" }, 60_000],
      [{ "cache-control": "no-cache" }, 60_000],
      [{ "cache-control": "max-age=604800" }, 3_600_000],
      [{}, DEFAULT_MAX_AGE_MS],
    ];
    for (const [headers, maxAgeMs] of cases) {
      const { idp, app, fetches } = await provider([rsaJwk]);
      idp.headers = headers;
      await accepted(app, rsaToken());
      clock += maxAgeMs - 1;
      await accepted(app, rsaToken());
      expect(fetches(), JSON.stringify(headers)).toBe(1);
      clock += 1;
      await accepted(app, rsaToken());
      expect(fetches(), JSON.stringify(headers)).toBe(2);
    }
  });

  it("keeps the last good set while the provider answers errors, and answers unknown kids 401", async () => {
    const { idp, app, fetches, logLines } = await provider([rsaJwk, ecJwk]);
    const presented = rsaToken();
    await accepted(app, presented);
    idp.status = 503;
    clock += DEFAULT_MAX_AGE_MS;
    await accepted(app, rsaToken());
    expect(fetches()).toBe(2);
    // The whole set is kept, not only the keys asked for before the outage.
    await accepted(app, ecToken());
    expect(await unknownKid(app)).toBe(KEY_UNAVAILABLE);
    expect(fetches()).toBe(2);
    // Retried once per cooldown; known keys meanwhile are answered from the set.
    clock += COOLDOWN_MS;
    expect(await unknownKid(app)).toBe(KEY_UNAVAILABLE);
    await accepted(app, rsaToken());
    expect(fetches()).toBe(3);

    idp.status = 200;
    clock += COOLDOWN_MS;
    expect(await unknownKid(app)).toBe(UNKNOWN_KEY);
    expect(fetches()).toBe(4);
    await accepted(app, rsaToken());
    await accepted(app, ecToken());
    expect(fetches()).toBe(4);
    const warnings = logLines.filter((line) => line.includes(FETCH_FAILED));
    expect(warnings.length).toBe(2);
    for (const line of logLines) expect(line).not.toContain(presented.split(".")[2]);
  });

  it("answers within the fetch timeout while the provider hangs", async () => {
    // The timeout is real time (the fetch is aborted): shortened here from 5 s.
    const timeoutMs = 500;
    const { idp, app, fetches } = await provider([rsaJwk, ecJwk], { jwksFetchTimeoutMs: timeoutMs });
    await accepted(app, rsaToken());
    idp.hang = true;
    clock += DEFAULT_MAX_AGE_MS;
    let started = Date.now();
    await accepted(app, rsaToken());
    await accepted(app, ecToken());
    expect((await rejected(app, madeUpKid())).detail).toBe(KEY_UNAVAILABLE);
    expect(Date.now() - started).toBeLessThan(timeoutMs + 2_000);
    expect(fetches()).toBe(2);

    clock += COOLDOWN_MS;
    started = Date.now();
    let retrySettled = false;
    const retry = rejected(app, madeUpKid()).finally(() => (retrySettled = true));
    // Known keys do not wait for a retry against a provider that is already failing.
    await accepted(app, rsaToken());
    expect(retrySettled).toBe(false);
    expect((await retry).detail).toBe(KEY_UNAVAILABLE);
    expect(Date.now() - started).toBeLessThan(timeoutMs + 2_000);
    expect(fetches()).toBe(3);

    // With no set yet there is nothing to fall back on: 401, not a hung request or a 5xx.
    const fresh = await provider([rsaJwk], { jwksFetchTimeoutMs: timeoutMs });
    fresh.idp.hang = true;
    started = Date.now();
    expect((await rejected(fresh.app, `Bearer ${rsaToken()}`)).detail).toBe(KEY_UNAVAILABLE);
    expect(Date.now() - started).toBeLessThan(timeoutMs + 2_000);
  });

  it("answers 401 (not 500) when the provider is down from the start, and logs a warning without the token", async () => {
    const logLines: string[] = [];
    const down = await buildTestApp({ authJwksUrl: "http://127.0.0.1:9/jwks.json" }, { logLines });
    opened.push(down);
    const presented = rsaToken();
    expect((await rejected(down, `Bearer ${presented}`)).detail).toBe(KEY_UNAVAILABLE);
    // No retry against a provider that just failed.
    await rejected(down, `Bearer ${rsaToken({ sub: "user-2" })}`);

    const failing = await provider([rsaJwk, ecJwk]);
    failing.idp.status = 503;
    await rejected(failing.app, `Bearer ${rsaToken()}`);
    await rejected(failing.app, `Bearer ${ecToken()}`);
    expect(failing.fetches()).toBe(1);

    const warnings = logLines.filter((line) => line.includes(FETCH_FAILED));
    expect(warnings.length).toBe(1);
    for (const line of logLines) expect(line).not.toContain(presented.split(".")[2]);
  });
});

describe("jwksMaxAgeMs()", () => {
  it("reads max-age less Age, and falls back to the default, floor or ceiling", () => {
    expect(jwksMaxAgeMs(null, null)).toBe(600_000);
    expect(jwksMaxAgeMs("public", null)).toBe(600_000);
    expect(jwksMaxAgeMs("Max-Age=\"120\"", null)).toBe(120_000);
    expect(jwksMaxAgeMs("max-age=3600", "3000")).toBe(600_000);
    expect(jwksMaxAgeMs("max-age=3600", "junk")).toBe(3_600_000);
    expect(jwksMaxAgeMs("max-age=60", "3000")).toBe(60_000);
    expect(jwksMaxAgeMs("private, no-store", null)).toBe(60_000);
    expect(jwksMaxAgeMs("max-age=86400, no-cache", null)).toBe(60_000);
    // s-maxage is for shared caches; this service is a private one.
    expect(jwksMaxAgeMs("s-maxage=120", null)).toBe(600_000);
    expect(jwksMaxAgeMs("max-age=120x", null)).toBe(600_000);
  });
});

describe("unauthenticated()", () => {
  it("builds the contract's 401 with an RFC 6750 challenge", () => {
    const error = unauthenticated("The token has expired.");
    expect(error).toMatchObject({ status: 401, code: "unauthenticated", detail: "The token has expired." });
    expect(error.headers).toEqual({ "www-authenticate": 'Bearer error="invalid_token"' });
  });
});
