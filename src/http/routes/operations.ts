import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "typebox";
import type { Database } from "../../db/database.js";
import { notReady } from "../../domain/errors.js";
import { withinTime } from "../../support/within-time.js";
import { DATABASE, problems } from "../../schemas/problems.js";

const READY_TIMEOUT_MS = 2_000;

/** Liveness, readiness and metrics: unauthenticated and outside the rate limit, for load balancers and scrapers. */
const operationsRoutes: FastifyPluginAsyncTypebox<{ db: Database }> = async (app, options) => {
  const { db } = options;
  const config = { rateLimit: false } as const;
  const tags = ["operations"];

  // A person who opens the service's address in a browser lands on the API documentation instead of a 404.
  app.get(
    "/",
    {
      config,
      schema: {
        tags,
        summary: "Where to start: redirects to the API documentation",
        response: {
          302: {
            // @fastify/swagger documents a `null` schema as an answer without a body.
            type: "null",
            description: "To /docs",
            headers: { Location: { type: "string", const: "/docs", description: "The documentation page", required: true } },
          },
          ...problems(),
        },
      },
    },
    async (_request, reply) => reply.redirect("/docs", 302),
  );

  app.get(
    "/healthz",
    {
      config,
      schema: { tags, summary: "The process is up", response: { 200: Type.Object({ status: Type.Literal("ok") }), ...problems() } },
    },
    async () => ({ status: "ok" as const }),
  );

  app.get(
    "/readyz",
    {
      config,
      schema: {
        tags,
        summary: "The database is reachable",
        response: { 200: Type.Object({ status: Type.Literal("ready") }), ...problems(...DATABASE) },
      },
    },
    async () => {
      // Any failure, or no answer within READY_TIMEOUT_MS, is "not ready".
      const ready = await withinTime(
        db.ping().then(
          () => true,
          () => false,
        ),
        READY_TIMEOUT_MS,
        () => false,
      );
      if (!ready) throw notReady();
      return { status: "ready" as const };
    },
  );

  app.get(
    "/metrics",
    {
      config,
      schema: {
        tags,
        summary: "Prometheus metrics",
        response: {
          200: {
            description: "Prometheus text exposition format 0.0.4",
            content: { "text/plain": { schema: Type.String() } },
          },
          // The pending-sessions gauge keeps its last value while the database is down: no 503 for that.
          ...problems(),
        },
      },
    },
    async (_request, reply) => reply.type(app.metrics.contentType).send(await app.metrics.metrics()),
  );
};

export default operationsRoutes;
