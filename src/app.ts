import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyServerOptions,
  type preHandlerAsyncHookHandler,
} from "fastify";
import { pino } from "pino";
import type { Config } from "./config.js";
import type { Database } from "./db/database.js";
import metrics from "./http/plugins/metrics.js";
import openapi from "./http/plugins/openapi.js";
import problemDetails, { sendProblem, toAppError } from "./http/plugins/problem-details.js";
import security, { rateLimited } from "./http/plugins/security.js";
import authentication from "./http/plugins/authentication.js";
import appointmentRoutes from "./http/routes/appointments.js";
import operationsRoutes from "./http/routes/operations.js";
import tokenRoutes from "./http/routes/tokens.js";
import webhookRoutes from "./http/routes/webhooks.js";
import wellKnownRoutes from "./http/routes/well-known.js";
import { createVideoProvider } from "./providers/index.js";
import { AppointmentService } from "./services/appointments.js";
import { JoinTokenService } from "./services/join-tokens.js";
import { TokenChecks } from "./services/token-checks.js";

export interface AppOptions {
  config: Config;
  db: Database;
  logger?: FastifyBaseLogger;
  /** The clock every rule reads; tests inject one instead of waiting for a window. */
  now?: () => Date;
}

/** API.md §8: a webhook is answered within 10 s, a join token within 15 s; transactions end before that. */
const WEBHOOK_TRANSACTION_MS = 9_000;
const JOIN_TRANSACTION_MS = 14_000;

/** API.md: bodies over 64 KiB are answered 413 `payload_too_large`. */
export const BODY_LIMIT_BYTES = 64 * 1024;

const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
  version: string;
};

// Anything that could carry a credential is censored before a log line is written.
export const REDACTED_PATHS = [
  "req.headers.authorization",
  "req.headers.cookie",
  'req.headers["webhook-signature"]',
  "token",
  "*.token",
  "accessToken",
  "*.accessToken",
  "secret",
  "*.secret",
  "clientSecret",
  "*.clientSecret",
  "privateKey",
  "*.privateKey",
  "password",
  "*.password",
];

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Honours a caller's well-formed X-Request-Id (for tracing across services), otherwise makes one. */
function requestIdFor(request: IncomingMessage): string {
  const incoming = request.headers["x-request-id"];
  return typeof incoming === "string" && REQUEST_ID.test(incoming) ? incoming : randomUUID();
}

export function createLogger(config: Pick<Config, "logLevel">): FastifyBaseLogger {
  return pino({ level: config.logLevel, redact: { paths: REDACTED_PATHS, censor: "[redacted]" } });
}

function fastifyOptions(logger: FastifyBaseLogger): FastifyServerOptions {
  return {
    loggerInstance: logger,
    bodyLimit: BODY_LIMIT_BYTES,
    genReqId: requestIdFor,
    // Values are never coerced (API.md): "revision": "3" is a 400, not 3.
    ajv: { customOptions: { coerceTypes: false, allErrors: true } },
    return503OnClosing: true,
    // Long enough for a 200-character externalId, percent-encoded; the schema enforces the real limit.
    maxParamLength: 2048,
    // Errors raised before routing (a malformed URL) get the same problem+json as everything else.
    frameworkErrors: (error, _request, reply) => sendProblem(reply, toAppError(error)),
  };
}

/**
 * Builds the whole application from a config and an open database. The
 * server (server.ts) and the tests call exactly this; only the config differs.
 */
export async function buildApp({ config, db, logger = createLogger(config), now = () => new Date() }: AppOptions) {
  const app = Fastify(fastifyOptions(logger)).withTypeProvider<TypeBoxTypeProvider>();

  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
  });

  // While shutting down, answers to requests still in flight close their
  // keep-alive connection, so the server can finish instead of waiting for
  // idle clients to time out.
  let closing = false;
  app.addHook("preClose", async () => {
    closing = true;
  });
  app.addHook("onSend", async (_request, reply) => {
    if (closing) reply.header("connection", "close");
  });

  await app.register(metrics);
  await app.register(problemDetails);
  await app.register(security, { config });
  await app.register(openapi, { version });
  await app.register(authentication, { config, now: () => now().getTime() });

  const { prisma } = db;
  const { provider, jwks, start } = createVideoProvider(config, prisma, now);
  let stopProvider: (() => void) | undefined;
  app.addHook("onReady", async () => {
    stopProvider = await start();
  });
  app.addHook("onClose", async () => stopProvider?.());
  const acquireTimeoutMs = config.databaseAcquireTimeoutMs;
  const appointments = new AppointmentService({
    prisma,
    provider,
    policy: config,
    now,
    transactionTimeoutMs: WEBHOOK_TRANSACTION_MS,
    acquireTimeoutMs,
  });
  const joinTokens = new JoinTokenService({ prisma, provider, now, transactionTimeoutMs: JOIN_TRANSACTION_MS, acquireTimeoutMs });
  const tokenChecks = new TokenChecks({ prisma, now });
  const joinRateLimit = perUserJoinLimit(app, config.rateLimitJoinPerMinute);

  await app.register(operationsRoutes, { db });
  await app.register(wellKnownRoutes, { jwks });
  await app.register(webhookRoutes, { appointments, secrets: config.webhookSecrets });
  await app.register(appointmentRoutes, { appointments, joinTokens, joinRateLimit });
  await app.register(tokenRoutes, { tokenChecks });

  await app.ready();
  return app;
}

export type App = Awaited<ReturnType<typeof buildApp>>;

/**
 * API.md: join-token requests per user, on top of the per-address limit. It
 * runs after authentication (the key is the JWT's `sub`) and through
 * createRateLimit, because the plugin's own route handler skips a request the
 * per-address limit has already seen. 0 turns it off.
 */
function perUserJoinLimit(app: FastifyInstance, perMinute: number): preHandlerAsyncHookHandler | null {
  if (perMinute <= 0) return null;
  const check = app.createRateLimit({
    max: perMinute,
    timeWindow: 60_000,
    keyGenerator: (request) => `join:${request.caller.userId}`,
  });
  return async (request) => {
    const result = await check(request);
    if (!result.isAllowed && result.isExceeded) throw rateLimited(Math.max(1, result.ttlInSeconds));
  };
}
