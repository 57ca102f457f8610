/**
 * The one interface every video provider implements. Nothing outside
 * src/providers/ knows which provider is configured.
 *
 * Role names here are the service's own (`moderator` for the agent,
 * `participant` for the customer); an adapter translates them to its
 * provider's vocabulary inside the provider's token only.
 */
import type { ParticipantRole } from "../domain/join-window.js";

export type { ParticipantRole };

export interface SessionRequest {
  externalId: string;
  settings: { maxParticipants: number; waitingRoom: boolean; recording: boolean };
  /** The appointment's `closesAt`: a provider whose rooms expire (Daily) makes the room expire then. */
  closesAt: Date;
}

export interface CreatedSession {
  sessionId: string;
  /** A room URL clients open (Daily); null or absent for providers without one. */
  roomUrl?: string | null;
}

/** A session's expiry moved: the appointment was rescheduled (API.md §8, Daily). */
export interface SessionUpdate {
  sessionId: string;
  closesAt: Date;
}

/** One participant to remove from a running session (API.md §10). */
export interface EjectRequest {
  sessionId: string;
  /** The user id (`sub`): the identity LiveKit and Daily know the participant by. */
  userId: string;
  role: ParticipantRole;
  /**
   * The provider connections recorded for this participant from its presence
   * callbacks, still open and made before the removal was decided (Vonage's
   * connection ids, Daily's participant session ids); empty when none were
   * recorded.
   */
  connectionIds: readonly string[];
  /**
   * Whether every entry of the user may be removed (by identity). False when
   * the user has been given a new token since the removal was decided: then
   * only `connectionIds` are removed, never their new entry.
   */
  byIdentity: boolean;
}

export interface EjectResult {
  /** False when the provider says the participant was not in the session (nothing to remove). */
  removed: boolean;
}

/**
 * A provider's callback as received at POST /v1/providers/{name}/events:
 * header names lower-case, the body exactly as sent (signatures cover its
 * bytes), the query string's parameters.
 */
export interface ProviderCallback {
  headers: Readonly<Record<string, string | undefined>>;
  rawBody: string;
  query: Readonly<Record<string, string | undefined>>;
}

/**
 * Who joined or left, as a provider's callback says (API.md §10). Which
 * participant it is comes from the token id carried in the connection
 * (Vonage) or from the user id the token was made for (LiveKit's identity,
 * Daily's user_id).
 */
export interface PresenceReport {
  sessionId: string;
  state: "joined" | "left";
  /** The provider's own time of the event: redeliveries and reordering never move presence backwards. */
  at: Date;
  userId?: string;
  tokenId?: string;
  /** The provider's connection id, when it has them (Vonage): kept so that an eject can disconnect it. */
  connectionId?: string;
}

/** A callback that fails the provider's authentication: 401, and nothing changes. */
export class CallbackRejectedError extends Error {
  override name = "CallbackRejectedError";
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

/**
 * The answer-time budget of the request that makes the call (API.md §8: 10 s
 * for a webhook, 15 s for a join token). No attempt, retry or Retry-After
 * wait starts that would end after `deadline` (epoch ms, real clock).
 */
export interface CallBudget {
  deadline: number;
  /**
   * One attempt, no retry inside the call: for a durable job that retries by
   * itself and decides afresh what to ask each time (an eject must not be
   * resent as it was decided before the user came back).
   */
  singleAttempt?: boolean;
}

export interface VideoProvider {
  /** Its adapter's name (src/providers/index.ts), as stored with sessions and tokens. */
  readonly name: string;
  /** Returned to clients as `applicationId` (Vonage's application id; null otherwise). */
  readonly applicationId: string | null;
  /**
   * Which operations leave the process. Those that do are never called
   * inside a database transaction (a slow provider must not hold locks or
   * pooled connections); those that don't are, which saves a round trip.
   */
  readonly remote: { sessions: boolean; tokens: boolean };
  createSession(request: SessionRequest, budget: CallBudget): Promise<CreatedSession>;
  issueToken(request: TokenRequest, budget: CallBudget): Promise<{ token: string }>;
  /**
   * Moves the session's own expiry to a new closesAt, for providers whose
   * rooms expire (capability `sessionExpiry`); absent otherwise.
   */
  updateSession?(request: SessionUpdate, budget: CallBudget): Promise<void>;
  /**
   * Removes a participant from the session (capability `eject`); absent for
   * providers that cannot. Throws ProviderUnavailableError for a transient
   * failure (it is retried), any other error for a refusal.
   */
  eject?(request: EjectRequest, budget: CallBudget): Promise<EjectResult>;
  /**
   * Authenticates a callback of the provider the strongest way it offers and
   * reads the presence changes it reports (capability `presence`); throws
   * CallbackRejectedError when it is not authentic, answers [] for events
   * that say nothing about presence.
   */
  readCallback?(callback: ProviderCallback): Promise<PresenceReport[]>;
  /**
   * The id the provider knows a user by, when it is not the user id itself
   * (Daily's `user_id` holds 36 characters): what its PresenceReport's
   * `userId` carries. Absent: the user id.
   */
  identityOf?(userId: string): string;
}

/** One outbound call, for metrics: provider, operation, outcome and latency. */
export interface ProviderCall {
  provider: VideoProvider["name"];
  operation: string;
  /** "ok", "http_<status>", "timeout", "network", "budget_exhausted", "invalid_answer" */
  outcome: string;
  durationMs: number;
}
export type ProviderCallObserver = (call: ProviderCall) => void;

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
