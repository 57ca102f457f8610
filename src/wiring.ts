import type { FastifyBaseLogger } from "fastify";
import type { Config } from "./config.js";
import type { Database } from "./db/database.js";
import { DatabaseOutageLog } from "./db/outage-log.js";
import { AppointmentsRepository } from "./db/repositories/appointments.js";
import { AuditRepository } from "./db/repositories/audit.js";
import { JoinTokensRepository } from "./db/repositories/join-tokens.js";
import { SessionsRepository } from "./db/repositories/sessions.js";
import { WebhookDeliveriesRepository } from "./db/repositories/webhook-deliveries.js";
import type { VideoProvider } from "./providers/video-provider.js";
import { AppointmentLifecycle } from "./services/appointment-lifecycle.js";
import { AppointmentReads } from "./services/appointments.js";
import { JoinTokenService } from "./services/join-tokens.js";
import { OperatorActions } from "./services/operator-actions.js";
import { SessionService } from "./services/sessions.js";
import { TokenChecks } from "./services/token-checks.js";
import { WebhookDeliveryService } from "./services/webhook-deliveries.js";

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

/** The repositories on the database, and the services on them: who uses what is visible here. */
export function createServices({
  config,
  db,
  provider,
  now,
  log,
}: {
  config: Config;
  db: Database;
  provider: VideoProvider;
  now: () => Date;
  log: FastifyBaseLogger;
}) {
  const { sql, prisma } = db;
  const appointments = new AppointmentsRepository({ sql, prisma });
  const tokens = new JoinTokensRepository({ sql, prisma });
  const audit = new AuditRepository({ sql, prisma });
  const sessionRows = new SessionsRepository({ prisma });
  const deliveries = new WebhookDeliveriesRepository({ prisma });

  const sessions = new SessionService({
    sessions: sessionRows,
    audit,
    provider,
    now,
    leaseMs: SESSION_LEASE_MS,
    onError: (error, externalId) => log.error({ err: error, externalId }, "session creation failed unexpectedly"),
    databaseOutage: new DatabaseOutageLog(log),
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
    operatorActions: new OperatorActions({ sql, appointments, tokens, audit, now }),
    joinTokens: new JoinTokenService({ sql, appointments, tokens, provider, sessions, now, budgetMs: JOIN_BUDGET_MS }),
    tokenChecks: new TokenChecks({ tokens, audit, now }),
  };
}
