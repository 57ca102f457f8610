import type { PrismaClient } from "../db/database.js";
import type { Sql } from "../db/sql.js";
import { recordAudit } from "./audit.js";
import { auditInsert, type IntrospectedRow, TOKEN_BY_HASH } from "./queries.js";
import { hashToken } from "./tokens-store.js";

export type IntrospectionResult =
  | {
      active: true;
      jti: string;
      sub: string;
      role: string;
      appointmentId: string;
      sessionId: string;
      provider: string;
      iat: number;
      nbf: number;
      exp: number;
    }
  | { active: false; reason: "unknown" | "revoked" | "expired" | "not_yet_valid"; revocationReason?: string };

const seconds = (date: Date) => Math.floor(date.getTime() / 1000);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Introspection (API.md §4) and operator revocation (§5) of single tokens. */
export class TokenChecks {
  constructor(private readonly options: { prisma: PrismaClient; sql: Sql; now: () => Date }) {}

  /**
   * Fails closed: only the exact token whose hash is stored can be active, so
   * a token altered in any byte, or one this service never issued, is unknown.
   * Every call is audited, against the token's appointment when there is one.
   */
  async introspect(token: string, actor: string): Promise<IntrospectionResult> {
    const { sql } = this.options;
    const [row] = await sql.query<IntrospectedRow>(TOKEN_BY_HASH, [hashToken(token)]);
    const now = this.options.now();
    const result: IntrospectionResult = !row
      ? { active: false, reason: "unknown" }
      : row.revokedAt
        ? { active: false, reason: "revoked", revocationReason: row.revocationReason ?? "operator" }
        : now >= row.expiresAt
          ? { active: false, reason: "expired" }
          : now < row.notBefore
            ? { active: false, reason: "not_yet_valid" }
            : {
                active: true,
                jti: row.id,
                sub: row.userId,
                role: row.role,
                appointmentId: row.externalId,
                sessionId: row.sessionId,
                provider: row.provider,
                iat: seconds(row.issuedAt),
                nbf: seconds(row.notBefore),
                exp: seconds(row.expiresAt),
              };
    await sql.query(
      ...auditInsert(
        [
          {
            externalId: row?.externalId ?? "",
            actor,
            type: "token.introspected",
            outcome: result.active ? "active" : result.reason,
            detail: row ? { tokenId: row.id, userId: row.userId } : {},
          },
        ],
        now,
      ),
    );
    return result;
  }

  /** RFC 7009: the answer is the same whether or not the token was live or known. */
  async revoke(by: { token?: string; tokenId?: string }, actor: string): Promise<void> {
    const { prisma } = this.options;
    const where = by.token !== undefined ? { tokenHash: hashToken(by.token) } : by.tokenId && UUID.test(by.tokenId) ? { id: by.tokenId } : null;
    if (!where) return;
    const now = this.options.now();
    const row = await prisma.joinToken.findUnique({ where, include: { appointment: { select: { externalId: true } } } });
    if (!row) return;
    const { count } = await prisma.joinToken.updateMany({
      where: { id: row.id, revokedAt: null, expiresAt: { gt: now } },
      data: { revokedAt: now, revocationReason: "operator" },
    });
    await recordAudit(prisma, {
      externalId: row.appointment.externalId,
      actor,
      at: now,
      type: "token.revoked",
      outcome: count > 0 ? "revoked" : "was_not_live",
      detail: { reason: "operator", tokenId: row.id, userId: row.userId },
    });
  }
}
