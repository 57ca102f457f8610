import { type Static, Type } from "typebox";

// "1 to 200 printable characters" (API.md §1): no control or unassigned code points.
const Identifier = Type.String({ minLength: 1, maxLength: 200, pattern: "^[^\\p{C}]+$" });
// Free text still excludes control characters and lone surrogates, which Postgres cannot store.
const Text = (maxLength: number) => Type.String({ maxLength, pattern: "^[^\\p{Cc}\\p{Cs}]*$" });
const Name = Text(200);
const Instant = Type.String({ format: "date-time", description: "UTC, millisecond precision, `Z` suffix" });
const LocalOrOffsetTime = Type.String({
  maxLength: 40,
  description: "ISO 8601; with an offset or Z, or a local wall-clock time in `timeZone`",
  examples: ["2026-11-23T09:00:00"],
});

export const ParticipantInput = Type.Object({ id: Identifier, name: Type.Optional(Type.Union([Name, Type.Null()])) });

export const SettingsInput = Type.Object({
  maxParticipants: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 2 })),
  waitingRoom: Type.Optional(Type.Boolean({ default: true })),
  recording: Type.Optional(Type.Boolean({ default: false })),
});

/**
 * One schema for both event types; the fields `appointment.scheduled` needs
 * are checked by the service, so that a missing one is reported by its path
 * instead of as an unreadable union mismatch.
 */
export const WebhookEvent = Type.Object(
  {
    type: Type.Union([Type.Literal("appointment.scheduled"), Type.Literal("appointment.cancelled")]),
    data: Type.Object({
      externalId: Identifier,
      revision: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: 2147483647 }), Type.Null()])),
      startsAt: Type.Optional(LocalOrOffsetTime),
      endsAt: Type.Optional(LocalOrOffsetTime),
      timeZone: Type.Optional(Type.Union([Type.String({ maxLength: 64 }), Type.Null()])),
      agent: Type.Optional(ParticipantInput),
      customer: Type.Optional(ParticipantInput),
      settings: Type.Optional(SettingsInput),
    }),
  },
  { title: "WebhookEvent" },
);
export type WebhookEvent = Static<typeof WebhookEvent>;

const Participant = Type.Object({ id: Type.String(), name: Type.Union([Type.String(), Type.Null()]) });

const Presence = Type.Object({ present: Type.Boolean(), since: Type.Union([Instant, Type.Null()]) });

export const Appointment = Type.Object(
  {
    id: Type.String({ description: "Internal id; every path uses externalId" }),
    externalId: Type.String(),
    status: Type.Union([Type.Literal("scheduled"), Type.Literal("cancelled")]),
    revision: Type.Union([Type.Integer(), Type.Null()]),
    startsAt: Instant,
    endsAt: Instant,
    timeZone: Type.Union([Type.String(), Type.Null()]),
    agent: Participant,
    customer: Participant,
    settings: Type.Object({
      maxParticipants: Type.Integer(),
      waitingRoom: Type.Boolean(),
      recording: Type.Boolean(),
    }),
    join: Type.Object({ agentOpensAt: Instant, customerOpensAt: Instant, closesAt: Instant }),
    session: Type.Object({
      provider: Type.String(),
      id: Type.Union([Type.String(), Type.Null()]),
      status: Type.Union([Type.Literal("pending"), Type.Literal("ready"), Type.Literal("failed")]),
      roomUrl: Type.Union([Type.String(), Type.Null()], { description: "The room clients open (Daily); null for other providers" }),
    }),
    presence: Type.Object(
      { agent: Presence, customer: Presence },
      { description: "What the presence sources (API.md §10) last reported; `since` is when that state began" },
    ),
    accessBlocked: Type.Boolean(),
  },
  { title: "Appointment" },
);
export type AppointmentView = Static<typeof Appointment>;

export const WebhookResult = Type.Object({
  applied: Type.Boolean(),
  appointment: Type.Optional(Appointment),
});

export const JoinTokenRequest = Type.Object({ supersede: Type.Optional(Type.Boolean({ default: false })) });

export const JoinTokenResponse = Type.Object({
  appointmentId: Type.String({ description: "The appointment's externalId" }),
  provider: Type.String(),
  applicationId: Type.Union([Type.String(), Type.Null()]),
  sessionId: Type.String(),
  token: Type.String(),
  tokenId: Type.String({ description: "The token's jti" }),
  roomUrl: Type.Union([Type.String(), Type.Null()], { description: "The room to open with the token (Daily); null for other providers" }),
  role: Type.Union([Type.Literal("moderator"), Type.Literal("participant")]),
  notBefore: Instant,
  expiresAt: Instant,
});

export type JoinTokenResponse = Static<typeof JoinTokenResponse>;

export const TokenBody = Type.Object({ token: Type.String({ minLength: 1, maxLength: 8192 }) });

export const RevokeTokenBody = Type.Object({
  token: Type.Optional(Type.String({ minLength: 1, maxLength: 8192 })),
  tokenId: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
});

export const IntrospectionResult = Type.Object({
  active: Type.Boolean(),
  reason: Type.Optional(
    Type.Union([
      Type.Literal("unknown"),
      Type.Literal("revoked"),
      Type.Literal("expired"),
      Type.Literal("not_yet_valid"),
    ]),
  ),
  revocationReason: Type.Optional(Type.String()),
  jti: Type.Optional(Type.String()),
  sub: Type.Optional(Type.String()),
  role: Type.Optional(Type.String()),
  appointmentId: Type.Optional(Type.String()),
  sessionId: Type.Optional(Type.String()),
  provider: Type.Optional(Type.String()),
  iat: Type.Optional(Type.Integer()),
  nbf: Type.Optional(Type.Integer()),
  exp: Type.Optional(Type.Integer()),
});

export type IntrospectionResult = Static<typeof IntrospectionResult>;

export const KillSwitchBody = Type.Object({
  reason: Type.Optional(Text(500)),
  block: Type.Optional(Type.Boolean({ default: false })),
});

export const AuditEvent = Type.Object({
  id: Type.String({ description: "Cursor: pass as `after` to read on" }),
  at: Instant,
  type: Type.String(),
  actor: Type.String(),
  outcome: Type.String(),
  detail: Type.Record(Type.String(), Type.Unknown()),
});

export const AuditPage = Type.Object({ events: Type.Array(AuditEvent), nextCursor: Type.Union([Type.String(), Type.Null()]) });
export type AuditPage = Static<typeof AuditPage>;

export const EventsQuery = Type.Object({
  after: Type.Optional(Type.String({ pattern: "^[0-9]{1,18}$" })),
  limit: Type.Optional(Type.String({ pattern: "^[0-9]{1,4}$", description: "1 to 500, default 100" })),
});

export const ExternalIdParams = Type.Object({ externalId: Identifier });
