import { generateKeyPairSync, randomBytes } from "node:crypto";
import type { NewSigningKey, SigningKeysRepository } from "../../db/repositories/signing-keys.js";
import { SecretBox, SecretBoxError } from "../../support/secret-box.js";

/**
 * The ES256 keys of the built-in `local` video provider, kept in
 * `signing_keys` so tokens survive a restart and every replica signs with
 * the same key. Private keys are stored only encrypted (support/secret-box.ts,
 * with the kid as associated data).
 */
export interface SigningKeyStoreOptions {
  signingKeys: Pick<SigningKeysRepository, "findValid" | "findValidOrCreate" | "findPublished">;
  /** At least 32 characters. */
  keyEncryptionSecret: string;
  /** LOCAL_KEY_ROTATION_DAYS: how long a key signs. */
  rotationDays: number;
  /** A key stays published this long after it stops signing (the longest a token it signed can live). */
  maxTokenLifetimeMs: number;
  /** Injected clock for tests. */
  now?: () => Date;
}

export interface CurrentSigningKey {
  kid: string;
  /** PKCS#8 PEM: fast-jwt accepts a string or Buffer, not a KeyObject. */
  privateKey: string;
  /** The key signs until this instant. */
  rotatesAt: Date;
}

/** A public JWK as published in /.well-known/jwks.json. */
export type PublicSigningJwk = {
  kty: "EC";
  crv: "P-256";
  x: string;
  y: string;
  kid: string;
  alg: "ES256";
  use: "sig";
};

class SigningKeyDecryptionError extends Error {
  override name = "SigningKeyDecryptionError";
}

const ALGORITHM = "ES256";
const HKDF_INFO = "joinwindow signing key v1";
const DAY_MS = 24 * 60 * 60 * 1000;
/** The next key is made this long before the current one stops signing. */
const REFRESH_MARGIN_MS = 10 * 60 * 1000;

export class SigningKeyStore {
  readonly #signingKeys: SigningKeyStoreOptions["signingKeys"];
  readonly #box: SecretBox;
  readonly #rotationMs: number;
  readonly #maxTokenLifetimeMs: number;
  readonly #now: () => Date;
  #cached: CurrentSigningKey | undefined;
  // Concurrent callers on this replica share one lookup/creation.
  #pending: Promise<CurrentSigningKey> | undefined;

  constructor(options: SigningKeyStoreOptions) {
    if (options.keyEncryptionSecret.length < 32) {
      throw new Error("KEY_ENCRYPTION_SECRET must be at least 32 characters");
    }
    if (!(options.rotationDays > 0)) throw new Error("rotationDays must be positive");
    if (!(options.maxTokenLifetimeMs >= 0)) throw new Error("maxTokenLifetimeMs must not be negative");
    this.#signingKeys = options.signingKeys;
    this.#box = new SecretBox(options.keyEncryptionSecret, HKDF_INFO);
    this.#rotationMs = options.rotationDays * DAY_MS;
    this.#maxTokenLifetimeMs = options.maxTokenLifetimeMs;
    this.#now = options.now ?? (() => new Date());
  }

  /**
   * The key that signs now; creates (and persists) a new one when none is
   * valid. Called inside the join-token transaction, so it must not need a
   * database connection of its own there (the pool may be exhausted, and
   * PGlite has a single connection): the key is cached, warmed at boot, and
   * replaced in the background during the last REFRESH_MARGIN_MS of its term.
   * Only a cold or expired cache waits for the database.
   */
  async currentKey(): Promise<CurrentSigningKey> {
    const cached = this.#cached;
    const now = this.#now().getTime();
    if (cached && cached.rotatesAt.getTime() > now) {
      if (cached.rotatesAt.getTime() - REFRESH_MARGIN_MS <= now) void this.#refresh().catch(() => {});
      return cached;
    }
    return this.#refresh();
  }

  /**
   * Loads the key now and then checks it every minute, so that a request never
   * meets an expired cache even when none arrives during the refresh margin.
   * Returns the function that stops the timer.
   */
  async keepFresh(intervalMs = 60_000): Promise<() => void> {
    await this.currentKey();
    const timer = setInterval(() => void this.currentKey().catch(() => {}), intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  #refresh(): Promise<CurrentSigningKey> {
    this.#pending ??= this.#loadOrCreate().finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  /**
   * Public JWKs of every key still published. Read from the database on every
   * call, no cache: another replica may have just rotated, and a verifier that
   * refetches on an unknown kid must find it at once. It is a small indexed
   * read; HTTP caching belongs to the route.
   */
  async jwks(): Promise<{ keys: PublicSigningJwk[] }> {
    const rows = await this.#signingKeys.findPublished({ at: this.#now() });
    return { keys: rows.map((row) => publicMembers(row.kid, row.publicJwk)) };
  }

  async #loadOrCreate(): Promise<CurrentSigningKey> {
    const now = this.#now();
    // A key about to rotate no longer counts: its successor is made ahead of time.
    const valid = { algorithm: ALGORITHM, signsAfter: new Date(now.getTime() + REFRESH_MARGIN_MS) };
    const row =
      (await this.#signingKeys.findValid(valid)) ??
      (await this.#signingKeys.findValidOrCreate({ ...valid, newKey: () => this.#newKey(now) }));
    const key: CurrentSigningKey = {
      kid: row.kid,
      privateKey: this.#decrypt(row.kid, row.privateKeyEncrypted),
      rotatesAt: row.rotatesAt,
    };
    this.#cached = key;
    return key;
  }

  #newKey(now: Date): NewSigningKey {
    const kid = randomBytes(16).toString("base64url");
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const jwk = publicKey.export({ format: "jwk" });
    const rotatesAt = new Date(now.getTime() + this.#rotationMs);
    return {
      kid,
      algorithm: ALGORITHM,
      publicJwk: publicMembers(kid, jwk),
      privateKeyEncrypted: this.#box.seal(privateKey.export({ format: "pem", type: "pkcs8" }) as string, kid),
      createdAt: now,
      rotatesAt,
      publishedUntil: new Date(rotatesAt.getTime() + this.#maxTokenLifetimeMs),
    };
  }

  #decrypt(kid: string, stored: string): string {
    try {
      return this.#box.open(stored, kid);
    } catch (error) {
      if (error instanceof SecretBoxError) throw new SigningKeyDecryptionError(`cannot decrypt signing key ${kid}: ${error.message}`);
      throw error;
    }
  }
}

/** Only the public members, whatever the stored JSON holds, so a private member can never be served. */
function publicMembers(kid: string, jwk: unknown): PublicSigningJwk {
  const { kty, crv, x, y } = (jwk ?? {}) as Record<string, unknown>;
  if (kty !== "EC" || crv !== "P-256" || typeof x !== "string" || typeof y !== "string") {
    throw new Error(`signing key ${kid} has no valid P-256 public key`);
  }
  return { kty, crv, x, y, kid, alg: ALGORITHM, use: "sig" };
}
