import type { AuditEntry } from "../../domain/audit-entry.js";
import type { AuditPage } from "../../schemas/appointments.js";
import type { PrismaClient } from "../database.js";
import { type Queryable, type Statement, statement } from "../sql.js";

/** Any number of audit entries from the six column arrays of auditColumns ($1..$6); also a CTE of the webhook's last writes. */
export const AUDIT_FROM_COLUMNS = `INSERT INTO audit_events (external_id, at, type, actor, outcome, detail)
   SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::jsonb[])`;

const INSERT_AUDIT = statement("jw_insert_audit", AUDIT_FROM_COLUMNS);

const INSERT_ONE_AUDIT = statement(
  "jw_insert_one_audit",
  `INSERT INTO audit_events (external_id, at, type, actor, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6::jsonb)`,
);

/** Audit entries as the six column arrays that INSERT … SELECT FROM unnest(…) takes (instants as ISO text, see outboxColumns). */
export const auditColumns = (entries: readonly AuditEntry[], now: Date): unknown[] => [
  entries.map((e) => e.externalId),
  entries.map((e) => (e.at ?? now).toISOString()),
  entries.map((e) => e.type),
  entries.map((e) => e.actor),
  entries.map((e) => e.outcome),
  entries.map((e) => JSON.stringify(e.detail ?? {})),
];

/** One statement for any number of entries (a plain VALUES for one: introspection writes one per call). */
function auditInsert(entries: readonly AuditEntry[], now: Date): [Statement, unknown[]] {
  const [only] = entries;
  if (entries.length === 1 && only) {
    return [INSERT_ONE_AUDIT, [only.externalId, only.at ?? now, only.type, only.actor, only.outcome, JSON.stringify(only.detail ?? {})]];
  }
  return [INSERT_AUDIT, auditColumns(entries, now)];
}

/**
 * The audit trail (API.md §6). Every entry is written here, or by a
 * repository statement that writes it together with the change it reports
 * (from auditColumns), so that the trail and the change commit together.
 */
export class AuditRepository {
  constructor(private readonly db: { sql: Queryable; prisma: PrismaClient }) {}

  /** In `tx` when given (then it commits with the change), else on its own. */
  async record({ tx, entries, now }: { tx?: Queryable; entries: readonly AuditEntry[]; now: Date }): Promise<void> {
    if (entries.length === 0) return;
    await (tx ?? this.db.sql).query(...auditInsert(entries, now));
  }

  /** Oldest first, `limit` entries after the cursor. */
  async page({ externalId, after, limit }: { externalId: string; after: bigint | undefined; limit: number }): Promise<AuditPage> {
    const rows = await this.db.prisma.auditEvent.findMany({
      where: { externalId, ...(after !== undefined ? { id: { gt: after } } : {}) },
      orderBy: { id: "asc" },
      take: limit + 1,
    });
    const page = rows.slice(0, limit);
    return {
      events: page.map((row) => ({
        id: row.id.toString(),
        at: row.at.toISOString(),
        type: row.type,
        actor: row.actor,
        outcome: row.outcome,
        detail: row.detail as Record<string, unknown>,
      })),
      nextCursor: rows.length > limit ? (page.at(-1)?.id.toString() ?? null) : null,
    };
  }
}
