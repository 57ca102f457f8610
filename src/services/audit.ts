import type { PrismaClient } from "../db/database.js";
import type { Prisma } from "../generated/prisma/client.js";

/** Anything that can run Prisma queries: the client or an interactive transaction. */
export type Db = PrismaClient | Prisma.TransactionClient;

export type AuditType =
  | "webhook.applied"
  | "webhook.ignored"
  | "session.created"
  | "session.failed"
  | "token.issued"
  | "token.revoked"
  | "token.introspected"
  | "appointment.blocked"
  | "appointment.unblocked";

export interface AuditEntry {
  /** The appointment's externalId; "" for an introspection of an unknown token. */
  externalId: string;
  type: AuditType;
  /** Who did it: "scheduler", "user:<sub>", "operator:<sub>", "gateway:<sub>", "system". */
  actor: string;
  outcome: string;
  /** Never a token or a secret: ids, reasons, counts. */
  detail?: Record<string, unknown>;
  at?: Date;
}

export async function recordAudit(db: Db, entries: AuditEntry | AuditEntry[]): Promise<void> {
  const list = Array.isArray(entries) ? entries : [entries];
  if (list.length === 0) return;
  await db.auditEvent.createMany({
    data: list.map((e) => ({
      externalId: e.externalId,
      type: e.type,
      actor: e.actor,
      outcome: e.outcome,
      detail: (e.detail ?? {}) as Prisma.InputJsonValue,
      ...(e.at ? { at: e.at } : {}),
    })),
  });
}

export interface AuditPage {
  events: { id: string; at: string; type: string; actor: string; outcome: string; detail: Record<string, unknown> }[];
  nextCursor: string | null;
}

export async function readAudit(db: Db, externalId: string, after: bigint | undefined, limit: number): Promise<AuditPage> {
  const rows = await db.auditEvent.findMany({
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
