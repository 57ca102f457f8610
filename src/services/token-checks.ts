import type { AuditRepository } from "../db/repositories/audit.js";
import type { JoinTokensRepository } from "../db/repositories/join-tokens.js";
import { hashToken } from "../domain/token-hash.js";
import type { IntrospectionResult } from "../schemas/appointments.js";

const seconds = (date: Date) => Math.floor(date.getTime() / 1000);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Introspection (API.md §4) and operator revocation (§5) of single tokens. */
export class TokenChecks {
  constructor(
    private readonly options: {
      tokens: Pick<JoinTokensRepository, "byHash" | "find" | "revokeByOperator">;
      audit: Pick<AuditRepository, "record">;
      now: () => Date;
    },
  ) {}

  /**
   * Fails closed: only the exact token whose hash is stored can be active, so
   * a token altered in any byte, or one this service never issued, is unknown.
   * Every call is audited, against the token's appointment when there is one.
   */
  async introspect(token: string, actor: string): Promise<IntrospectionResult> {
    const row = await this.options.tokens.byHash({ tokenHash: hashToken(token) });
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
    await this.options.audit.record({
      now,
      entries: [
        {
          externalId: row?.externalId ?? "",
          actor,
          type: "token.introspected",
          outcome: result.reason ?? "active",
          detail: row ? { tokenId: row.id, userId: row.userId } : {},
        },
      ],
    });
    return result;
  }

  /**
   * RFC 7009: the answer is the same whether or not the token was live or
   * known. A known token's revocation (or that it was not live) is audited,
   * and a live one's emits `token.revoked`, with the revocation.
   */
  async revoke(by: { token?: string; tokenId?: string }, actor: string): Promise<void> {
    const { tokens } = this.options;
    const key = by.token !== undefined ? { tokenHash: hashToken(by.token) } : by.tokenId && UUID.test(by.tokenId) ? { id: by.tokenId } : null;
    if (!key) return;
    const row = await tokens.find(key);
    if (!row) return;
    await tokens.revokeByOperator({ id: row.id, actor, now: this.options.now() });
  }
}
