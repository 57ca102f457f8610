import type { ClaimedEjection, EjectionSettlement, EjectionsRepository } from "../db/repositories/ejections.js";
import { type CallBudget, ProviderUnavailableError, type VideoProvider } from "../providers/video-provider.js";
import { type BackgroundLoopHandlers, runEvery } from "./background-loop.js";

/** What the worker reports, for metrics. */
export interface EjectionObserver {
  settled(outcome: "removed" | "not_present" | "rejoined" | "failed" | "retry"): void;
}

export interface EjectionServiceOptions {
  ejections: Pick<EjectionsRepository, "claimDue" | "finish">;
  provider: VideoProvider;
  now: () => Date;
  /** One attempt's provider budget (the lease outlives it). */
  attemptBudgetMs: number;
  observe?: EjectionObserver;
}

/** Removals attempted at once by one replica. */
const BATCH = 16;
const LEASE_MARGIN_MS = 5_000;
const FIRST_RETRY_MS = 1_000;
const MAX_RETRY_MS = 30_000;

/** 1 s, 2 s, 4 s … up to 30 s, ±20 % so replicas retrying after an outage spread out. */
function retryDelayMs(attempts: number): number {
  const base = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.max(0, attempts - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/**
 * Removes participants from the provider's room (API.md §10): the durable
 * jobs written with each revocation (but `replaced`) and at each window's
 * close are claimed by one replica at a time (FOR UPDATE SKIP LOCKED and a
 * lease), attempted, and retried with backoff until 10 minutes after they
 * were made; each outcome is recorded with its audit entry and, when someone
 * was removed, `participant.ejected`.
 */
export class EjectionService {
  constructor(private readonly options: EjectionServiceOptions) {}

  /** One batch; how many removals it settled or rescheduled. */
  async ejectDue(): Promise<number> {
    const { ejections, attemptBudgetMs } = this.options;
    const now = this.options.now();
    const until = new Date(now.getTime() + attemptBudgetMs + LEASE_MARGIN_MS);
    const claimed = await ejections.claimDue({ provider: this.options.provider.name, now, until, limit: BATCH });
    await Promise.all(claimed.map((job) => this.attempt(job)));
    return claimed.length;
  }

  /** Everything due now, batch after batch. */
  async ejectAllDue(): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await this.ejectDue();
      total += n;
      if (n < BATCH) return total;
    }
  }

  private async attempt(job: ClaimedEjection): Promise<void> {
    const settlement = await this.outcome(job);
    const now = this.options.now();
    await this.options.ejections.finish({ id: job.id, settlement, now });
    this.options.observe?.settled(settlement.status === "pending" ? "retry" : settlement.status === "failed" ? "failed" : settlement.outcome);
  }

  private async outcome(job: ClaimedEjection): Promise<EjectionSettlement> {
    const { provider } = this.options;
    // A removal by identity after the user was given a new token would throw out their new, legitimate entry.
    if (job.rejoined && job.connectionIds.length === 0) return { status: "done", outcome: "rejoined" };
    if (!provider.eject) return { status: "failed", outcome: `the ${provider.name} provider cannot eject` };
    const budget: CallBudget = { deadline: Date.now() + this.options.attemptBudgetMs, singleAttempt: true };
    try {
      const { removed } = await provider.eject(
        { sessionId: job.sessionId, userId: job.userId, role: job.role, connectionIds: job.connectionIds, byIdentity: !job.rejoined },
        budget,
      );
      return { status: "done", outcome: removed ? "removed" : "not_present" };
    } catch (error) {
      const reason = error instanceof ProviderUnavailableError ? error.message : `refused: ${error instanceof Error ? error.message : String(error)}`;
      const now = this.options.now().getTime();
      const askedToWaitMs = ((error instanceof ProviderUnavailableError ? error.retryAfterSeconds : undefined) ?? 0) * 1000;
      const wait = Math.max(retryDelayMs(job.attempts), askedToWaitMs);
      if (now + wait >= job.giveUpAt.getTime()) return { status: "failed", outcome: reason };
      return { status: "pending", outcome: reason, nextAttemptAt: new Date(now + wait) };
    }
  }

  start(intervalMs: number, handlers: BackgroundLoopHandlers): () => Promise<void> {
    return runEvery(intervalMs, () => this.ejectAllDue(), handlers);
  }
}
