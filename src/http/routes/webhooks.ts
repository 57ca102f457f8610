import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "typebox";
import { type WebhookEvent, WebhookResult } from "../../schemas/appointments.js";
import { BODY, DATABASE, problems, RATE_LIMITED } from "../../schemas/problems.js";
import type { WebhookDeliveryService } from "../../services/webhook-deliveries.js";
import type { WebhookSource } from "../../webhook-sources/source.js";

declare module "fastify" {
  interface FastifyRequest {
    /** Set by a webhook route once its source has verified the request. */
    deliveryId: string;
  }
}

/**
 * POST /v1/webhooks/appointments (API.md §1). The source verifies the
 * signature over the raw bytes before anything else looks at the body, so
 * unsigned junk is a 401 and only a correctly signed body can be a 400 or 422.
 */
const webhookRoutes: FastifyPluginAsyncTypebox<{
  deliveries: WebhookDeliveryService;
  source: WebhookSource<typeof WebhookEvent>;
}> = async (app, { deliveries, source }) => {
  // In this plugin's scope JSON stays a string until the signature is checked.
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_request, body, done) => done(null, body));
  // The id the source read while verifying, for the handler (a property of the request: no per-request map).
  app.decorateRequest("deliveryId", "");

  app.post(
    "/v1/webhooks/appointments",
    {
      schema: {
        tags: ["scheduling"],
        summary: "Scheduling webhook (Standard Webhooks signature)",
        description:
          "appointment.scheduled creates or fully replaces an appointment by externalId; appointment.cancelled cancels it. Redeliveries of a webhook-id return the first answer.",
        headers: Type.Object({
          "webhook-id": Type.Optional(Type.String()),
          "webhook-timestamp": Type.Optional(Type.String()),
          "webhook-signature": Type.Optional(Type.String()),
        }),
        body: source.bodySchema,
        response: {
          200: WebhookResult,
          202: WebhookResult,
          ...problems(
            ...BODY,
            "invalid_signature",
            "missing_time_zone",
            "invalid_time_zone",
            "nonexistent_local_time",
            "invalid_time_range",
            ...RATE_LIMITED,
            ...DATABASE,
          ),
        },
      },
      preValidation: async (request) => {
        const verified = source.verify({ rawBody: typeof request.body === "string" ? request.body : "", headers: request.headers });
        request.deliveryId = verified.deliveryId;
        request.body = verified.body as WebhookEvent;
      },
    },
    async (request, reply) => {
      const outcome = await deliveries.apply({ deliveryId: request.deliveryId, event: source.toEvent(request.body) });
      app.domainMetrics.webhooks.inc({ outcome: outcome.replayed ? "replayed" : outcome.outcome });
      return reply.code(outcome.status).send(outcome.body);
    },
  );
};

export default webhookRoutes;
