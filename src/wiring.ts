import type { FastifyBaseLogger } from "fastify";
import type { Config } from "./config.js";
import type { Database } from "./db/database.js";
import { DatabaseOutageLog } from "./db/outage-log.js";
import { AppointmentsRepository } from "./db/repositories/appointments.js";
import { AuditRepository } from "./db/repositories/audit.js";
import { EjectionsRepository } from "./db/repositories/ejections.js";
import { JoinTokensRepository } from "./db/repositories/join-tokens.js";
import { OutboxRepository } from "./db/repositories/outbox.js";
import { PresenceRepository } from "./db/repositories/presence.js";
import { SessionsRepository } from "./db/repositories/sessions.js";
import { SubscriptionDeliveriesRepository } from "./db/repositories/subscription-deliveries.js";
import { SubscriptionsRepository } from "./db/repositories/subscriptions.js";
import { TimedEventsRepository } from "./db/repositories/timed-events.js";
import { WebhookDeliveriesRepository } from "./db/repositories/webhook-deliveries.js";
import type { VideoProvider } from "./providers/video-provider.js";
import { AppointmentLifecycle } from "./services/appointment-lifecycle.js";
import { AppointmentReads } from "./services/appointments.js";
import { type EjectionObserver, EjectionService } from "./services/ejections.js";
import { type DispatcherObserver, EventDispatcher } from "./services/event-dispatcher.js";
import { JoinTokenService } from "./services/join-tokens.js";
import { OperatorActions } from "./services/operator-actions.js";
import { PresenceService } from "./services/presence.js";
import { SessionService } from "./services/sessions.js";
import { SubscriptionSecrets } from "./services/subscription-secrets.js";
import { type Resolve, SubscriptionService } from "./services/subscriptions.js";
import { TimedEventService } from "./services/timed-events.js";
import { TokenChecks } from "./services/token-checks.js";
import { WebhookDeliveryService } from "./services/webhook-deliveries.js";
import { createWebhookSender } from "./services/webhook-sender.js";

/**
 * API.md §8: a webhook is answered within 10 s, a join token within 15 s.
 * Provider calls get a budget inside those bounds; transactions never wait
 * on a provider (a stalled database is bounded by the pool's acquire and
 * query timeouts).
 */
const WEBHOOK_SESSION_BUDGET_MS = 7_000;
const JOIN_BUDGET_MS = 12_000;
/** A claim on a pending session outlives any single attempt (timeouts × retries fit in the budgets above). */
const SESSION_LEASE_MS = 20_000;
/** How long one background pass may spend on a provider. */
export const RECONCILE_BUDGET_MS = 10_000;
/**
 * API.md §9: timed events within 5 s of their instant. Deliveries are claimed
 * at once when an attempt frees a slot, and at least this often (so an event
 * reaches its subscribers about a second after its change at most). Each idle
 * pass costs one or two small statements (noticeable only on the embedded
 * database, ~1 % of a CPU).
 */
export const TIMED_EVENTS_INTERVAL_MS = 1_000;
export const DISPATCH_INTERVAL_MS = 1_000;
/** API.md §10: a participant is removed within 5 s of the revocation while the provider answers. */
export const EJECTION_INTERVAL_MS = 1_000;
/** One removal attempt's provider budget. */
const EJECTION_BUDGET_MS = 10_000;

/** The repositories on the database, and the services on them: who uses what is visible here. */
export function createServices({
  config,
  db,
  provider,
  now,
  log,
  observeDispatch,
  observeEjections,
  resolve,
}: {
  config: Config;
  db: Database;
  provider: VideoProvider;
  now: () => Date;
  log: FastifyBaseLogger;
  observeDispatch?: DispatcherObserver;
  observeEjections?: EjectionObserver;
  /** The resolver subscription URLs are checked with (the system's unless a test gives one). */
  resolve?: Resolve;
}) {
  const { sql, prisma } = db;
  if (!config.keyEncryptionSecret) throw new Error("KEY_ENCRYPTION_SECRET is required: it seals subscriptions' secrets");
  const appointments = new AppointmentsRepository({ sql, prisma });
  // Revocations enqueue removals from the room only where the provider can remove anyone (API.md §10).
  const ejects = provider.eject !== undefined;
  const tokens = new JoinTokensRepository({ sql, prisma, ejects });
  const ejections = new EjectionsRepository({ sql });
  const audit = new AuditRepository({ sql, prisma });
  const sessionRows = new SessionsRepository({ prisma, sql });
  const deliveries = new WebhookDeliveriesRepository({ prisma });
  const outbox = new OutboxRepository({ sql });
  const subscriptionDeliveries = new SubscriptionDeliveriesRepository({ sql });
  const secrets = new SubscriptionSecrets(config.keyEncryptionSecret);

  const sessions = new SessionService({
    sql,
    sessions: sessionRows,
    audit,
    outbox,
    provider,
    now,
    leaseMs: SESSION_LEASE_MS,
    onError: (error, externalId) => log.error({ err: error, externalId }, "session creation failed unexpectedly"),
    databaseOutage: new DatabaseOutageLog(log.child({ worker: "session reconciler" })),
  });
  const lifecycle = new AppointmentLifecycle({
    appointments,
    tokens,
    provider,
    policy: config,
    sessionLeaseMs: SESSION_LEASE_MS,
    sessionBudgetMs: WEBHOOK_SESSION_BUDGET_MS,
  });
  return {
    sessions,
    pendingSessions: () => sessionRows.countPending(),
    deliveries: new WebhookDeliveryService({
      sql,
      deliveries,
      appointments,
      lifecycle,
      sessions,
      sessionBudgetMs: WEBHOOK_SESSION_BUDGET_MS,
      now,
    }),
    reads: new AppointmentReads({ appointments, audit }),
    operatorActions: new OperatorActions({ sql, appointments, tokens, audit, outbox, now }),
    joinTokens: new JoinTokenService({ sql, appointments, tokens, provider, sessions, now, budgetMs: JOIN_BUDGET_MS }),
    tokenChecks: new TokenChecks({ tokens, audit, now }),
    subscriptions: new SubscriptionService({
      subscriptions: new SubscriptionsRepository({ prisma }),
      audit,
      secrets,
      allowPrivateTargets: config.subscriptionsAllowPrivateTargets,
      now,
      ...(resolve ? { resolve } : {}),
    }),
    timedEvents: new TimedEventService({
      sql,
      timers: new TimedEventsRepository({ sql }),
      policy: config,
      now,
      ejections: ejects ? ejections : undefined,
    }),
    presence: new PresenceService({
      sql,
      presence: new PresenceRepository({ sql }),
      audit,
      outbox,
      ejections: ejects ? ejections : undefined,
      provider,
      now,
    }),
    /** The removal worker, where the provider can remove anyone. */
    ejector: ejects
      ? new EjectionService({
          ejections,
          provider,
          now,
          attemptBudgetMs: EJECTION_BUDGET_MS,
          ...(observeEjections ? { observe: observeEjections } : {}),
        })
      : undefined,
    ejectorOutage: new DatabaseOutageLog(log.child({ worker: "ejections" })),
    pendingEjections: async () => (await ejections.pending()).pending,
    timedEventsOutage: new DatabaseOutageLog(log.child({ worker: "timed events" })),
    dispatcher: new EventDispatcher({
      outbox,
      deliveries: subscriptionDeliveries,
      secrets,
      sender: createWebhookSender({
        timeoutMs: config.subscriptionTimeoutMs,
        allowPrivateTargets: config.subscriptionsAllowPrivateTargets,
      }),
      retrySchedule: config.subscriptionRetrySchedule,
      timeoutMs: config.subscriptionTimeoutMs,
      now,
      ...(observeDispatch ? { observe: observeDispatch } : {}),
    }),
    dispatcherOutage: new DatabaseOutageLog(log.child({ worker: "event dispatcher" })),
    /** The oldest event not yet delivered everywhere it is due, and how many deliveries are pending. */
    async outboxBacklog() {
      const [undispatched, pending] = await Promise.all([outbox.oldestUndispatched(), subscriptionDeliveries.backlog()]);
      const oldest = [undispatched, pending.oldest].filter((d): d is Date => d !== null);
      return { oldest: oldest.length === 0 ? null : new Date(Math.min(...oldest.map((d) => d.getTime()))), pending: pending.pending };
    },
  };
}
