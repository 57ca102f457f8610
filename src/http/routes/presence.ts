import formBody from "@fastify/formbody";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "typebox";
import { AppError, invalidRequest, notFound } from "../../domain/errors.js";
import { CallbackRejectedError, type VideoProvider } from "../../providers/video-provider.js";
import { CallbackAnswer, PresenceAnswer, PresenceRequest, ProviderParams } from "../../schemas/presence.js";
import { BODY, DATABASE, problems, RATE_LIMITED, SCOPED } from "../../schemas/problems.js";
import type { PresenceService } from "../../services/presence.js";
import { requireScope } from "../plugins/authentication.js";

const consumes = ["application/json", "application/x-www-form-urlencoded"];
const BODY_LIMIT = 64 * 1024;

/**
 * Presence (API.md §10): a video gateway's reports (the `local` provider's
 * gateway, scope `tokens:introspect`) and the providers' own callbacks,
 * which each adapter authenticates over the raw body the way its provider
 * signs them.
 */
type Options = { presence: PresenceService; provider: VideoProvider };

const presenceRoutes: FastifyPluginAsyncTypebox<Options> = async (app, options) => {
  await app.register(gatewayReports, options);
  // Only a provider that reports presence has callbacks: with the others the path does not exist (404 like any unknown route).
  if (options.provider.readCallback) await app.register(providerCallbacks, options);
};

/** What providers send: JSON (LiveKit labels it application/webhook+json). */
const CALLBACK_MEDIA_TYPES = ["application/json", "application/webhook+json"];

const gatewayReports: FastifyPluginAsyncTypebox<Options> = async (gateway, { presence }) => {
  await gateway.register(formBody, { bodyLimit: BODY_LIMIT });
  gateway.post(
    "/v1/presence",
    {
      onRequest: [gateway.authenticate, requireScope("tokens:introspect")],
      schema: {
        tags: ["presence"],
        summary: "A video gateway reports that a token's holder joined or left the room",
        description:
          "`joined` for a token that is not active is 409 `token_inactive`: the gateway must not admit that participant. `left` is taken for any token this service issued.",
        security: [{ bearer: [] }],
        consumes,
        body: PresenceRequest,
        response: { 200: PresenceAnswer, ...problems(...BODY, ...SCOPED, "token_inactive", ...RATE_LIMITED, ...DATABASE) },
      },
    },
    async (request) => {
      const { body } = request;
      if ((body.token === undefined) === (body.tokenId === undefined)) {
        throw invalidRequest("Give either the token or its tokenId.", [
          { path: "/token", message: "exactly one of token and tokenId is required" },
        ]);
      }
      try {
        const answer = await presence.fromGateway(body, `gateway:${request.caller.userId}`);
        gateway.domainMetrics.presenceReports.inc({ via: "gateway", result: "taken" });
        return answer;
      } catch (error) {
        if (error instanceof AppError && error.code === "token_inactive") {
          gateway.domainMetrics.presenceReports.inc({ via: "gateway", result: "token_inactive" });
        }
        throw error;
      }
    },
  );
};

const providerCallbacks: FastifyPluginAsyncTypebox<Options> = async (callbacks, { presence, provider }) => {
  // Signatures cover the exact bytes: every body stays a string until the adapter has checked it.
  callbacks.removeAllContentTypeParsers();
  callbacks.addContentTypeParser(CALLBACK_MEDIA_TYPES, { parseAs: "string", bodyLimit: BODY_LIMIT }, (_request, body, done) => done(null, body));
  callbacks.post(
    "/v1/providers/:provider/events",
    {
      // A provider sends many callbacks from few addresses; the per-address limit would drop them. Each is authenticated.
      config: { rateLimit: false },
      schema: {
        tags: ["presence"],
        summary: "A video provider's callbacks (presence: who joined or left a session)",
        description:
          "Authenticated as the provider signs them (LiveKit: JWT in Authorization with the body's SHA-256; Daily: HMAC in X-Webhook-Signature; Vonage: see the README). Unknown sessions, users and connections are acknowledged and ignored. Only the configured provider's path exists.",
        params: ProviderParams,
        consumes: CALLBACK_MEDIA_TYPES,
        body: Type.String({ description: "The provider's JSON, exactly as sent (its signature covers these bytes)" }),
        response: { 200: CallbackAnswer, ...problems(...BODY, "not_found", "invalid_signature", ...DATABASE) },
      },
    },
    async (request) => {
      if (request.params.provider !== provider.name || !provider.readCallback) throw notFound("This service takes no callbacks from that provider.");
      const headers: Record<string, string | undefined> = {};
      for (const [name, value] of Object.entries(request.headers)) headers[name] = Array.isArray(value) ? value.join(", ") : value;
      const query: Record<string, string | undefined> = {};
      for (const [name, value] of Object.entries(request.query as Record<string, unknown>)) {
        if (typeof value === "string") query[name] = value;
      }
      let reports;
      try {
        reports = await provider.readCallback({ headers, query, rawBody: request.body });
      } catch (error) {
        if (error instanceof CallbackRejectedError) {
          callbacks.domainMetrics.presenceReports.inc({ via: provider.name, result: "rejected" });
          throw new AppError("invalid_signature", "The callback's authentication is missing or wrong.");
        }
        throw error;
      }
      const { taken, ignored } = await presence.fromProvider(reports);
      if (taken > 0) callbacks.domainMetrics.presenceReports.inc({ via: provider.name, result: "taken" }, taken);
      if (ignored > 0) callbacks.domainMetrics.presenceReports.inc({ via: provider.name, result: "ignored" }, ignored);
      return { taken, ignored };
    },
  );
};

export default presenceRoutes;
