import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyHttpOptions,
  type FastifyRequest,
  LogController,
  type preHandlerAsyncHookHandler,
} from "fastify";
import { type DestinationStream, type LoggerOptions, pino } from "pino";
import type { Config } from "./config.js";
import type { Database } from "./db/database.js";
import { DatabaseOutageLog } from "./db/outage-log.js";
import metrics from "./http/plugins/metrics.js";
import openapi from "./http/plugins/openapi.js";
import problemDetails, { problemBody, sendProblem, toAppError } from "./http/plugins/problem-details.js";
import { AppError, invalidRequest, notFound, shuttingDown } from "./errors.js";
import security, { rateLimited } from "./http/plugins/security.js";
import authentication from "./http/plugins/authentication.js";
import appointmentRoutes from "./http/routes/appointments.js";
import joinPageRoutes from "./http/routes/join-page.js";
import operationsRoutes from "./http/routes/operations.js";
import tokenRoutes from "./http/routes/tokens.js";
import webhookRoutes from "./http/routes/webhooks.js";
import wellKnownRoutes from "./http/routes/well-known.js";
import { createVideoProvider } from "./providers/index.js";
import { AppointmentService } from "./services/appointments.js";
import { JoinTokenService } from "./services/join-tokens.js";
import { SessionService } from "./services/sessions.js";
import { TokenChecks } from "./services/token-checks.js";

export interface AppOptions {
  config: Config;
  db: Database;
  logger?: FastifyBaseLogger;
  /** The clock every rule reads; tests inject one instead of waiting for a window. */
  now?: () => Date;
}

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
const RECONCILE_BUDGET_MS = 10_000;

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

export function createLogger(config: Pick<Config, "logLevel">, destination?: DestinationStream): FastifyBaseLogger {
  const options: LoggerOptions = {
    level: config.logLevel,
    redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
    serializers: {
      // The path only: a query string is where a misdirected client puts a token.
      req: (request: FastifyRequest) => ({
        method: request.method,
        url: request.url.split("?")[0],
        remoteAddress: request.ip,
      }),
    },
  };
  return destination ? pino(options, destination) : pino(options);
}

/**
 * A problem+json answer written straight to the socket or the raw response,
 * for what never reaches Fastify's handlers: HTTP that Node's parser rejects,
 * a request that took too long to arrive, an `Expect` we cannot meet.
 */
function rawProblem(status: number, reason: string, code: string, detail: string) {
  const body = JSON.stringify(problemBody(new AppError(status, code, reason, detail)));
  return { body, headers: { "content-type": "application/problem+json; charset=utf-8", "content-length": String(Buffer.byteLength(body)) } };
}

const CLIENT_ERRORS: Record<string, [status: number, reason: string, code: string, detail: string]> = {
  HPE_HEADER_OVERFLOW: [431, "Request Header Fields Too Large", "headers_too_large", "The HTTP request has headers that are too large."],
  ERR_HTTP_REQUEST_TIMEOUT: [408, "Request Timeout", "request_timeout", "The request did not arrive in time."],
};
const MALFORMED: [number, string, string, string] = [400, "Bad Request", "invalid_request", "The HTTP request is malformed."];

/** Requests Node's HTTP server refuses (malformed, too slow) never reach Fastify's handlers; they get the same problem+json. */
function answerClientError(error: Error & { code?: string }, socket: Duplex) {
  if (!socket.writable) return socket.destroy();
  const [status, reason, code, detail] = CLIENT_ERRORS[error.code ?? ""] ?? MALFORMED;
  const { body, headers } = rawProblem(status, reason, code, detail);
  const head = Object.entries({ ...headers, connection: "close" }).map(([name, value]) => `${name}: ${value}\r\n`);
  socket.end(`HTTP/1.1 ${status} ${reason}\r\n${head.join("")}\r\n${body}`);
}

/** RFC 9110 §10.1.1: only `100-continue` is an expectation this server can meet; Node would answer any other with a bare 417. */
function answerUnmetExpectation(_request: IncomingMessage, response: ServerResponse) {
  const { body, headers } = rawProblem(417, "Expectation Failed", "expectation_failed", "Only 'Expect: 100-continue' is supported.");
  response.writeHead(417, headers).end(body);
}

/** One log line per request ("request completed", with the request), not Fastify's two: logging is a large share of a request's cost. */
class OneLinePerRequest extends LogController {
  /**
   * The app's logger without redaction, for the per-request line only: every field of that line is
   * built here from values that carry no credential (the method, the path without its query, the
   * address, the status, the time), and pino's redaction pass over it cost 3% of an introspection.
   */
  private accessLog: FastifyBaseLogger | undefined;

  override incomingRequest() {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply) {
    const line = { req: request, res: { statusCode: reply.statusCode }, responseTime: Math.round(reply.elapsedTime * 10) / 10 };
    if (error) {
      reply.log.error({ ...line, err: error }, "request errored");
      return;
    }
    this.accessLog ??= request.server.log.child({}, { redact: [] });
    this.accessLog.info({ reqId: request.id, ...line }, "request completed");
  }
}

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
      // Node answers a missing Host with a bare 400; the onRequest hook below answers it as problem+json.
      requireHostHeader: false,
    },
    // Fastify's own answer while closing is plain JSON; the onRequest hook below answers 503 as problem+json.
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
export async function buildApp({ config, db, logger = createLogger(config), now = () => new Date() }: AppOptions) {
  const app = Fastify(fastifyOptions(logger, config)).withTypeProvider<TypeBoxTypeProvider>();
  app.server.on("checkExpectation", answerUnmetExpectation);

  // Hooks that run on every request take a callback rather than returning a promise: one allocation
  // and one microtask fewer each, on every answer.
  app.addHook("onRequest", (request, reply, done) => {
    reply.header("x-request-id", request.id);
    done();
  });

  // While shutting down, answers to requests still in flight close their
  // keep-alive connection, so the server can finish instead of waiting for
  // idle clients to time out.
  let closing = false;
  app.addHook("preClose", async () => {
    closing = true;
  });
  app.addHook("onSend", (_request, reply, payload, done) => {
    if (closing) reply.header("connection", "close");
    done(null, payload);
  });

  await app.register(metrics);
  await app.register(problemDetails);
  // Only JSON (and form bodies where a route registers them): text/plain is a 415, not a string body.
  app.removeContentTypeParser("text/plain");
  await app.register(security, { config });
  // After the security headers and the per-address limit, before any body is read.
  app.addHook("onRequest", (request, reply, done) => {
    if (closing) return void sendProblem(reply, shuttingDown());
    if (request.raw.httpVersion === "1.1" && request.headers.host === undefined) {
      return void sendProblem(reply, invalidRequest("An HTTP/1.1 request needs a Host header."));
    }
    // A route that does not exist is a 404 whatever its body: matching the route wins over parsing the body.
    if (request.is404) return void sendProblem(reply, notFound("No such route."));
    done();
  });
  await app.register(openapi, { version });
  await app.register(authentication, { config, now: () => now().getTime() });

  const { prisma } = db;
  const { provider, jwks, start } = await createVideoProvider(config, prisma, now, (call) => {
    app.domainMetrics.providerCalls.inc({ provider: call.provider, operation: call.operation, outcome: call.outcome });
    app.domainMetrics.providerCallSeconds.observe({ provider: call.provider, operation: call.operation }, call.durationMs / 1000);
  });
  app.domainMetrics.watchPendingSessions(() => prisma.appointment.count({ where: { sessionStatus: "pending" } }));
  const sessions = new SessionService({
    prisma,
    provider,
    now,
    leaseMs: SESSION_LEASE_MS,
    onError: (error, externalId) => app.log.error({ err: error, externalId }, "session creation failed unexpectedly"),
    databaseOutage: new DatabaseOutageLog(app.log),
  });
  const appointments = new AppointmentService({
    prisma,
    sql: db.sql,
    provider,
    sessions,
    sessionBudgetMs: WEBHOOK_SESSION_BUDGET_MS,
    sessionLeaseMs: SESSION_LEASE_MS,
    policy: config,
    now,
  });
  const joinTokens = new JoinTokenService({ sql: db.sql, provider, sessions, now, budgetMs: JOIN_BUDGET_MS });
  let stopProvider: (() => void) | undefined;
  let stopReconciler: (() => Promise<void>) | undefined;
  app.addHook("onReady", async () => {
    stopProvider = await start();
    stopReconciler = sessions.start(config.sessionReconcileIntervalMs, RECONCILE_BUDGET_MS);
  });
  app.addHook("preClose", async () => {
    await stopReconciler?.();
    stopProvider?.();
  });
  const tokenChecks = new TokenChecks({ prisma, sql: db.sql, now });
  const joinRateLimit = perUserJoinLimit(app, config.rateLimitJoinPerMinute);

  await app.register(operationsRoutes, { db });
  await app.register(wellKnownRoutes, { jwks });
  await app.register(webhookRoutes, { appointments, secrets: config.webhookSecrets });
  await app.register(appointmentRoutes, { appointments, joinTokens, joinRateLimit });
  await app.register(tokenRoutes, { tokenChecks });
  await app.register(joinPageRoutes);

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
