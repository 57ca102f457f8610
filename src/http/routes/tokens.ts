import formBody from "@fastify/formbody";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "typebox";
import { invalidRequest } from "../../domain/errors.js";
import type { TokenChecks } from "../../services/token-checks.js";
import { requireScope } from "../plugins/authentication.js";
import { IntrospectionResult, RevokeTokenBody, TokenBody } from "../../schemas/appointments.js";
import { BODY, DATABASE, problems, RATE_LIMITED, SCOPED } from "../../schemas/problems.js";

/** RFC 7662 / 7009 clients (every OAuth library) send forms; the one schema validates what either parser gives. */
const consumes = ["application/json", "application/x-www-form-urlencoded"];

/** Introspection and revocation (API.md §4, §5) accept JSON or a form body, in the manner of RFC 7662 / 7009. */
const tokenRoutes: FastifyPluginAsyncTypebox<{ tokenChecks: TokenChecks }> = async (app, options) => {
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
        consumes,
        body: TokenBody,
        response: { 200: IntrospectionResult, ...problems(...BODY, ...SCOPED, ...RATE_LIMITED, ...DATABASE) },
      },
    },
    async (request, reply) => {
      const result = await tokenChecks.introspect(request.body.token, `gateway:${request.caller.userId}`);
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
        consumes,
        body: RevokeTokenBody,
        response: { 200: Type.Object({}), ...problems(...BODY, ...SCOPED, ...RATE_LIMITED, ...DATABASE) },
      },
    },
    async (request) => {
      const { body } = request;
      if ((body.token === undefined) === (body.tokenId === undefined)) {
        throw invalidRequest("Give either the token or its tokenId.", [
          { path: "/token", message: "exactly one of token and tokenId is required" },
        ]);
      }
      await tokenChecks.revoke(body, `operator:${request.caller.userId}`);
      return {};
    },
  );
};

export default tokenRoutes;
