import { Webhook } from "standardwebhooks";
import { isDatabaseUnavailable } from "../db/errors.js";
import type { OutboxRepository } from "../db/repositories/outbox.js";
import type { ClaimedDelivery, SubscriptionDeliveriesRepository } from "../db/repositories/subscription-deliveries.js";
import { deliveryBody, webhookIdOf } from "../domain/outbound-events.js";
import { type BackgroundLoopHandlers, runEvery } from "./background-loop.js";
import type { SubscriptionSecrets } from "./subscription-secrets.js";
import type { AttemptResult, WebhookSender } from "./webhook-sender.js";

/** What the dispatcher reports, for metrics. */
export interface DispatcherObserver {
  /** Events taken from the outbox (each exactly once, across replicas). */
  emitted(type: string, count: number): void;
  attempt(outcome: "delivered" | "http_error" | "timeout" | "network", durationMs: number): void;
  /** A delivery settled for good: delivered (latency from the event's writing), or failed after its last attempt. */
  settled(result: "delivered" | "failed", latencyMs: number): void;
}

export interface EventDispatcherOptions {
  outbox: Pick<OutboxRepository, "fanOut">;
  deliveries: Pick<SubscriptionDeliveriesRepository, "claimDue" | "finishAttempt" | "disable">;
  secrets: Pick<SubscriptionSecrets, "open">;
  sender: WebhookSender;
  /** SUBSCRIPTION_RETRY_SCHEDULE: seconds before each retry; its length is the number of retries. */
  retrySchedule: readonly number[];
  /** SUBSCRIPTION_TIMEOUT_MS: a lease outlives an attempt by this plus a margin. */
  timeoutMs: number;
  now: () => Date;
  observe?: DispatcherObserver;
}

/** API.md §9: a subscription all of whose deliveries have failed for this long is disabled. */
export const DISABLE_AFTER_MS = 5 * 24 * 3600_000;
const FAN_OUT_BATCH = 500;
/** Attempts in flight on one replica, in all and per subscription: a dead receiver holds 8 connections at most. */
const MAX_IN_FLIGHT = 64;
const MAX_IN_FLIGHT_PER_SUBSCRIPTION = 8;
/** Time after an attempt's deadline to record its outcome, before its lease runs out. */
const LEASE_MARGIN_MS = 2_000;

/**
 * Delivers the outbox to subscribers (API.md §9), on every replica: a pass
 * moves new events into one delivery per matching subscription, then claims
 * due deliveries (FOR UPDATE SKIP LOCKED, with a lease) up to this replica's
 * free slots and posts each, signed as Standard Webhooks prescribes with the
 * `standardwebhooks` library. A finished attempt frees its slot and claims
 * the next at once, so a busy subscription is limited by its receiver, not by
 * the pass interval; a slow or dead one holds only its own slots. Each
 * outcome is recorded with the attempt: delivered, due again on the retry
 * schedule, or failed after the last retry.
 */
export class EventDispatcher {
  /** Attempts in flight per subscription. */
  readonly #inFlight = new Map<string, number>();
  readonly #sends = new Set<Promise<void>>();
  #claiming: Promise<void> | undefined;
  #claimAgain = false;
  #stopped = false;
  #handlers: BackgroundLoopHandlers = {};

  constructor(private readonly options: EventDispatcherOptions) {}

  /** One pass: every new event fanned out, then due deliveries claimed and started. */
  async dispatchOnce(): Promise<void> {
    for (;;) {
      const taken = await this.options.outbox.fanOut({ limit: FAN_OUT_BATCH, now: this.options.now() });
      let count = 0;
      for (const { type, count: n } of taken) {
        this.options.observe?.emitted(type, n);
        count += n;
      }
      if (count < FAN_OUT_BATCH) break;
    }
    await this.claimAndSend();
  }

  /** Resolves when every attempt in flight has been made and recorded. */
  async settle(): Promise<void> {
    while (this.#sends.size > 0 || this.#claiming) {
      await Promise.allSettled([...this.#sends, this.#claiming]);
    }
  }

  start(intervalMs: number, handlers: BackgroundLoopHandlers): () => Promise<void> {
    this.#handlers = handlers;
    const stop = runEvery(intervalMs, () => this.dispatchOnce(), handlers);
    return async () => {
      this.#stopped = true;
      await stop();
      await this.settle();
      this.options.sender.close();
    };
  }

  /** Claims up to the free slots and starts an attempt for each; one claim at a time, another right after if asked meanwhile. */
  private claimAndSend(): Promise<void> {
    if (this.#claiming) {
      this.#claimAgain = true;
      return this.#claiming;
    }
    this.#claiming = this.claim().finally(() => {
      this.#claiming = undefined;
      if (this.#claimAgain && !this.#stopped) {
        this.#claimAgain = false;
        this.claimAndSend().catch((error: unknown) => this.report(error));
      }
    });
    return this.#claiming;
  }

  private async claim(): Promise<void> {
    const free = MAX_IN_FLIGHT - this.#sends.size;
    if (free <= 0 || this.#stopped) return;
    const freeSlots = new Map([...this.#inFlight].map(([id, n]) => [id, Math.max(0, MAX_IN_FLIGHT_PER_SUBSCRIPTION - n)]));
    // A lease measures how long this replica may take over an attempt: wall-clock time, whatever clock the rules read.
    const leaseNow = new Date();
    const lease = new Date(leaseNow.getTime() + this.options.timeoutMs + LEASE_MARGIN_MS);
    const claimed = await this.options.deliveries.claimDue({
      now: this.options.now(),
      leaseNow,
      until: lease,
      freeSlots,
      slotsPerSubscription: MAX_IN_FLIGHT_PER_SUBSCRIPTION,
      limit: free,
    });
    for (const delivery of claimed) this.track(delivery, lease);
  }

  private track(delivery: ClaimedDelivery, lease: Date) {
    const { subscriptionId } = delivery;
    this.#inFlight.set(subscriptionId, (this.#inFlight.get(subscriptionId) ?? 0) + 1);
    const send: Promise<void> = this.attempt(delivery, lease)
      .catch((error: unknown) => this.report(error))
      .finally(() => {
        const left = (this.#inFlight.get(subscriptionId) ?? 1) - 1;
        if (left > 0) this.#inFlight.set(subscriptionId, left);
        else this.#inFlight.delete(subscriptionId);
        this.#sends.delete(send);
        if (!this.#stopped) this.claimAndSend().catch((error: unknown) => this.report(error));
      });
    this.#sends.add(send);
  }

  /** One attempt: signed, posted, recorded (with the subscription disabled if it has failed for too long). */
  private async attempt(delivery: ClaimedDelivery, lease: Date): Promise<void> {
    const { deliveries, retrySchedule, observe } = this.options;
    const startedAt = this.options.now();
    const result = await this.post(delivery);
    const now = this.options.now();
    const ok = typeof result.outcome === "number" && result.outcome >= 200 && result.outcome < 300;
    const attempt = delivery.attempts + 1;
    const retryInSeconds = retrySchedule[attempt - 1];
    const status = ok ? "delivered" : retryInSeconds === undefined ? "failed" : "pending";
    await deliveries.finishAttempt({
      deliveryId: delivery.id,
      subscriptionId: delivery.subscriptionId,
      lease,
      status,
      attempt,
      nextAttemptAt: status === "pending" ? new Date(now.getTime() + (retryInSeconds ?? 0) * 1000) : null,
      outcome: String(result.outcome),
      durationMs: result.durationMs,
      error: result.error,
      startedAt,
      now,
    });
    observe?.attempt(ok ? "delivered" : typeof result.outcome === "number" ? "http_error" : result.outcome, result.durationMs);
    if (status !== "pending") observe?.settled(status, now.getTime() - delivery.eventCreatedAt.getTime());
    if (!ok && delivery.failingSince && now.getTime() - delivery.failingSince.getTime() >= DISABLE_AFTER_MS) {
      await deliveries.disable({ id: delivery.subscriptionId, reason: "every delivery failed for 5 days", now });
    }
  }

  private async post(delivery: ClaimedDelivery): Promise<AttemptResult> {
    let secrets: string[];
    try {
      secrets = this.secretsOf(delivery);
    } catch (error) {
      return { outcome: "network", durationMs: 0, error: `the subscription's secret cannot be opened: ${(error as Error).message}` };
    }
    const id = webhookIdOf(delivery.eventId);
    const body = deliveryBody({ ...delivery, sequence: Number(delivery.sequence), createdAt: delivery.eventCreatedAt });
    // The receiver checks this against its own clock (±5 minutes), so it is the wall clock, whatever clock the rules read.
    const timestamp = new Date();
    const signature = secrets.map((secret) => new Webhook(secret).sign(id, timestamp, body)).join(" ");
    return this.options.sender.send({
      url: delivery.url,
      headers: {
        "webhook-id": id,
        "webhook-timestamp": String(Math.floor(timestamp.getTime() / 1000)),
        "webhook-signature": signature,
      },
      body,
    });
  }

  /** The current secret and, during the 24 h after a rotation, the previous one: receivers accept either signature. */
  private secretsOf(delivery: ClaimedDelivery): string[] {
    const { secrets } = this.options;
    const current = secrets.open(delivery.subscriptionId, delivery.secretEncrypted);
    const previousValid =
      delivery.previousSecretEncrypted !== null &&
      delivery.previousSecretExpiresAt !== null &&
      delivery.previousSecretExpiresAt.getTime() > this.options.now().getTime();
    return previousValid ? [current, secrets.open(delivery.subscriptionId, delivery.previousSecretEncrypted as string)] : [current];
  }

  private report(error: unknown) {
    const { databaseOutage, onError } = this.#handlers;
    if (databaseOutage && isDatabaseUnavailable(error)) databaseOutage.failed(error);
    else onError?.(error);
  }
}
