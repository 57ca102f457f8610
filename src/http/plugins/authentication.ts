import fastifyJwt, { type FastifyJWTOptions } from "@fastify/jwt";
import type { FastifyInstance, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import type { Config } from "../../config.js";
import { AppError } from "../../domain/errors.js";
import { insufficientScope, REJECTED, unauthenticated } from "./auth-errors.js";
import { JWKS_ALGORITHMS, JWKS_FETCH_TIMEOUT_MS, jwksKeySource, staticPublicKey } from "./bearer-keys.js";

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

export type Scope = "appointments:read" | "tokens:introspect" | "tokens:revoke" | "subscriptions:manage";

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
> &
  Partial<Pick<Config, "authJwtUserClaim">>;

export interface AuthenticationOptions {
  config: AuthenticationConfig;
  /** Epoch milliseconds; tests inject a clock. */
  now?: () => number;
  /** How long one AUTH_JWKS_URL fetch may take (default 5 s); tests of a hung provider shorten it. */
  jwksFetchTimeoutMs?: number;
}

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
const MISSING_CLAIM = "The token lacks a required claim.";
const WRONG_ISSUER = "The token's issuer is not accepted.";
const WRONG_AUDIENCE = "The token's audience is not accepted.";
const badUserClaim = (claim: string) => `The token's ${claim} claim must be 1 to 200 printable characters.`;
// The same rule as the ids in webhooks (API.md §1): no control characters or lone surrogates.
const PRINTABLE = /^[^\p{C}]+$/u;
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

/**
 * The caller: the user id from the claim AUTH_JWT_USER_CLAIM names (`sub`
 * by default; `email` where the scheduler knows users by e-mail while the
 * identity provider's `sub` is opaque), and the scopes. `sub` is required
 * whatever the claim (API.md, Actors); the named claim is too.
 */
function callerFrom(payload: unknown, userClaim: string): Caller {
  if (typeof payload !== "object" || payload === null) throw unauthenticated(MALFORMED);
  const claims = payload as Record<string, unknown>;
  for (const claim of new Set(["sub", userClaim])) {
    const value = claims[claim];
    if (typeof value !== "string" || value.length > MAX_SUB_LENGTH || !PRINTABLE.test(value)) throw unauthenticated(badUserClaim(claim));
  }
  return { userId: claims[userClaim] as string, scopes: scopesFrom(claims) };
}

export default fp(
  async function authentication(app: FastifyInstance, { config, now, jwksFetchTimeoutMs }: AuthenticationOptions) {
    const userClaim = config.authJwtUserClaim ?? "sub";
    const presented = new WeakMap<FastifyRequest, string>();
    const verify: NonNullable<FastifyJWTOptions["verify"]> = {
      requiredClaims: [
        "exp",
        "sub",
        ...(userClaim !== "sub" ? [userClaim] : []),
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
      request.caller = callerFrom(payload, userClaim);
    });
  },
  // Its errors are AppErrors, which only problem-details turns into 401/403 answers.
  { name: "authentication", dependencies: ["problem-details"] },
);
