import type { FastifyInstance, FastifyRequest } from "fastify";
import { Webhook, WebhookVerificationError } from "standardwebhooks";
import { Type } from "typebox";
import { AppError, invalidRequest } from "../../errors.js";
import type { AppointmentService } from "../../services/appointments.js";
import { type WebhookEvent as WebhookEventType, WebhookEvent, WebhookResult } from "../schemas/appointments.js";
import { BODY, DATABASE, problems, RATE_LIMITED } from "../schemas/problems.js";

const invalidSignature = (detail: string) => new AppError(401, "invalid_signature", "Unauthorized", detail);

const WEBHOOK_ID = /^[\x21-\x7e]{1,255}$/;

/**
 * POST /v1/webhooks/appointments (API.md §1). The signature is verified over
 * the raw bytes before anything else looks at the body, so unsigned junk is a
 * 401 and only a correctly signed body can be a 400 or 422.
 */
export default async function webhookRoutes(
  app: FastifyInstance,
  options: { appointments: AppointmentService; secrets: string[] },
) {
  // Any of the configured secrets verifies: that is how a secret is rotated without downtime.
  const verifiers = options.secrets.map((secret) => new Webhook(secret));

  // In this plugin's scope JSON stays a string until the signature is checked.
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_request, body, done) => done(null, body));

  function verifiedEvent(request: FastifyRequest): unknown {
    const raw = typeof request.body === "string" ? request.body : "";
    const headers = {
      "webhook-id": String(request.headers["webhook-id"] ?? ""),
      "webhook-timestamp": String(request.headers["webhook-timestamp"] ?? ""),
      "webhook-signature": String(request.headers["webhook-signature"] ?? ""),
    };
    if (!headers["webhook-id"] || !headers["webhook-timestamp"] || !headers["webhook-signature"]) {
      throw invalidSignature("The webhook-id, webhook-timestamp and webhook-signature headers are required.");
    }
    // The library signs the parsed number, so "1700000000abc" would pass its check.
    if (!/^\d{1,12}$/.test(headers["webhook-timestamp"])) {
      throw invalidSignature("The webhook-timestamp must be unix seconds.");
    }
    let lastFailure = "The signature does not match.";
    const verified = verifiers.some((verifier) => {
      try {
        verifier.verify(raw, headers, { jsonParse: false });
        return true;
      } catch (error) {
        if (!(error instanceof WebhookVerificationError)) throw error;
        lastFailure = /timestamp/i.test(error.message)
          ? "The webhook-timestamp is missing, malformed or more than 5 minutes from the server clock."
          : "The signature does not match.";
        return false;
      }
    });
    if (!verified) throw invalidSignature(lastFailure);
    if (!WEBHOOK_ID.test(headers["webhook-id"])) {
      throw invalidRequest("The webhook-id header must be 1 to 255 printable characters.");
    }
    try {
      return JSON.parse(raw);
    } catch {
      throw invalidRequest("The body is not valid JSON.");
    }
  }

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
        body: WebhookEvent,
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
        request.body = verifiedEvent(request);
      },
    },
    async (request, reply) => {
      const outcome = await options.appointments.applyWebhook(
        String(request.headers["webhook-id"]),
        request.body as WebhookEventType,
      );
      app.domainMetrics.webhooks.inc({ outcome: outcome.replayed ? "replayed" : outcome.outcome });
      return reply.code(outcome.status).send(outcome.body);
    },
  );
}
