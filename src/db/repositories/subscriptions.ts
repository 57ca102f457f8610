import type { PrismaClient } from "../database.js";
import type { Subscription, SubscriptionAttempt } from "../../generated/prisma/client.js";

export type SubscriptionRow = Subscription;
export type AttemptRow = SubscriptionAttempt;

/** Subscriptions (API.md §9) and their attempt log; the delivery queue is subscription-deliveries.ts. */
export class SubscriptionsRepository {
  constructor(private readonly db: { prisma: PrismaClient }) {}

  async create(row: {
    id: string;
    url: string;
    events: string[];
    description: string | null;
    secretEncrypted: string;
    now: Date;
  }): Promise<SubscriptionRow> {
    const { now, ...fields } = row;
    return this.db.prisma.subscription.create({ data: { ...fields, createdAt: now, updatedAt: now } });
  }

  async list(): Promise<SubscriptionRow[]> {
    return this.db.prisma.subscription.findMany({ orderBy: [{ createdAt: "asc" }, { id: "asc" }] });
  }

  async byId({ id }: { id: string }): Promise<SubscriptionRow | null> {
    return this.db.prisma.subscription.findUnique({ where: { id } });
  }

  /** Its deliveries and attempts go with it (ON DELETE CASCADE). False when there was none. */
  async delete({ id }: { id: string }): Promise<boolean> {
    const { count } = await this.db.prisma.subscription.deleteMany({ where: { id } });
    return count === 1;
  }

  /** The current secret becomes the previous one, which keeps signing until `previousUntil`. */
  async rotateSecret({
    id,
    secretEncrypted,
    previousUntil,
    now,
  }: {
    id: string;
    secretEncrypted: string;
    previousUntil: Date;
    now: Date;
  }): Promise<SubscriptionRow | null> {
    const [row] = await this.db.prisma.$queryRaw<{ id: string }[]>`
      UPDATE subscriptions
      SET previous_secret_encrypted = secret_encrypted, previous_secret_expires_at = ${previousUntil},
          secret_encrypted = ${secretEncrypted}, updated_at = ${now}
      WHERE id = ${id}::uuid
      RETURNING id`;
    return row ? this.byId({ id: row.id }) : null;
  }

  /** Active again, with a clean health record; null when there is none. */
  async enable({ id, now }: { id: string; now: Date }): Promise<SubscriptionRow | null> {
    const { count } = await this.db.prisma.subscription.updateMany({
      where: { id },
      data: { status: "active", disabledAt: null, failingSince: null, updatedAt: now },
    });
    return count === 1 ? this.byId({ id }) : null;
  }

  /** Newest first: `limit` attempts before the cursor (an attempt id). */
  async attempts({
    subscriptionId,
    before,
    limit,
  }: {
    subscriptionId: string;
    before: bigint | undefined;
    limit: number;
  }): Promise<{ attempts: AttemptRow[]; nextCursor: string | null }> {
    const rows = await this.db.prisma.subscriptionAttempt.findMany({
      where: { subscriptionId, ...(before !== undefined ? { id: { lt: before } } : {}) },
      orderBy: { id: "desc" },
      take: limit + 1,
    });
    const page = rows.slice(0, limit);
    return { attempts: page, nextCursor: rows.length > limit ? (page.at(-1)?.id.toString() ?? null) : null };
  }
}
