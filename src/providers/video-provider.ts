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
  createSession(request: SessionRequest, budget: CallBudget): Promise<{ sessionId: string }>;
  issueToken(request: TokenRequest, budget: CallBudget): Promise<{ token: string }>;
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
