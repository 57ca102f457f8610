/**
 * The one interface every video provider implements. Nothing outside
 * src/providers/ knows which provider is configured.
 *
 * Role names here are the service's own (`moderator` for the agent,
 * `participant` for the customer); an adapter translates them to its
 * provider's vocabulary inside the provider's token only.
 */
export type ParticipantRole = "moderator" | "participant";

export interface SessionRequest {
  externalId: string;
  settings: { maxParticipants: number; waitingRoom: boolean; recording: boolean };
}

export interface TokenRequest {
  sessionId: string;
  /** The user's id (`sub` of their JWT). */
  userId: string;
  role: ParticipantRole;
  /** The token's id (`jti`), chosen by the caller so the stored row and the token agree. */
  tokenId: string;
  issuedAt: Date;
  /** The caller's opening time. */
  notBefore: Date;
  /** The appointment's `closesAt`. */
  expiresAt: Date;
}

export interface VideoProvider {
  readonly name: "local" | "vonage" | "genesys";
  /** Returned to clients as `applicationId` (Vonage's application id; null otherwise). */
  readonly applicationId: string | null;
  createSession(request: SessionRequest): Promise<{ sessionId: string }>;
  issueToken(request: TokenRequest): Promise<{ token: string }>;
}

/** A provider that could not be reached or refused: the caller answers 503 `provider_unavailable`. */
export class ProviderUnavailableError extends Error {
  override name = "ProviderUnavailableError";
  constructor(
    message: string,
    /** Seconds the provider asked us to wait, when it said (429/503 Retry-After). */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
  }
}
