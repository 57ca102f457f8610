import type { PrismaClient } from "../database.js";

/** A key as it is loaded to sign with: its private half is still encrypted. */
export interface StoredSigningKey {
  kid: string;
  privateKeyEncrypted: string;
  rotatesAt: Date;
}

export interface NewSigningKey extends StoredSigningKey {
  algorithm: string;
  /** The public JWK, as published. */
  publicJwk: Record<string, string>;
  createdAt: Date;
  publishedUntil: Date;
}

/** pg_advisory_xact_lock key serialising key creation across replicas ("jwsignky" in ASCII). */
const SIGNING_KEY_LOCK_ID = 0x6a777369676e6b79n;

const STORED = { kid: true, privateKeyEncrypted: true, rotatesAt: true } as const;

type SigningKeyTable = Pick<PrismaClient, "signingKey">;

/** The `signing_keys` table of the local video provider. */
export class SigningKeysRepository {
  readonly #prisma: PrismaClient;

  constructor({ prisma }: { prisma: PrismaClient }) {
    this.#prisma = prisma;
  }

  /** The newest key of `algorithm` that still signs after `signsAfter`, if any. */
  findValid({ algorithm, signsAfter }: { algorithm: string; signsAfter: Date }): Promise<StoredSigningKey | null> {
    return findValid(this.#prisma, algorithm, signsAfter);
  }

  /**
   * findValid, or else stores the key `newKey` makes. Two replicas rotating
   * at once create one key: the second waits on the advisory lock, then
   * finds the first one's.
   */
  findValidOrCreate({
    algorithm,
    signsAfter,
    newKey,
  }: {
    algorithm: string;
    signsAfter: Date;
    newKey: () => NewSigningKey;
  }): Promise<StoredSigningKey> {
    return this.#prisma.$transaction(
      async (tx) => {
        await tx.$executeRaw`SELECT pg_advisory_xact_lock(${SIGNING_KEY_LOCK_ID})`;
        return (
          (await findValid(tx, algorithm, signsAfter)) ?? (await tx.signingKey.create({ data: newKey(), select: STORED }))
        );
      },
      { maxWait: 10_000, timeout: 15_000 },
    );
  }

  /** The public JWKs (as stored) of the keys still published at `at`, newest first. */
  findPublished({ at }: { at: Date }): Promise<{ kid: string; publicJwk: unknown }[]> {
    return this.#prisma.signingKey.findMany({
      where: { publishedUntil: { gt: at } },
      orderBy: { createdAt: "desc" },
      select: { kid: true, publicJwk: true },
    });
  }
}

function findValid(db: SigningKeyTable, algorithm: string, signsAfter: Date) {
  return db.signingKey.findFirst({
    where: { rotatesAt: { gt: signsAfter }, algorithm },
    orderBy: [{ createdAt: "desc" }, { kid: "asc" }],
    select: STORED,
  });
}
