import { randomUUID } from "node:crypto";
import { lookup } from "node:dns/promises";
import type { AuditRepository } from "../db/repositories/audit.js";
import type { AttemptRow, SubscriptionRow, SubscriptionsRepository } from "../db/repositories/subscriptions.js";
import type { AuditEntry } from "../domain/audit-entry.js";
import { checkTargetUrl, firstForbidden } from "../domain/delivery-targets.js";
import { AppError, notFound } from "../domain/errors.js";
import { EVENT_TYPES, webhookIdOf } from "../domain/outbound-events.js";
import type {
  DeliveryAttempt,
  DeliveryLog,
  SubscriptionRequest,
  SubscriptionView,
  SubscriptionWithSecret,
} from "../schemas/subscriptions.js";
import { withinTime } from "../support/within-time.js";
import type { SubscriptionSecrets } from "./subscription-secrets.js";

/** Resolves a host name to all its addresses (the system resolver unless a test gives another). */
export type Resolve = (hostname: string) => Promise<string[]>;

export interface SubscriptionServiceOptions {
  subscriptions: SubscriptionsRepository;
  audit: Pick<AuditRepository, "record">;
  secrets: Pick<SubscriptionSecrets, "generate" | "seal">;
  allowPrivateTargets: boolean;
  now: () => Date;
  resolve?: Resolve;
}

/** After a rotation, deliveries are signed with the previous secret too, this long (API.md §9). */
export const PREVIOUS_SECRET_MS = 24 * 3600_000;
const RESOLVE_TIMEOUT_MS = 3_000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const systemResolve: Resolve = async (hostname) => (await lookup(hostname, { all: true })).map((a) => a.address);

const iso = (date: Date | null) => (date === null ? null : date.toISOString());

export function subscriptionView(row: SubscriptionRow): SubscriptionView {
  return {
    id: row.id,
    url: row.url,
    events: row.events.length === 0 ? [...EVENT_TYPES] : row.events,
    description: row.description,
    status: row.status,
    createdAt: row.createdAt.toISOString(),
    failingSince: iso(row.failingSince),
    disabledAt: iso(row.disabledAt),
  };
}

function attemptView(row: AttemptRow): DeliveryAttempt {
  return {
    id: row.id.toString(),
    eventId: webhookIdOf(row.eventId),
    type: row.type,
    attempt: row.attempt,
    at: row.at.toISOString(),
    status: /^\d+$/.test(row.outcome) ? Number(row.outcome) : (row.outcome as "timeout" | "network"),
    durationMs: row.durationMs,
    nextAttemptAt: iso(row.nextAttemptAt),
    error: row.error,
  };
}

const invalidUrl = (detail: string) => new AppError("invalid_subscription_url", detail);

/**
 * The subscriptions API (API.md §9): who receives lifecycle events, with
 * which secret. Secrets are generated here, shown once and stored sealed.
 * Every change is audited (the trail's entries for subscriptions have no
 * appointment: externalId "").
 */
export class SubscriptionService {
  constructor(private readonly options: SubscriptionServiceOptions) {}

  async create(request: SubscriptionRequest, actor: string): Promise<SubscriptionWithSecret> {
    const { subscriptions, secrets } = this.options;
    const url = await this.checkUrl(request.url);
    const id = randomUUID();
    const secret = secrets.generate();
    const now = this.options.now();
    const row = await subscriptions.create({
      id,
      url: request.url,
      events: request.events ?? [],
      description: request.description ?? null,
      secretEncrypted: secrets.seal(id, secret),
      now,
    });
    // The host only: a URL's query may carry a receiver's own credential.
    await this.audit(actor, "subscription.created", id, now, { host: url.host });
    return { ...subscriptionView(row), secret };
  }

  async list(): Promise<SubscriptionView[]> {
    return (await this.options.subscriptions.list()).map(subscriptionView);
  }

  async read(id: string): Promise<SubscriptionView> {
    return subscriptionView(await this.existing(id));
  }

  /** Its pending deliveries stop with it. */
  async delete(id: string, actor: string): Promise<void> {
    if (!UUID.test(id) || !(await this.options.subscriptions.delete({ id }))) throw notFound("No such subscription.");
    await this.audit(actor, "subscription.deleted", id, this.options.now());
  }

  async rotateSecret(id: string, actor: string): Promise<SubscriptionWithSecret> {
    const { subscriptions, secrets } = this.options;
    await this.existing(id);
    const secret = secrets.generate();
    const now = this.options.now();
    const previousUntil = new Date(now.getTime() + PREVIOUS_SECRET_MS);
    const row = await subscriptions.rotateSecret({ id, secretEncrypted: secrets.seal(id, secret), previousUntil, now });
    if (!row) throw notFound("No such subscription.");
    await this.audit(actor, "subscription.secret_rotated", id, now, { previousSecretUntil: previousUntil.toISOString() });
    return { ...subscriptionView(row), secret };
  }

  async enable(id: string, actor: string): Promise<SubscriptionView> {
    const now = this.options.now();
    const row = UUID.test(id) ? await this.options.subscriptions.enable({ id, now }) : null;
    if (!row) throw notFound("No such subscription.");
    await this.audit(actor, "subscription.enabled", id, now);
    return subscriptionView(row);
  }

  async deliveries(id: string, after: bigint | undefined, limit: number): Promise<DeliveryLog> {
    await this.existing(id);
    const page = await this.options.subscriptions.attempts({ subscriptionId: id, before: after, limit });
    return { deliveries: page.attempts.map(attemptView), nextCursor: page.nextCursor };
  }

  private async existing(id: string): Promise<SubscriptionRow> {
    const row = UUID.test(id) ? await this.options.subscriptions.byId({ id }) : null;
    if (!row) throw notFound("No such subscription.");
    return row;
  }

  /**
   * API.md §9 at creation: the URL's own rules, then (unless private targets
   * are allowed) every address its host resolves to must be public. Each
   * delivery checks again at connection time (webhook-sender.ts).
   */
  private async checkUrl(raw: string): Promise<URL> {
    const { allowPrivateTargets } = this.options;
    const target = checkTargetUrl(raw, allowPrivateTargets);
    if (!target.ok) throw invalidUrl(target.problem);
    if (allowPrivateTargets || target.literal) return target.url;
    const addresses = await this.resolve(target.host);
    if (addresses.length === 0) throw invalidUrl(`The host ${target.host} does not resolve.`);
    const forbidden = firstForbidden(addresses);
    if (forbidden) throw invalidUrl(`The host ${target.host} resolves to ${forbidden.address}, which is not a public address (${forbidden.range}).`);
    return target.url;
  }

  /** Its addresses; none when it does not resolve (within a few seconds). */
  private async resolve(host: string): Promise<string[]> {
    const resolve = this.options.resolve ?? systemResolve;
    return withinTime(
      resolve(host).catch(() => []),
      RESOLVE_TIMEOUT_MS,
      () => [],
    );
  }

  private async audit(actor: string, type: AuditEntry["type"], subscriptionId: string, now: Date, extra: Record<string, unknown> = {}) {
    await this.options.audit.record({ now, entries: [{ externalId: "", actor, type, outcome: "ok", detail: { subscriptionId, ...extra } }] });
  }
}
