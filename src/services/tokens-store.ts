import { createHash } from "node:crypto";
import type { RevocationReason } from "../generated/prisma/enums.js";
import type { Db } from "./audit.js";

/** Tokens are stored only as this hash (hex SHA-256): a database leak yields no usable token. */
export const hashToken = (token: string) => createHash("sha256").update(token).digest("hex");

/** Live = not revoked and not yet expired. Expired tokens are left alone so introspection keeps saying "expired". */
export async function revokeLiveTokens(
  db: Db,
  where: { appointmentId: string; userId?: string; notUserId?: string },
  reason: RevocationReason,
  now: Date,
): Promise<number> {
  const { count } = await db.joinToken.updateMany({
    where: {
      appointmentId: where.appointmentId,
      revokedAt: null,
      expiresAt: { gt: now },
      ...(where.userId !== undefined ? { userId: where.userId } : {}),
      ...(where.notUserId !== undefined ? { userId: { not: where.notUserId } } : {}),
    },
    data: { revokedAt: now, revocationReason: reason },
  });
  return count;
}

/** Serialises transactions on one key (an externalId, a user) across every replica, until commit. */
export async function lockKey(db: Db, key: string): Promise<void> {
  await db.$executeRaw`SELECT pg_advisory_xact_lock(hashtextextended(${key}, 0))`;
}
