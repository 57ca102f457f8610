import { type Static, Type } from "typebox";

const Token = Type.String({ minLength: 1, maxLength: 8192 });

export const PresenceRequest = Type.Object(
  {
    token: Type.Optional(Token),
    tokenId: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: "The token's jti" })),
    state: Type.Union([Type.Literal("joined"), Type.Literal("left")]),
  },
  { title: "PresenceRequest", description: "Exactly one of token and tokenId" },
);
export type PresenceRequest = Static<typeof PresenceRequest>;

export const PresenceAnswer = Type.Object(
  {
    appointmentId: Type.String({ description: "The appointment's externalId" }),
    userId: Type.String(),
    role: Type.Union([Type.Literal("moderator"), Type.Literal("participant")]),
    state: Type.Union([Type.Literal("joined"), Type.Literal("left")]),
  },
  { title: "PresenceAnswer" },
);

export const ProviderParams = Type.Object({
  provider: Type.String({ maxLength: 64, description: "vonage, livekit or daily: the configured provider" }),
});

export const CallbackAnswer = Type.Object(
  {
    taken: Type.Integer({ description: "Presence reports stored (or found already stored)" }),
    ignored: Type.Integer({ description: "Reports about a session, user or token this service does not know" }),
  },
  { title: "CallbackAnswer" },
);
