import { readFileSync } from "node:fs";
import type { Server } from "node:http";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import Fastify, { type FastifyBaseLogger, type FastifyHttpOptions } from "fastify";
import type { Config } from "./config.js";
import type { Database } from "./db/database.js";
import authentication from "./http/plugins/authentication.js";
import edges, { answerClientError } from "./http/plugins/edges.js";
import metrics from "./http/plugins/metrics.js";
import openapi from "./http/plugins/openapi.js";
import problemDetails, { sendProblem, toAppError } from "./http/plugins/problem-details.js";
import security, { perUserJoinLimit } from "./http/plugins/security.js";
import appointmentRoutes from "./http/routes/appointments.js";
import joinPageRoutes from "./http/routes/join-page.js";
import presenceRoutes from "./http/routes/presence.js";
import operationsRoutes from "./http/routes/operations.js";
import subscriptionRoutes from "./http/routes/subscriptions.js";
import tokenRoutes from "./http/routes/tokens.js";
import webhookRoutes from "./http/routes/webhooks.js";
import wellKnownRoutes from "./http/routes/well-known.js";
import { createLogger, OneLinePerRequest, requestIdFor } from "./logging.js";
import { createVideoProvider } from "./providers/index.js";
import type { Resolve } from "./services/subscriptions.js";
import { createServices, DISPATCH_INTERVAL_MS, EJECTION_INTERVAL_MS, RECONCILE_BUDGET_MS, TIMED_EVENTS_INTERVAL_MS } from "./wiring.js";
import { standardWebhooks } from "./webhook-sources/standard-webhooks.js";

export interface AppOptions {
  config: Config;
  db: Database;
  logger?: FastifyBaseLogger;
  /** The clock every rule reads; tests inject one instead of waiting for a window. */
  now?: () => Date;
  /** How subscription URLs' host names are resolved at creation (the system resolver unless given). */
  resolve?: Resolve;
}

/** API.md: bodies over 64 KiB are answered 413 `payload_too_large`. */
const BODY_LIMIT_BYTES = 64 * 1024;

const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
  version: string;
};

function fastifyOptions(logger: FastifyBaseLogger, config: Config): FastifyHttpOptions<Server, FastifyBaseLogger> {
  return {
    loggerInstance: logger,
    bodyLimit: BODY_LIMIT_BYTES,
    genReqId: requestIdFor,
    // Values are never coerced (API.md): "revision": "3" is a 400, not 3.
    ajv: { customOptions: { coerceTypes: false, allErrors: true } },
    // A client gets HTTP_REQUEST_TIMEOUT_MS to send its headers and body (at most 64 KiB): one that trickles
    // them, or never sends a byte, is answered 408 and cut instead of holding a connection for ever. Time
    // spent answering does not count. Node looks for overdue requests every second (by default every 30).
    requestTimeout: config.httpRequestTimeoutMs,
    http: {
      headersTimeout: config.httpRequestTimeoutMs,
      connectionsCheckingInterval: 1000,
      // Node answers a missing Host with a bare 400; the edges plugin answers it as problem+json.
      requireHostHeader: false,
    },
    // Fastify's own answer while closing is plain JSON; the edges plugin answers 503 as problem+json.
    return503OnClosing: false,
    logController: new OneLinePerRequest(),
    // Long enough for a 200-character externalId, percent-encoded; the schema enforces the real limit.
    routerOptions: { maxParamLength: 2048 },
    // Errors raised before routing (a malformed URL) get the same problem+json as everything else.
    frameworkErrors: (error, _request, reply) => sendProblem(reply, toAppError(error)),
    clientErrorHandler: answerClientError,
  };
}

/**
 * Builds the whole application from a config and an open database. The
 * server (server.ts) and the tests call exactly this; only the config differs.
 */
export async function buildApp({ config, db, logger = createLogger(config), now = () => new Date(), resolve }: AppOptions) {
  const app = Fastify(fastifyOptions(logger, config)).withTypeProvider<TypeBoxTypeProvider>();

  // Callback-style: one allocation and one microtask fewer than an async hook, on every answer.
  app.addHook("onRequest", (request, reply, done) => {
    reply.header("x-request-id", request.id);
    done();
  });
  await app.register(metrics);
  await app.register(problemDetails);
  // Only JSON (and form bodies where a route registers them): text/plain is a 415, not a string body.
  app.removeContentTypeParser("text/plain");
  await app.register(security, { config });
  await app.register(edges);
  await app.register(openapi, { version });
  await app.register(authentication, { config, now: () => now().getTime() });

  const { provider, jwks, start } = await createVideoProvider(config, db.prisma, now, (call) => {
    app.domainMetrics.providerCalls.inc({ provider: call.provider, operation: call.operation, outcome: call.outcome });
    app.domainMetrics.providerCallSeconds.observe({ provider: call.provider, operation: call.operation }, call.durationMs / 1000);
  });
  const counters = app.domainMetrics;
  const services = createServices({
    config,
    db,
    provider,
    now,
    log: app.log,
    ...(resolve ? { resolve } : {}),
    observeDispatch: {
      emitted: (type, count) => counters.eventsEmitted.inc({ type }, count),
      attempt: (outcome, durationMs) => {
        counters.deliveryAttempts.inc({ outcome });
        counters.deliveryAttemptSeconds.observe(durationMs / 1000);
      },
      settled: (outcome, latencyMs) => {
        counters.deliveriesSettled.inc({ outcome });
        if (outcome === "delivered") counters.deliveryLatencySeconds.observe(latencyMs / 1000);
      },
    },
    observeEjections: { settled: (outcome) => counters.ejections.inc({ outcome }) },
  });
  counters.watchEjections(services.pendingEjections);
  counters.watchPendingSessions(services.pendingSessions);
  counters.watchOutbox(services.outboxBacklog, now);
  const stops: (() => void | Promise<void>)[] = [];
  app.addHook("onReady", async () => {
    stops.push(await start());
    stops.push(services.sessions.start(config.sessionReconcileIntervalMs, RECONCILE_BUDGET_MS));
    stops.push(
      services.timedEvents.start(TIMED_EVENTS_INTERVAL_MS, {
        databaseOutage: services.timedEventsOutage,
        onError: (error) => app.log.error({ err: error }, "timed events pass failed unexpectedly"),
      }),
    );
    stops.push(
      services.dispatcher.start(DISPATCH_INTERVAL_MS, {
        databaseOutage: services.dispatcherOutage,
        onError: (error) => app.log.error({ err: error }, "event dispatch failed unexpectedly"),
      }),
    );
    if (services.ejector) {
      stops.push(
        services.ejector.start(EJECTION_INTERVAL_MS, {
          databaseOutage: services.ejectorOutage,
          onError: (error) => app.log.error({ err: error }, "ejection pass failed unexpectedly"),
        }),
      );
    }
  });
  app.addHook("preClose", async () => {
    // The background workers first (in reverse order of starting), the provider's own work last.
    for (const stop of stops.reverse()) await stop();
  });

  await app.register(operationsRoutes, { db });
  await app.register(wellKnownRoutes, { jwks });
  await app.register(webhookRoutes, { deliveries: services.deliveries, source: standardWebhooks(config.webhookSecrets) });
  await app.register(appointmentRoutes, { ...services, joinRateLimit: perUserJoinLimit(app, config.rateLimitJoinPerMinute) });
  await app.register(tokenRoutes, { tokenChecks: services.tokenChecks });
  await app.register(subscriptionRoutes, { subscriptions: services.subscriptions });
  await app.register(presenceRoutes, { presence: services.presence, provider });
  await app.register(joinPageRoutes);

  await app.ready();
  return app;
}

export type App = Awaited<ReturnType<typeof buildApp>>;
