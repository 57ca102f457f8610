import { KeyObject, createPublicKey } from "node:crypto";
import fastifyJwt, { type FastifyJWTOptions, type TokenOrHeader } from "@fastify/jwt";
import type { Algorithm } from "fast-jwt";
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { type CryptoKey, createRemoteJWKSet, customFetch, errors } from "jose";
import type { Config } from "../../config.js";
import { AppError } from "../../domain/errors.js";

/**
 * Bearer JWTs from the organisation's identity provider (API.md "Actors and
 * how each authenticates"): verified with AUTH_JWT_SECRET (HS256),
 * AUTH_JWT_PUBLIC_KEY (algorithm pinned to the key's type) or AUTH_JWKS_URL
 * (the provider's whole key set, the key picked by `kid`). Every failure is a
 * 401 `unauthenticated` whose detail is one of our own sentences, never
 * library text or token content.
 */

export interface Caller {
  userId: string;
  scopes: ReadonlySet<string>;
}

export type Scope = "appointments:read" | "tokens:introspect" | "tokens:revoke";

declare module "fastify" {
  interface FastifyRequest {
    /** Set by `app.authenticate`. */
    caller: Caller;
  }
  interface FastifyInstance {
    authenticate: (request: FastifyRequest) => Promise<void>;
  }
}

export type AuthenticationConfig = Pick<
  Config,
  "authJwtSecret" | "authJwtPublicKey" | "authJwksUrl" | "authJwtIssuer" | "authJwtAudience"
>;

export interface AuthenticationOptions {
  config: AuthenticationConfig;
  /** Epoch milliseconds; tests inject a clock. */
  now?: () => number;
  /** How long one AUTH_JWKS_URL fetch may take (default 5 s); tests of a hung provider shorten it. */
  jwksFetchTimeoutMs?: number;
}

/**
 * 401 `unauthenticated`. RFC 6750 §3.1: a request that carried no bearer
 * credentials gets a bare `Bearer` challenge, one with a bad token gets
 * `error="invalid_token"`.
 */
export const unauthenticated = (detail: string, credentialsGiven = true): AppError =>
  new AppError("unauthenticated", detail, {}, {
    "www-authenticate": credentialsGiven ? 'Bearer error="invalid_token"' : "Bearer",
  });

const insufficientScope = (scope: Scope): AppError =>
  new AppError("insufficient_scope", `This operation needs the ${scope} scope.`, {}, {
    "www-authenticate": `Bearer error="insufficient_scope", scope="${scope}"`,
  });

export function hasScope(caller: Caller, scope: Scope): boolean {
  return caller.scopes.has(scope);
}

/** onRequest/preHandler hook: 403 `insufficient_scope` unless the caller has `scope`. Runs after `app.authenticate`. */
export function requireScope(scope: Scope): (request: FastifyRequest) => Promise<void> {
  return async (request) => {
    // Fails closed if a route forgot app.authenticate in front of it.
    if (!request.caller) throw unauthenticated(MISSING, false);
    if (!hasScope(request.caller, scope)) throw insufficientScope(scope);
  };
}

const MISSING = "Missing bearer token.";
const NOT_BEARER = "Send the token as 'Authorization: Bearer <token>'.";
const MALFORMED = "The bearer token is not a well-formed JWT.";
const EXPIRED = "The token has expired.";
const NOT_YET_VALID = "The token is not valid yet.";
const REJECTED = "The token's signature or algorithm is not accepted.";
const MISSING_CLAIM = "The token lacks a required claim.";
const WRONG_ISSUER = "The token's issuer is not accepted.";
const WRONG_AUDIENCE = "The token's audience is not accepted.";
const BAD_SUBJECT = "The token's sub claim must be 1 to 200 printable characters.";
// The same rule as the ids in webhooks (API.md §1): no control characters or lone surrogates.
const PRINTABLE = /^[^\p{C}]+$/u;
const UNKNOWN_KEY = "The token's signing key is not known.";
const KEY_UNAVAILABLE = "The identity provider's signing keys could not be retrieved.";
const NOT_CONFIGURED = "No identity provider is configured to verify bearer tokens.";

// Tokens only ever travel in a header, so this is generous; it bounds the work done on junk.
const MAX_TOKEN_LENGTH = 8192;
const MAX_SUB_LENGTH = 200;
const CLOCK_TOLERANCE_MS = 30_000;
const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const BEARER = /^Bearer +(\S+) *$/i;

/** The token from `Authorization: Bearer <token>`, or the 401 that explains what is wrong. */
function bearerToken(header: string | undefined): string {
  if (header === undefined || header.trim() === "") throw unauthenticated(MISSING, false);
  // Another scheme (Basic, …) is not a bearer credential at all: bare challenge.
  if (!/^Bearer(?: |$)/i.test(header)) throw unauthenticated(NOT_BEARER, false);
  const match = BEARER.exec(header);
  if (!match?.[1]) throw unauthenticated(NOT_BEARER);
  const token = match[1];
  if (token.length > MAX_TOKEN_LENGTH || !JWS_COMPACT.test(token)) throw unauthenticated(MALFORMED);
  return token;
}

/**
 * Which JWS algorithms a public key may verify. Pinned per key type so that
 * neither `none` nor an HMAC "signed" with the public key can pass.
 */
function algorithmsFor(key: KeyObject): Algorithm[] {
  switch (key.asymmetricKeyType) {
    case "rsa":
      return ["RS256", "PS256"];
    case "ec":
      if (key.asymmetricKeyDetails?.namedCurve === "prime256v1") return ["ES256"];
      if (key.asymmetricKeyDetails?.namedCurve === "secp384r1") return ["ES384"];
      return [];
    case "ed25519":
      return ["EdDSA"];
    default:
      return [];
  }
}

const JWKS_ALGORITHMS: Algorithm[] = ["RS256", "PS256", "ES256", "ES384", "EdDSA"];

function staticPublicKey(pem: string): { pem: string; algorithms: Algorithm[] } {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    throw new Error("AUTH_JWT_PUBLIC_KEY is not a readable PEM public key");
  }
  const algorithms = algorithmsFor(key);
  if (algorithms.length === 0) {
    throw new Error("AUTH_JWT_PUBLIC_KEY must be an RSA, EC P-256/P-384 or Ed25519 public key");
  }
  // Normalised to SPKI so a PEM private key or certificate also works and fast-jwt sees one format.
  return { pem: key.export({ type: "spki", format: "pem" }) as string, algorithms };
}

/**
 * Cache and refetch policy for AUTH_JWKS_URL (see jwksKeySource). The floor
 * keeps a provider that says `no-cache` from being asked on every request;
 * the ceiling bounds how long a key the provider has withdrawn still verifies.
 */
const JWKS_FETCH_TIMEOUT_MS = 5_000;
const JWKS_COOLDOWN_MS = 5_000;
const JWKS_MAX_AGE_DEFAULT_MS = 10 * 60_000;
const JWKS_MAX_AGE_FLOOR_MS = 60_000;
const JWKS_MAX_AGE_CEILING_MS = 60 * 60_000;

/** How long a fetched key set stays fresh, from its Cache-Control max-age less its Age (RFC 9111 §4.2). */
export function jwksMaxAgeMs(cacheControl: string | null, age: string | null): number {
  if (cacheControl === null) return JWKS_MAX_AGE_DEFAULT_MS;
  if (/(?:^|,)\s*no-(?:cache|store)\s*(?:,|$)/i.test(cacheControl)) return JWKS_MAX_AGE_FLOOR_MS;
  const maxAge = /(?:^|,)\s*max-age\s*=\s*"?(\d+)"?\s*(?:,|$)/i.exec(cacheControl)?.[1];
  if (maxAge === undefined) return JWKS_MAX_AGE_DEFAULT_MS;
  const ageSeconds = /^\d+$/.test(age?.trim() ?? "") ? Number(age) : 0;
  const ms = (Number(maxAge) - ageSeconds) * 1000;
  return Math.min(Math.max(ms, JWKS_MAX_AGE_FLOOR_MS), JWKS_MAX_AGE_CEILING_MS);
}

/**
 * The key lookup @fastify/jwt calls with the decoded token. jose's remote key
 * set fetches AUTH_JWKS_URL (with a timeout, one fetch at a time) and picks
 * the key for `kid` and `alg` from the whole set, so every key the provider
 * publishes verifies at once. When to fetch is decided here, on the injected
 * clock, because jose's own schedule neither reads Cache-Control nor keeps
 * serving its last set once a refetch fails:
 * - the set is refetched when its max-age (jwksMaxAgeMs) runs out;
 * - a `kid` not in the set triggers a refetch, so a rotated-in key works
 *   within seconds;
 * - the provider is asked at most once per JWKS_COOLDOWN_MS, whatever the
 *   reason, so a flood of made-up kids costs one fetch per cooldown;
 * - a failed fetch leaves the last good set in use, and while the provider is
 *   failing a stale set answers at once instead of waiting for each retry.
 */
function jwksKeySource(jwksUrl: string, now: () => number, fetchTimeoutMs: number) {
  // Written by the fetch, read once jose has accepted the set it answered.
  let fetchedMaxAgeMs = JWKS_MAX_AGE_DEFAULT_MS;
  const keySet = createRemoteJWKSet(new URL(jwksUrl), {
    timeoutDuration: fetchTimeoutMs,
    // jose fetches only when reload() is called (or before it holds any set, which refresh() covers).
    cacheMaxAge: Infinity,
    cooldownDuration: Infinity,
    [customFetch]: async (url, init) => {
      const response = await fetch(url, init);
      fetchedMaxAgeMs = jwksMaxAgeMs(response.headers.get("cache-control"), response.headers.get("age"));
      return response;
    },
  });
  let loaded = false;
  let lastFetchFailed = false;
  let staleAt = -Infinity;
  let nextFetchAt = -Infinity;
  let pending: Promise<void> | undefined;
  const pems = new WeakMap<CryptoKey, { pem: string; algorithms: Algorithm[] }>();

  /** Starts a fetch unless one is running (then shares it) or the cooldown forbids it; never rejects. */
  function refresh(log: FastifyBaseLogger): Promise<void> {
    if (pending === undefined && now() >= nextFetchAt) {
      pending = keySet
        .reload()
        .then(
          () => {
            loaded = true;
            lastFetchFailed = false;
            staleAt = now() + fetchedMaxAgeMs;
          },
          (error: unknown) => {
            lastFetchFailed = true;
            // fetch() says only "fetch failed"; its cause names the network error (ECONNREFUSED, …).
            const { message, cause } = error as { message?: unknown; cause?: { code?: unknown } };
            log.warn({ reason: message, cause: cause?.code }, "identity provider's JWKS could not be fetched");
          },
        )
        .finally(() => {
          nextFetchAt = now() + JWKS_COOLDOWN_MS;
          pending = undefined;
        });
    }
    return pending ?? Promise.resolve();
  }

  /**
   * The key for `alg` and `kid` in the set in use, or undefined if it has none. jose matches the kid, the key
   * type and curve alg needs, the JWK's own alg if it names one, and `use` "sig" if it names one; a symmetric
   * JWK never matches the asymmetric algorithms allowed here.
   */
  async function keyInSet(alg: string, kid: string): Promise<CryptoKey | undefined> {
    try {
      return await keySet({ alg, kid });
    } catch (error) {
      if (error instanceof errors.JWKSNoMatchingKey) return undefined;
      // E.g. several keys with this kid, or a JWK that is not a valid public key.
      throw unauthenticated(REJECTED);
    }
  }

  function pemFor(key: CryptoKey, alg: string): string {
    let entry = pems.get(key);
    if (!entry) {
      const keyObject = KeyObject.from(key);
      const pem = keyObject.export({ type: "spki", format: "pem" }) as string;
      entry = { pem, algorithms: algorithmsFor(keyObject) };
      pems.set(key, entry);
    }
    if (!entry.algorithms.includes(alg as Algorithm)) throw unauthenticated(REJECTED);
    return entry.pem;
  }

  return async function publicKeyFor(request: FastifyRequest, decoded: TokenOrHeader): Promise<string> {
    const header = ("header" in decoded ? decoded.header : decoded) as { alg?: unknown; kid?: unknown };
    const { alg, kid } = header;
    // Checked before any fetch: HS*/none tokens and junk headers never reach the provider.
    if (typeof alg !== "string" || !JWKS_ALGORITHMS.includes(alg as Algorithm)) throw unauthenticated(REJECTED);
    if (typeof kid !== "string" || kid.length === 0 || kid.length > 256) throw unauthenticated(UNKNOWN_KEY);

    if (now() >= staleAt) {
      const refreshed = refresh(request.log);
      if (!loaded || !lastFetchFailed) await refreshed;
    }
    if (!loaded) throw unauthenticated(KEY_UNAVAILABLE);

    let key = await keyInSet(alg, kid);
    if (key === undefined) {
      // Perhaps rotated in since the last fetch (or fetched meanwhile by a concurrent request).
      await refresh(request.log);
      key = await keyInSet(alg, kid);
      if (key === undefined) throw unauthenticated(lastFetchFailed ? KEY_UNAVAILABLE : UNKNOWN_KEY);
    }
    return pemFor(key, alg);
  };
}

/**
 * @fastify/jwt answers several rejections with its own 400/401 errors and
 * passes others (nbf in the future, algorithm outside the allowlist, wrong
 * claim type, key lookup failures) through as 500s. Everything becomes a 401
 * with one of our sentences; library messages are only inspected, never sent.
 */
function verificationFailure(error: unknown): AppError {
  if (error instanceof AppError) return error;
  const { code, message } = error as { code?: unknown; message?: unknown };
  const text = typeof message === "string" ? message : "";
  switch (code) {
    case "FST_JWT_AUTHORIZATION_TOKEN_EXPIRED":
    case "FAST_JWT_EXPIRED":
      return unauthenticated(EXPIRED);
    case "FAST_JWT_INACTIVE":
      return unauthenticated(NOT_YET_VALID);
    case "FAST_JWT_MALFORMED":
    case "FAST_JWT_INVALID_PAYLOAD":
      return unauthenticated(MALFORMED);
  }
  if (/claim is required/.test(text)) return unauthenticated(MISSING_CLAIM);
  if (/\biss claim\b/.test(text)) return unauthenticated(WRONG_ISSUER);
  if (/\baud claim\b/.test(text)) return unauthenticated(WRONG_AUDIENCE);
  if (/malformed|not a valid (base64url|JSON)/.test(text)) return unauthenticated(MALFORMED);
  return unauthenticated(REJECTED);
}

/**
 * Scopes from `scope` (RFC 9068: a space-separated string) and `scp` (Entra
 * ID: a string; Okta: an array). Both shapes are read from both claims and
 * merged; any other shape grants nothing.
 */
function scopesFrom(claims: Record<string, unknown>): Set<string> {
  const scopes = new Set<string>();
  for (const value of [claims.scope, claims.scp]) {
    const items =
      typeof value === "string"
        ? value.split(/\s+/)
        : Array.isArray(value) && value.every((item) => typeof item === "string")
          ? (value as string[])
          : [];
    for (const item of items) if (item !== "") scopes.add(item);
  }
  return scopes;
}

function callerFrom(payload: unknown): Caller {
  if (typeof payload !== "object" || payload === null) throw unauthenticated(MALFORMED);
  const claims = payload as Record<string, unknown>;
  const { sub } = claims;
  if (typeof sub !== "string" || sub.length > MAX_SUB_LENGTH || !PRINTABLE.test(sub)) throw unauthenticated(BAD_SUBJECT);
  return { userId: sub, scopes: scopesFrom(claims) };
}

export default fp(
  async function authentication(app: FastifyInstance, { config, now, jwksFetchTimeoutMs }: AuthenticationOptions) {
    const presented = new WeakMap<FastifyRequest, string>();
    const verify: NonNullable<FastifyJWTOptions["verify"]> = {
      requiredClaims: [
        "exp",
        "sub",
        // fast-jwt skips allowedIss/allowedAud for an absent claim, so a configured one is also required.
        ...(config.authJwtIssuer !== undefined ? ["iss"] : []),
        ...(config.authJwtAudience !== undefined ? ["aud"] : []),
      ],
      clockTolerance: CLOCK_TOLERANCE_MS,
      // A gateway or desktop sends the same JWT on every call: remember verified tokens (LRU, at most
      // 5 minutes, never past their own exp). Failures are not cached, so a fixed key is picked up at once.
      cache: 1000,
      cacheTTL: 5 * 60_000,
      ...(config.authJwtIssuer !== undefined && { allowedIss: config.authJwtIssuer }),
      ...(config.authJwtAudience !== undefined && { allowedAud: config.authJwtAudience }),
      // authenticate() has already parsed the header (with its own, stricter rules).
      extractToken: (request) => presented.get(request),
    };

    let secret: FastifyJWTOptions["secret"] | undefined;
    if (config.authJwtSecret !== undefined) {
      secret = { public: config.authJwtSecret };
      verify.algorithms = ["HS256"];
    } else if (config.authJwtPublicKey !== undefined) {
      const key = staticPublicKey(config.authJwtPublicKey);
      secret = { public: key.pem };
      verify.algorithms = key.algorithms;
    } else if (config.authJwksUrl !== undefined) {
      const timeoutMs = jwksFetchTimeoutMs ?? JWKS_FETCH_TIMEOUT_MS;
      secret = { public: jwksKeySource(config.authJwksUrl, now ?? Date.now, timeoutMs) };
      verify.algorithms = JWKS_ALGORITHMS;
    }
    // `{ public }` only: this service verifies user tokens and never signs them.
    if (secret !== undefined) await app.register(fastifyJwt, { secret, verify, decode: { complete: true } });

    app.decorateRequest("caller", null as unknown as Caller);
    app.decorate("authenticate", async function authenticate(request: FastifyRequest): Promise<void> {
      const token = bearerToken(request.headers.authorization);
      if (secret === undefined) throw unauthenticated(NOT_CONFIGURED);
      presented.set(request, token);
      let payload: unknown;
      try {
        // Per-call options make @fastify/jwt build a verifier per call (~5x the cost for RSA), so the
        // injected clock is passed only when it differs from the real one (a test's fake clock).
        const t = now?.() ?? Date.now();
        payload = await request.jwtVerify(Math.abs(t - Date.now()) > 1000 ? { clockTimestamp: t } : undefined);
      } catch (error) {
        throw verificationFailure(error);
      } finally {
        presented.delete(request);
      }
      request.caller = callerFrom(payload);
    });
  },
  // Its errors are AppErrors, which only problem-details turns into 401/403 answers.
  { name: "authentication", dependencies: ["problem-details"] },
);
