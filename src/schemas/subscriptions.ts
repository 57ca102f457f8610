import { type Static, Type } from "typebox";
import { EVENT_TYPES } from "../domain/outbound-events.js";

const Instant = Type.String({ format: "date-time", description: "UTC, millisecond precision, `Z` suffix" });
const EventType = Type.Union(
  EVENT_TYPES.map((type) => Type.Literal(type)),
  { description: "A lifecycle event type (API.md §9)" },
);

export const SubscriptionRequest = Type.Object(
  {
    url: Type.String({
      minLength: 1,
      maxLength: 2048,
      description: "https only; never a loopback, link-local, private or unique-local address (unless SUBSCRIPTIONS_ALLOW_PRIVATE_TARGETS)",
    }),
    events: Type.Optional(
      Type.Array(EventType, { minItems: 1, maxItems: EVENT_TYPES.length, uniqueItems: true, description: "Omitted: every type" }),
    ),
    description: Type.Optional(Type.String({ maxLength: 500, pattern: "^[^\\p{Cc}\\p{Cs}]*$" })),
  },
  { title: "SubscriptionRequest" },
);
export type SubscriptionRequest = Static<typeof SubscriptionRequest>;

export const Subscription = Type.Object(
  {
    id: Type.String(),
    url: Type.String(),
    events: Type.Array(Type.String(), { description: "The types delivered (every type when the subscription named none)" }),
    description: Type.Union([Type.String(), Type.Null()]),
    status: Type.Union([Type.Literal("active"), Type.Literal("disabled")]),
    createdAt: Instant,
    failingSince: Type.Union([Instant, Type.Null()], {
      description: "The first failed attempt since the last success; after 5 days of only failures the subscription is disabled",
    }),
    disabledAt: Type.Union([Instant, Type.Null()]),
  },
  { title: "Subscription" },
);
export type SubscriptionView = Static<typeof Subscription>;

export const SubscriptionWithSecret = Type.Object(
  {
    ...Subscription.properties,
    secret: Type.String({ description: "whsec_…: shown only in this answer; verify deliveries with it (Standard Webhooks)" }),
  },
  { title: "SubscriptionWithSecret" },
);
export type SubscriptionWithSecret = Static<typeof SubscriptionWithSecret>;

export const SubscriptionList = Type.Object({ subscriptions: Type.Array(Subscription) });

export const SubscriptionIdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) });

export const DeliveryAttempt = Type.Object(
  {
    id: Type.String({ description: "Cursor: pass as `after` to read older attempts" }),
    eventId: Type.String({ description: "The event's id: the webhook-id of its deliveries" }),
    type: Type.String(),
    attempt: Type.Integer({ minimum: 1 }),
    at: Instant,
    status: Type.Union([Type.Integer(), Type.Literal("timeout"), Type.Literal("network")], {
      description: "The receiver's HTTP status, or timeout / network when there was no answer",
    }),
    durationMs: Type.Integer({ minimum: 0 }),
    nextAttemptAt: Type.Union([Instant, Type.Null()], { description: "When it is tried again; null once delivered or failed" }),
    error: Type.Union([Type.String(), Type.Null()], { description: "Why a network attempt failed" }),
  },
  { title: "DeliveryAttempt" },
);
export type DeliveryAttempt = Static<typeof DeliveryAttempt>;

export const DeliveryLog = Type.Object({ deliveries: Type.Array(DeliveryAttempt), nextCursor: Type.Union([Type.String(), Type.Null()]) });
export type DeliveryLog = Static<typeof DeliveryLog>;

export const DeliveriesQuery = Type.Object({
  after: Type.Optional(Type.String({ pattern: "^[0-9]{1,18}$" })),
  limit: Type.Optional(Type.String({ pattern: "^[0-9]{1,4}$", description: "1 to 200, default 50" })),
});
