import type { IncomingMessage, ServerResponse } from "node:http";
import cors from "@fastify/cors";
import rateLimit from "@fastify/rate-limit";
import type { FastifyInstance, preHandlerAsyncHookHandler } from "fastify";
import fp from "fastify-plugin";
import helmet, { type HelmetOptions } from "helmet";
import type { Config } from "../../config.js";
import { rateLimited } from "../../domain/errors.js";

type HelmetMiddleware = (request: IncomingMessage, response: ServerResponse, next: (error?: unknown) => void) => void;

declare module "fastify" {
  interface RouteShorthandOptions {
    /** Helmet options of this route, over the defaults below. */
    helmet?: HelmetOptions;
  }
  interface FastifyContextConfig {
    /** Set from the route's `helmet` options when it has any. */
    securityHeaders?: HelmetMiddleware;
  }
}

const HELMET_DEFAULTS: HelmetOptions = {
  // API answers are JSON; the docs page sets its own policy (see openapi.ts).
  contentSecurityPolicy: { directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
  crossOriginResourcePolicy: { policy: "same-site" },
  // Headers for legacy browsers rendering HTML; they cost time on every API answer and protect nothing here.
  dnsPrefetchControl: false,
  ieNoOpen: false,
  permittedCrossDomainPolicies: false,
  originAgentCluster: false,
  xssFilter: false,
};

/** Helmet headers, CORS for the configured portal origins, and the per-address rate limit. */
export default fp(
  async function security(app: FastifyInstance, options: { config: Config }) {
    const { config } = options;

    // Helmet's middleware is built once per configuration, here and when a route
    // with its own `helmet` options is added. (@fastify/helmet builds it anew,
    // parsing the CSP directives, on every request: ~4% of a request's CPU.)
    const defaultHeaders: HelmetMiddleware = helmet(HELMET_DEFAULTS);
    app.addHook("onRoute", (route) => {
      if (route.helmet) {
        route.config = { ...route.config, securityHeaders: helmet({ ...HELMET_DEFAULTS, ...route.helmet } as HelmetOptions) };
      }
    });
    app.addHook("onRequest", (request, reply, done) => {
      const headers = request.routeOptions.config.securityHeaders ?? defaultHeaders;
      headers(request.raw, reply.raw, done as (error?: unknown) => void);
    });

    // No allowed origins (the default): no CORS headers at all, and no hook on every request.
    if (config.corsOrigins.length > 0) await app.register(cors, {
      origin: config.corsOrigins,
      methods: ["GET", "POST"],
      allowedHeaders: ["authorization", "content-type", "x-request-id"],
      // The browser client follows the server's clock (Date) and waits as told (Retry-After).
      exposedHeaders: ["date", "retry-after", "x-request-id"],
      maxAge: 600,
    });

    await app.register(rateLimit, {
      global: false,
      // The plugin throws what this returns; the problem-details handler renders it.
      errorResponseBuilder: (_request, context) => rateLimited(Math.max(1, Math.ceil(context.ttl / 1000))),
    });

    // 0 turns the limit off (API.md). A root onRequest hook rather than the
    // plugin's per-route one, which would run after a route's own
    // authentication and so never count refused requests. Counted per
    // replica, in memory. Routes opt out with `config: { rateLimit: false }`.
    if (config.rateLimitPerMinute > 0) {
      const perAddress = app.rateLimit({ max: config.rateLimitPerMinute, timeWindow: 60_000 });
      app.addHook("onRequest", async (request, reply) => {
        if ((request.routeOptions.config as { rateLimit?: unknown }).rateLimit === false) return;
        await perAddress.call(app, request, reply);
      });
    }
  },
  { name: "security" },
);

/**
 * API.md: join-token requests per user, on top of the per-address limit. It
 * runs after authentication (the key is the JWT's `sub`) and through
 * createRateLimit, because the plugin's own route handler skips a request the
 * per-address limit has already seen. 0 turns it off.
 */
export function perUserJoinLimit(app: FastifyInstance, perMinute: number): preHandlerAsyncHookHandler | null {
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
