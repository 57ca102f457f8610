import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "typebox";
import type { SubscriptionService } from "../../services/subscriptions.js";
import { requireScope } from "../plugins/authentication.js";
import { absentBodyIsEmpty, cursorPage } from "../../schemas/common.js";
import { BODY, DATABASE, problems, RATE_LIMITED, SCOPED } from "../../schemas/problems.js";
import {
  DeliveriesQuery,
  DeliveryLog,
  Subscription,
  SubscriptionIdParams,
  SubscriptionList,
  SubscriptionRequest,
  SubscriptionWithSecret,
} from "../../schemas/subscriptions.js";

const bearer = [{ bearer: [] }];
const NO_BODY = Type.Object({}, { description: "No options; send no body or {}" });

/** Lifecycle event subscriptions (API.md §9), every route with scope subscriptions:manage. */
const subscriptionRoutes: FastifyPluginAsyncTypebox<{ subscriptions: SubscriptionService }> = async (app, options) => {
  const { subscriptions } = options;
  const guarded = { onRequest: [app.authenticate, requireScope("subscriptions:manage")] };
  const actor = (request: { caller: { userId: string } }) => `operator:${request.caller.userId}`;

  app.post(
    "/v1/subscriptions",
    {
      ...guarded,
      schema: {
        tags: ["subscriptions"],
        summary: "Subscribe a URL to lifecycle events; the answer carries its signing secret, shown only here",
        security: bearer,
        body: SubscriptionRequest,
        response: {
          201: SubscriptionWithSecret,
          ...problems(...BODY, ...SCOPED, "invalid_subscription_url", ...RATE_LIMITED, ...DATABASE),
        },
      },
    },
    async (request, reply) => {
      const created = await subscriptions.create(request.body, actor(request));
      return reply.code(201).header("cache-control", "no-store").send(created);
    },
  );

  app.get(
    "/v1/subscriptions",
    {
      ...guarded,
      schema: {
        tags: ["subscriptions"],
        summary: "Every subscription, without secrets",
        security: bearer,
        response: { 200: SubscriptionList, ...problems(...SCOPED, ...RATE_LIMITED, ...DATABASE) },
      },
    },
    async () => ({ subscriptions: await subscriptions.list() }),
  );

  app.get(
    "/v1/subscriptions/:id",
    {
      ...guarded,
      schema: {
        tags: ["subscriptions"],
        summary: "One subscription, without its secret",
        security: bearer,
        params: SubscriptionIdParams,
        response: { 200: Subscription, ...problems("invalid_request", ...SCOPED, "not_found", ...RATE_LIMITED, ...DATABASE) },
      },
    },
    async (request) => subscriptions.read(request.params.id),
  );

  app.delete(
    "/v1/subscriptions/:id",
    {
      ...guarded,
      schema: {
        tags: ["subscriptions"],
        summary: "Delete a subscription; its pending deliveries stop",
        security: bearer,
        params: SubscriptionIdParams,
        response: {
          204: Type.Null({ description: "Deleted" }),
          ...problems("invalid_request", ...SCOPED, "not_found", ...RATE_LIMITED, ...DATABASE),
        },
      },
    },
    async (request, reply) => {
      await subscriptions.delete(request.params.id, actor(request));
      return reply.code(204).send(null);
    },
  );

  app.post(
    "/v1/subscriptions/:id/rotate-secret",
    {
      ...guarded,
      preValidation: [absentBodyIsEmpty],
      schema: {
        tags: ["subscriptions"],
        summary: "A new signing secret; for 24 h deliveries carry a signature with the old one too",
        security: bearer,
        params: SubscriptionIdParams,
        body: NO_BODY,
        response: {
          200: SubscriptionWithSecret,
          ...problems(...BODY, ...SCOPED, "not_found", ...RATE_LIMITED, ...DATABASE),
        },
      },
    },
    async (request, reply) => {
      const rotated = await subscriptions.rotateSecret(request.params.id, actor(request));
      return reply.header("cache-control", "no-store").send(rotated);
    },
  );

  app.post(
    "/v1/subscriptions/:id/enable",
    {
      ...guarded,
      preValidation: [absentBodyIsEmpty],
      schema: {
        tags: ["subscriptions"],
        summary: "Make a disabled subscription active again (new events only: those failed by the disabling stay failed)",
        security: bearer,
        params: SubscriptionIdParams,
        body: NO_BODY,
        response: { 200: Subscription, ...problems(...BODY, ...SCOPED, "not_found", ...RATE_LIMITED, ...DATABASE) },
      },
    },
    async (request) => subscriptions.enable(request.params.id, actor(request)),
  );

  app.get(
    "/v1/subscriptions/:id/deliveries",
    {
      ...guarded,
      schema: {
        tags: ["subscriptions"],
        summary: "Delivery attempts of a subscription, newest first",
        security: bearer,
        params: SubscriptionIdParams,
        querystring: DeliveriesQuery,
        response: { 200: DeliveryLog, ...problems("invalid_request", ...SCOPED, "not_found", ...RATE_LIMITED, ...DATABASE) },
      },
    },
    async (request) => {
      const { after, limit } = cursorPage(request.query, 50, 200);
      return subscriptions.deliveries(request.params.id, after, limit);
    },
  );
};

export default subscriptionRoutes;
