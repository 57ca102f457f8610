import type { PrismaClient } from "../db/database.js";
import { isDatabaseUnavailable } from "../db/errors.js";
import type { Appointment } from "../generated/prisma/client.js";
import { type CallBudget, ProviderUnavailableError, type VideoProvider } from "../providers/video-provider.js";
import { recordAudit } from "./audit.js";

export interface SessionServiceOptions {
  prisma: PrismaClient;
  provider: VideoProvider;
  now: () => Date;
  /** How long a claim on a pending session lasts: longer than any one creation attempt. */
  leaseMs: number;
  onError?: (error: unknown, externalId: string) => void;
  /** The reconciler's passes failing because the database is unreachable, and succeeding again. */
  databaseOutage?: { failed(error: unknown): void; succeeded(): void };
}

export type SessionOutcome = "ready" | "pending" | "failed";

const BASE_BACKOFF_MS = 5_000;
const MAX_BACKOFF_MS = 5 * 60_000;

/** Exponential backoff with ±20 % jitter, so replicas retrying after an outage spread out. */
export function retryDelayMs(attempts: number): number {
  const base = Math.min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** Math.max(0, attempts - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/**
 * Creates provider sessions for appointments stored while the provider was
 * unreachable (API.md §1, §8). A database lease decides who may call the
 * provider for an appointment at any moment, so a webhook, a join request
 * and the reconcilers of several replicas never create two sessions for one
 * appointment; the provider call itself runs outside any transaction.
 */
export class SessionService {
  constructor(private readonly options: SessionServiceOptions) {}

  /** Takes the lease on a pending session; false when it is not pending or someone else holds it. */
  async claim(appointmentId: string): Promise<boolean> {
    const now = this.options.now();
    const until = new Date(now.getTime() + this.options.leaseMs);
    const { count } = await this.options.prisma.appointment.updateMany({
      where: {
        id: appointmentId,
        status: "scheduled",
        sessionStatus: "pending",
        OR: [{ sessionClaimedUntil: null }, { sessionClaimedUntil: { lte: now } }],
      },
      data: { sessionClaimedUntil: until },
    });
    return count === 1;
  }

  /** One creation attempt by the lease holder; records the outcome and releases the lease. */
  async attempt(appointment: Appointment, budget: CallBudget): Promise<SessionOutcome> {
    const { prisma, provider } = this.options;
    try {
      const { sessionId } = await provider.createSession(
        {
          externalId: appointment.externalId,
          settings: {
            maxParticipants: appointment.maxParticipants,
            waitingRoom: appointment.waitingRoom,
            recording: appointment.recording,
          },
        },
        budget,
      );
      const now = this.options.now();
      const { count } = await prisma.appointment.updateMany({
        where: { id: appointment.id, sessionStatus: "pending" },
        data: {
          sessionId,
          sessionStatus: "ready",
          sessionClaimedUntil: null,
          sessionNextAttemptAt: null,
          sessionLastError: null,
          sessionAttempts: { increment: 1 },
        },
      });
      if (count === 1) {
        await recordAudit(prisma, {
          externalId: appointment.externalId,
          actor: "system",
          at: now,
          type: "session.created",
          outcome: "ready",
          detail: { provider: provider.name, sessionId, attempt: appointment.sessionAttempts + 1 },
        });
      }
      return "ready";
    } catch (error) {
      // Nothing can be recorded without the database; the lease runs out and the attempt is made again.
      if (isDatabaseUnavailable(error)) throw error;
      if (!(error instanceof ProviderUnavailableError)) this.options.onError?.(error, appointment.externalId);
      return this.recordFailure(appointment, error instanceof Error ? error.message : String(error));
    }
  }

  private async recordFailure(appointment: Appointment, reason: string): Promise<SessionOutcome> {
    const { prisma, provider } = this.options;
    const now = this.options.now();
    const attempts = appointment.sessionAttempts + 1;
    const failed = now.getTime() >= appointment.closesAt.getTime();
    await prisma.appointment.updateMany({
      where: { id: appointment.id, sessionStatus: "pending" },
      data: {
        sessionStatus: failed ? "failed" : "pending",
        sessionAttempts: attempts,
        sessionClaimedUntil: null,
        sessionNextAttemptAt: failed ? null : new Date(now.getTime() + retryDelayMs(attempts)),
        sessionLastError: reason.slice(0, 500),
      },
    });
    await recordAudit(prisma, {
      externalId: appointment.externalId,
      actor: "system",
      at: now,
      type: "session.failed",
      outcome: failed ? "failed" : "pending",
      detail: { provider: provider.name, reason: reason.slice(0, 500), attempt: attempts },
    });
    return failed ? "failed" : "pending";
  }

  /**
   * For a join request that found the session pending (API.md §1: "again on
   * the first join-token request"): one more attempt inline if nobody else is
   * making one. Returns the appointment once its session is ready; otherwise
   * throws ProviderUnavailableError with how long to wait.
   */
  async ensureReady(appointmentId: string, budget: CallBudget): Promise<void> {
    const { prisma } = this.options;
    if (await this.claim(appointmentId)) {
      const row = await prisma.appointment.findUniqueOrThrow({ where: { id: appointmentId } });
      if ((await this.attempt(row, budget)) === "ready") return;
    }
    const row = await prisma.appointment.findUniqueOrThrow({ where: { id: appointmentId } });
    if (row.sessionStatus === "ready") return;
    const wait = row.sessionNextAttemptAt
      ? Math.ceil((row.sessionNextAttemptAt.getTime() - this.options.now().getTime()) / 1000)
      : 2;
    throw new ProviderUnavailableError("The video session could not be created yet.", Math.min(60, Math.max(1, wait)));
  }

  /**
   * One pass of the background reconciler: marks sessions whose join window
   * has closed as failed, then claims due pending sessions with
   * FOR UPDATE SKIP LOCKED (replicas take disjoint rows) and attempts each.
   */
  async reconcileOnce(budgetMs: number, batch = 10): Promise<number> {
    const { prisma } = this.options;
    const now = this.options.now();
    const expired = await prisma.$queryRaw<{ external_id: string }[]>`
      UPDATE appointments SET session_status = 'failed', session_claimed_until = NULL, session_next_attempt_at = NULL
      WHERE session_status = 'pending' AND closes_at <= ${now}
        AND (session_claimed_until IS NULL OR session_claimed_until <= ${now})
      RETURNING external_id`;
    for (const { external_id } of expired) {
      await recordAudit(prisma, {
        externalId: external_id,
        actor: "system",
        at: now,
        type: "session.failed",
        outcome: "failed",
        detail: { provider: this.options.provider.name, reason: "the join window closed before a session could be created" },
      });
    }

    const lease = new Date(now.getTime() + this.options.leaseMs);
    const claimed = await prisma.$queryRaw<{ id: string }[]>`
      UPDATE appointments SET session_claimed_until = ${lease}
      WHERE id IN (
        SELECT id FROM appointments
        WHERE session_status = 'pending' AND status = 'scheduled'
          AND (session_next_attempt_at IS NULL OR session_next_attempt_at <= ${now})
          AND (session_claimed_until IS NULL OR session_claimed_until <= ${now})
        ORDER BY session_next_attempt_at NULLS FIRST
        LIMIT ${batch}
        FOR UPDATE SKIP LOCKED)
      RETURNING id`;
    for (const { id } of claimed) {
      const row = await prisma.appointment.findUnique({ where: { id } });
      if (row) await this.attempt(row, { deadline: Date.now() + budgetMs });
    }
    return claimed.length;
  }

  /** Runs the reconciler every `intervalMs` until the returned stop function is called (it waits for a pass in progress). */
  start(intervalMs: number, budgetMs: number): () => Promise<void> {
    let running: Promise<unknown> | undefined;
    const timer = setInterval(() => {
      if (running) return;
      running = this.reconcileOnce(budgetMs)
        .then(
          () => this.options.databaseOutage?.succeeded(),
          (error: unknown) =>
            isDatabaseUnavailable(error) ? this.options.databaseOutage?.failed(error) : this.options.onError?.(error, "(reconciler)"),
        )
        .finally(() => {
          running = undefined;
        });
    }, intervalMs);
    timer.unref();
    return async () => {
      clearInterval(timer);
      await running;
    };
  }
}
