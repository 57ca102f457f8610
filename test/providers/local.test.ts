import { createPrivateKey, createPublicKey, type JsonWebKey } from "node:crypto";
import { createDecoder, createVerifier } from "fast-jwt";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type Database, openDatabase } from "../../src/db/database.js";
import { SigningKeysRepository } from "../../src/db/repositories/signing-keys.js";
import { LocalVideoProvider } from "../../src/providers/local/provider.js";
import { SigningKeyStore, type SigningKeyStoreOptions } from "../../src/providers/local/signing-keys.js";
import type { TokenRequest } from "../../src/providers/video-provider.js";
import { TEST_KEY_ENCRYPTION_SECRET, testConfig } from "../helpers/app.js";
import { createDatabase, dropDatabase } from "../helpers/postgres.js";

const DAY = 24 * 60 * 60 * 1000;
const MAX_TOKEN_LIFETIME_MS = 2 * DAY;

// Signing keys are global, so this file has a database of its own and may empty signing_keys.
let dbName: string;
let dbUrl: string;
let db: Database;
const extraDatabases: Database[] = [];

beforeAll(async () => {
  ({ name: dbName, url: dbUrl } = await createDatabase("jw_local"));
  db = await openDatabase(testConfig({ DATABASE_URL: dbUrl }));
  await db.migrate();
});

afterAll(async () => {
  await Promise.all(extraDatabases.map((d) => d.close()));
  await db?.close();
  if (dbName) await dropDatabase(dbName);
});

beforeEach(async () => {
  await db.prisma.signingKey.deleteMany();
});

class Clock {
  constructor(public time: Date) {}
  now = () => this.time;
  advance(ms: number) {
    this.time = new Date(this.time.getTime() + ms);
  }
}

function store(clock: Clock, overrides: Partial<SigningKeyStoreOptions> = {}) {
  return new SigningKeyStore({
    signingKeys: new SigningKeysRepository({ prisma: db.prisma }),
    keyEncryptionSecret: TEST_KEY_ENCRYPTION_SECRET,
    rotationDays: 30,
    maxTokenLifetimeMs: MAX_TOKEN_LIFETIME_MS,
    now: clock.now,
    ...overrides,
  });
}

function tokenRequest(at: Date, overrides: Partial<TokenRequest> = {}): TokenRequest {
  return {
    sessionId: "ses_abcdefghijklmnopqrstuvwx",
    userId: "cust-42",
    role: "participant",
    tokenId: "tok_0123456789",
    issuedAt: at,
    notBefore: new Date(at.getTime() - 5 * 60_000),
    expiresAt: new Date(at.getTime() + 60 * 60_000),
    ...overrides,
  };
}

const decodeComplete = createDecoder({ complete: true });

/** Verifies `token` with the matching key of `jwks`, at `at`. */
function verifyWith(jwks: { keys: JsonWebKey[] }, token: string, at: Date) {
  const { header } = decodeComplete(token) as { header: { kid: string } };
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  if (!jwk) throw new Error(`kid ${header.kid} is not in the JWKS`);
  const key = createPublicKey({ key: jwk, format: "jwk" }).export({ type: "spki", format: "pem" }).toString();
  return createVerifier({
    key,
    algorithms: ["ES256"],
    allowedAud: "joinwindow",
    clockTimestamp: at.getTime(),
  })(token) as Record<string, unknown>;
}

const rowCount = (where: object = {}) => db.prisma.signingKey.count({ where });

describe("local video provider", () => {
  it("issues ES256 tokens with exactly the documented claims, verifiable with the JWKS", async () => {
    const clock = new Clock(new Date("2030-03-01T10:00:00.000Z"));
    const keys = store(clock);
    const provider = new LocalVideoProvider({ keys, issuer: "https://join.example" });
    expect(provider.name).toBe("local");
    expect(provider.applicationId).toBeNull();

    const request = tokenRequest(clock.time, {
      issuedAt: new Date("2030-03-01T10:00:00.999Z"),
      notBefore: new Date("2030-03-01T09:55:00.500Z"),
      expiresAt: new Date("2030-03-01T11:00:59.999Z"),
      role: "moderator",
    });
    const { token } = await provider.issueToken(request);

    const { header, payload } = decodeComplete(token) as { header: Record<string, unknown>; payload: object };
    const { kid } = await keys.currentKey();
    expect(header).toEqual({ alg: "ES256", typ: "JWT", kid });

    const claims = verifyWith(await keys.jwks(), token, clock.time);
    expect(claims).toEqual(payload);
    expect(claims).toStrictEqual({
      iss: "https://join.example",
      sub: "cust-42",
      aud: "joinwindow",
      sid: "ses_abcdefghijklmnopqrstuvwx",
      role: "moderator",
      nbf: Date.parse("2030-03-01T09:55:00Z") / 1000,
      exp: Date.parse("2030-03-01T11:00:59Z") / 1000,
      iat: Date.parse("2030-03-01T10:00:00Z") / 1000,
      jti: "tok_0123456789",
    });

    // A second token reuses the key.
    const second = await provider.issueToken(tokenRequest(clock.time, { tokenId: "tok_2" }));
    expect((decodeComplete(second.token) as { header: { kid: string } }).header.kid).toBe(kid);
    expect(await rowCount()).toBe(1);
  });

  it("creates session ids that look like ses_… and differ", async () => {
    const provider = new LocalVideoProvider({ keys: store(new Clock(new Date())), issuer: "joinwindow" });
    const settings = { maxParticipants: 2, waitingRoom: false, recording: false };
    const ids = await Promise.all(
      Array.from({ length: 20 }, (_, i) => provider.createSession({ externalId: `apt-${i}`, settings, closesAt: new Date() })),
    );
    for (const { sessionId } of ids) expect(sessionId).toMatch(/^ses_[A-Za-z0-9_-]{24}$/);
    expect(new Set(ids.map((s) => s.sessionId)).size).toBe(ids.length);
  });

  it("stores the private key only encrypted, and a different secret cannot decrypt it", async () => {
    const clock = new Clock(new Date("2031-01-01T00:00:00Z"));
    const { kid, privateKey } = await store(clock).currentKey();
    const d = createPrivateKey(privateKey).export({ format: "jwk" }).d;
    expect(d).toBeTruthy();

    const row = await db.prisma.signingKey.findUniqueOrThrow({ where: { kid } });
    expect(row.algorithm).toBe("ES256");
    expect(row.privateKeyEncrypted).toMatch(/^v1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]+$/);
    expect(row.privateKeyEncrypted).not.toContain(d);
    expect(row.privateKeyEncrypted).not.toContain("PRIVATE KEY");
    const pemBody = privateKey.split("\n").filter((l) => l && !l.startsWith("-----")).join("");
    expect(row.privateKeyEncrypted).not.toContain(pemBody.slice(0, 40));
    expect(JSON.stringify(row.publicJwk)).not.toContain(d);
    expect(row.publicJwk).not.toHaveProperty("d");
    expect(row.createdAt.toISOString()).toBe(clock.time.toISOString());
    expect(row.rotatesAt.getTime() - row.createdAt.getTime()).toBe(30 * DAY);
    expect(row.publishedUntil.getTime() - row.rotatesAt.getTime()).toBe(MAX_TOKEN_LIFETIME_MS);

    const otherSecret = store(clock, { keyEncryptionSecret: "another-key-encryption-secret-0123456789" });
    const failure = otherSecret.currentKey();
    await expect(failure).rejects.toThrow(
      `cannot decrypt signing key ${kid}: KEY_ENCRYPTION_SECRET differs from the one that encrypted it`,
    );
    await expect(failure).rejects.not.toThrow(d);

    // The kid is bound to its ciphertext: moved to another row, it does not open.
    const swapped = await db.prisma.signingKey.create({
      data: { ...row, kid: "moved-ciphertext", createdAt: new Date(row.createdAt.getTime() + 1), publicJwk: {} },
    });
    await expect(store(clock).currentKey()).rejects.toThrow(/^cannot decrypt signing key moved-ciphertext: /);
    await db.prisma.signingKey.delete({ where: { kid: swapped.kid } });
  });

  it("never publishes a private member in the JWKS", async () => {
    const clock = new Clock(new Date("2032-01-01T00:00:00Z"));
    const keys = store(clock);
    const { kid } = await keys.currentKey();
    clock.advance(31 * DAY);
    await keys.currentKey();

    const jwks = await keys.jwks();
    expect(jwks.keys).toHaveLength(2);
    for (const jwk of jwks.keys) {
      expect(Object.keys(jwk).sort()).toEqual(["alg", "crv", "kid", "kty", "use", "x", "y"]);
      expect(jwk).toMatchObject({ kty: "EC", crv: "P-256", alg: "ES256", use: "sig" });
    }
    expect(JSON.stringify(jwks)).not.toMatch(/"d"/);

    // Even a row whose stored JSON held a private member serves only the public ones.
    const row = await db.prisma.signingKey.findUniqueOrThrow({ where: { kid } });
    await db.prisma.signingKey.update({
      where: { kid },
      data: { publicJwk: { ...(row.publicJwk as object), d: "should-never-be-served" } },
    });
    expect(JSON.stringify(await keys.jwks())).not.toContain("should-never-be-served");
  });

  it("rotates after rotationDays and keeps the old key published until every token it signed has expired", async () => {
    const clock = new Clock(new Date("2033-05-01T00:00:00Z"));
    const keys = store(clock);
    const provider = new LocalVideoProvider({ keys, issuer: "joinwindow" });
    await keys.currentKey();

    // Signed just before rotation, living as long as a token may.
    clock.advance(30 * DAY - 1000);
    const oldToken = (
      await provider.issueToken(
        tokenRequest(clock.time, { expiresAt: new Date(clock.time.getTime() + MAX_TOKEN_LIFETIME_MS) }),
      )
    ).token;
    const oldKid = (await keys.currentKey()).kid;

    clock.advance(1000);
    const newToken = (await provider.issueToken(tokenRequest(clock.time))).token;
    const newKid = (await keys.currentKey()).kid;
    expect(newKid).not.toBe(oldKid);
    expect((decodeComplete(newToken) as { header: { kid: string } }).header.kid).toBe(newKid);

    let jwks = await keys.jwks();
    expect(jwks.keys.map((k) => k.kid)).toEqual([newKid, oldKid]);
    expect(verifyWith(jwks, oldToken, clock.time).jti).toBe("tok_0123456789");
    expect(verifyWith(jwks, newToken, clock.time).jti).toBe("tok_0123456789");

    // Until just before publishedUntil the old key is still there and its token still verifies.
    clock.advance(MAX_TOKEN_LIFETIME_MS - 2000);
    jwks = await keys.jwks();
    expect(jwks.keys.map((k) => k.kid)).toEqual([newKid, oldKid]);
    expect(verifyWith(jwks, oldToken, clock.time).sub).toBe("cust-42");

    clock.advance(2000);
    jwks = await keys.jwks();
    expect(jwks.keys.map((k) => k.kid)).toEqual([newKid]);
    expect(() => verifyWith(jwks, oldToken, new Date(clock.time.getTime() - 5000))).toThrow(/is not in the JWKS/);
    expect(await rowCount()).toBe(2);
  });

  it("reuses the stored key after a restart, so tokens survive it", async () => {
    const clock = new Clock(new Date("2034-02-01T00:00:00Z"));
    const before = new LocalVideoProvider({ keys: store(clock), issuer: "joinwindow" });
    const { token } = await before.issueToken(
      tokenRequest(clock.time, { expiresAt: new Date(clock.time.getTime() + MAX_TOKEN_LIFETIME_MS) }),
    );

    clock.advance(DAY);
    const restartedKeys = store(clock);
    const after = new LocalVideoProvider({ keys: restartedKeys, issuer: "joinwindow" });
    const second = await after.issueToken(tokenRequest(clock.time, { tokenId: "tok_after" }));

    const kidOf = (t: string) => (decodeComplete(t) as { header: { kid: string } }).header.kid;
    expect(kidOf(second.token)).toBe(kidOf(token));
    expect(verifyWith(await restartedKeys.jwks(), token, clock.time).jti).toBe("tok_0123456789");
    expect(await rowCount()).toBe(1);
  });

  it("creates exactly one new key when two replicas rotate at the same moment", async () => {
    const clock = new Clock(new Date("2035-07-01T00:00:00Z"));
    await store(clock).currentKey();
    clock.advance(30 * DAY);

    // A second replica: its own connection pool on the same database.
    const replicaDb = await openDatabase(testConfig({ DATABASE_URL: dbUrl }));
    extraDatabases.push(replicaDb);
    const onReplica = () => ({ signingKeys: new SigningKeysRepository({ prisma: replicaDb.prisma }) });
    const replicas = [store(clock), store(clock, onReplica())];
    // More stores per replica too, so more than two transactions race for the lock.
    const stores = [...replicas, store(clock), store(clock, onReplica())];

    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => stores[i % stores.length]!.currentKey()));
    expect(new Set(results.map((r) => r.kid)).size).toBe(1);
    expect(await rowCount({ rotatesAt: { gt: clock.time } })).toBe(1);
    expect(await rowCount()).toBe(2);
  });
});
