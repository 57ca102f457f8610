import { createPublicKey, KeyObject } from "node:crypto";
import type { TokenOrHeader } from "@fastify/jwt";
import type { Algorithm } from "fast-jwt";
import type { FastifyBaseLogger, FastifyRequest } from "fastify";
import { type CryptoKey, createRemoteJWKSet, customFetch, errors } from "jose";
import { REJECTED, unauthenticated } from "./auth-errors.js";

/**
 * Where the keys that verify user JWTs come from: a configured PEM public
 * key, or the identity provider's JWKS (API.md "Actors"). Each key verifies
 * only the algorithms its type allows.
 */

const UNKNOWN_KEY = "The token's signing key is not known.";
const KEY_UNAVAILABLE = "The identity provider's signing keys could not be retrieved.";

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

export const JWKS_ALGORITHMS: Algorithm[] = ["RS256", "PS256", "ES256", "ES384", "EdDSA"];

export function staticPublicKey(pem: string): { pem: string; algorithms: Algorithm[] } {
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
export const JWKS_FETCH_TIMEOUT_MS = 5_000;
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
export function jwksKeySource(jwksUrl: string, now: () => number, fetchTimeoutMs: number) {
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
