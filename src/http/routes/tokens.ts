import formBody from "@fastify/formbody";
import type { FastifyInstance } from "fastify";
import { Type } from "typebox";
import { invalidRequest } from "../../errors.js";
import type { TokenChecks } from "../../services/token-checks.js";
import { requireScope } from "../plugins/authentication.js";
import { IntrospectionResult, RevokeTokenBody, TokenBody } from "../schemas/appointments.js";
import { ProblemSchema } from "../schemas/common.js";

/** Introspection and revocation (API.md §4, §5) accept JSON or a form body, in the manner of RFC 7662 / 7009. */
export default async function tokenRoutes(app: FastifyInstance, options: { tokenChecks: TokenChecks }) {
  await app.register(formBody, { bodyLimit: 64 * 1024 });
  const { tokenChecks } = options;

  app.post(
    "/v1/tokens/introspect",
    {
      onRequest: [app.authenticate, requireScope("tokens:introspect")],
      schema: {
        tags: ["tokens"],
        summary: "Validate a join token at join time (RFC 7662 style)",
        security: [{ bearer: [] }],
        body: TokenBody,
        response: { 200: IntrospectionResult, 400: ProblemSchema, 401: ProblemSchema, 403: ProblemSchema, 415: ProblemSchema },
      },
    },
    async (request, reply) => {
      const { token } = request.body as { token: string };
      const result = await tokenChecks.introspect(token, `gateway:${request.caller.userId}`);
      app.domainMetrics.introspections.inc({ result: result.active ? "active" : result.reason });
      return reply.header("cache-control", "no-store").send(result);
    },
  );

  app.post(
    "/v1/tokens/revoke",
    {
      onRequest: [app.authenticate, requireScope("tokens:revoke")],
      schema: {
        tags: ["tokens"],
        summary: "Revoke one token by value or by id (RFC 7009: 200 whether or not it was live)",
        security: [{ bearer: [] }],
        body: RevokeTokenBody,
        response: { 200: Type.Object({}), 400: ProblemSchema, 401: ProblemSchema, 403: ProblemSchema, 415: ProblemSchema },
      },
    },
    async (request) => {
      const body = request.body as { token?: string; tokenId?: string };
      if ((body.token === undefined) === (body.tokenId === undefined)) {
        throw invalidRequest("Give either the token or its tokenId.", [
          { path: "/token", message: "exactly one of token and tokenId is required" },
        ]);
      }
      await tokenChecks.revoke(body, `operator:${request.caller.userId}`);
      return {};
    },
  );
}
