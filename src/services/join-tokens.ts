import { randomUUID } from "node:crypto";
import type { Sql } from "../db/sql.js";
import { checkJoinWindow } from "../domain/join-window.js";
import { AppError } from "../errors.js";
import { type CallBudget, ProviderUnavailableError, type VideoProvider } from "../providers/video-provider.js";
import {
  APPOINTMENT_BY_EXTERNAL_ID,
  type AppointmentRow,
  ISSUE_TOKEN,
  LIVE_TOKENS_AROUND,
  LOCK_USER_AND_APPOINTMENT,
  type LiveTokenRow,
} from "./queries.js";
import type { SessionService } from "./sessions.js";
import { hashToken } from "./tokens-store.js";

export interface JoinTokenServiceOptions {
  sql: Sql;
  provider: VideoProvider;
  sessions: SessionService;
  now: () => Date;
  /** API.md §3: a join token is answered within 15 s; provider calls get what is left of this. */
  budgetMs: number;
}

export interface IssuedJoinToken {
  appointmentId: string;
  provider: string;
  applicationId: string | null;
  sessionId: string;
  token: string;
  tokenId: string;
  role: "moderator" | "participant";
  notBefore: string;
  expiresAt: string;
}

export const providerUnavailable = (detail: string, retryAfterSeconds = 5) =>
  new AppError(503, "provider_unavailable", "Service Unavailable", detail, {}, { "retry-after": String(retryAfterSeconds) });

interface JoinRequest {
  externalId: string;
  userId: string;
  supersede: boolean;
}

interface Eligibility {
  appointment: AppointmentRow;
  role: "moderator" | "participant";
  opensAt: Date;
}

/** A token made by a remote provider before the transaction, and what it was made for. */
interface PreparedToken {
  token: string;
  tokenId: string;
  sessionId: string;
  role: string;
  notBefore: number;
  expiresAt: number;
}

class SessionPending extends Error {
  constructor(readonly appointmentId: string) {
    super("session pending");
  }
}
class ChangedMeanwhile extends Error {}

const MAX_ROUNDS = 3;

export class JoinTokenService {
  constructor(private readonly options: JoinTokenServiceOptions) {}

  /**
   * API.md §3, checks in the contract's order; nothing is written unless all
   * pass. Two locks make the guarantees hold under concurrent requests and
   * across replicas: an advisory lock on the user (one live appointment and
   * one live token per user) and the appointment row (participant cap).
   *
   * A provider that signs in-process is called inside that transaction. One
   * that needs the network is called before it, never while holding locks:
   * the checks are then repeated under the locks and the token is kept only
   * if nothing it was made for has changed (otherwise the round starts over).
   * A pending session gets one more creation attempt inline.
   */
  async issue(request: JoinRequest): Promise<IssuedJoinToken> {
    const budget: CallBudget = { deadline: Date.now() + this.options.budgetMs };
    for (let round = 0; round < MAX_ROUNDS; round++) {
      try {
        const prepared = this.options.provider.remote.tokens ? await this.prepareRemoteToken(request, budget) : undefined;
        return await this.commit(request, budget, prepared);
      } catch (error) {
        if (error instanceof SessionPending) {
          await this.withProviderErrors(() => this.options.sessions.ensureReady(error.appointmentId, budget));
          continue;
        }
        if (error instanceof ChangedMeanwhile) continue;
        throw error;
      }
    }
    throw providerUnavailable("The appointment kept changing while the token was being made; try again.", 1);
  }

  private async prepareRemoteToken(request: JoinRequest, budget: CallBudget): Promise<PreparedToken> {
    const now = this.options.now();
    const [row] = await this.options.sql.query<AppointmentRow>(APPOINTMENT_BY_EXTERNAL_ID, [request.externalId]);
    const { appointment, role, opensAt } = await eligibility(this.options.sql, row, request, now);
    if (!appointment.sessionId || appointment.sessionStatus !== "ready") throw new SessionPending(appointment.id);
    const tokenId = randomUUID();
    const { token } = await this.withProviderErrors(() =>
      this.options.provider.issueToken(
        {
          sessionId: appointment.sessionId as string,
          userId: request.userId,
          role,
          tokenId,
          issuedAt: now,
          notBefore: opensAt,
          expiresAt: appointment.closesAt,
        },
        budget,
      ),
    );
    return {
      token,
      tokenId,
      sessionId: appointment.sessionId,
      role,
      notBefore: opensAt.getTime(),
      expiresAt: appointment.closesAt.getTime(),
    };
  }

  /**
   * BEGIN, the locks with the appointment row, the live tokens, the writes,
   * COMMIT: five round trips, each statement's snapshot taken after the locks
   * it depends on are held.
   */
  private commit(request: JoinRequest, budget: CallBudget, prepared: PreparedToken | undefined): Promise<IssuedJoinToken> {
    const { sql, provider } = this.options;
    return sql.transaction(async (tx) => {
      const [locked] = await tx.query<AppointmentRow>(LOCK_USER_AND_APPOINTMENT, [`user:${request.userId}`, request.externalId]);
      const now = this.options.now();
      const { appointment, role, opensAt } = await eligibility(tx, locked, request, now);
      const sessionId = appointment.sessionId;
      if (!sessionId || appointment.sessionStatus !== "ready") throw new SessionPending(appointment.id);
      if (
        prepared &&
        (prepared.sessionId !== sessionId ||
          prepared.role !== role ||
          prepared.notBefore !== opensAt.getTime() ||
          prepared.expiresAt !== appointment.closesAt.getTime())
      ) {
        throw new ChangedMeanwhile();
      }

      const tokenId = prepared?.tokenId ?? randomUUID();
      const token =
        prepared?.token ??
        (
          await this.withProviderErrors(() =>
            provider.issueToken(
              { sessionId, userId: request.userId, role, tokenId, issuedAt: now, notBefore: opensAt, expiresAt: appointment.closesAt },
              budget,
            ),
          )
        ).token;
      const issuedDetail = { tokenId, userId: request.userId, role, expiresAt: appointment.closesAt.toISOString() };
      // Revokes the caller's other live tokens, stores the new one and audits both (ISSUE_TOKEN).
      await tx.query(ISSUE_TOKEN, [
        request.userId,
        appointment.id,
        now,
        tokenId,
        role,
        hashToken(token),
        provider.name,
        sessionId,
        opensAt,
        appointment.closesAt,
        `user:${request.userId}`,
        request.externalId,
        JSON.stringify(issuedDetail),
      ]);

      return {
        appointmentId: request.externalId,
        provider: provider.name,
        applicationId: provider.applicationId,
        sessionId,
        token,
        tokenId,
        role,
        notBefore: opensAt.toISOString(),
        expiresAt: appointment.closesAt.toISOString(),
      };
    });
  }

  private async withProviderErrors<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      if (error instanceof ProviderUnavailableError) {
        throw providerUnavailable("The video provider is unavailable; try again shortly.", error.retryAfterSeconds ?? 5);
      }
      throw error;
    }
  }
}

/**
 * The §3 checks after authentication and validation, in order: 404, 409,
 * 403, 425, 410, then the two 409s of who holds tokens. `appointment` is the
 * row as read (under its row lock, in a transaction); the live tokens are read
 * here.
 */
async function eligibility(
  sql: Pick<Sql, "query">,
  appointment: AppointmentRow | undefined,
  request: JoinRequest,
  now: Date,
): Promise<Eligibility> {
  const { role, opensAt } = checkJoinWindow(appointment ?? null, request.userId, now);
  if (!appointment) throw new Error("unreachable: checkJoinWindow refuses a missing appointment");

  const live = await sql.query<LiveTokenRow>(LIVE_TOKENS_AROUND, [request.userId, appointment.id, now]);
  const firstOther = live.find((t) => t.userId === request.userId && t.appointmentId !== appointment.id);
  if (firstOther && !request.supersede) {
    throw new AppError(
      409,
      "active_elsewhere",
      "Conflict",
      "You hold a live join token for another appointment; join with supersede: true to leave it.",
      { otherAppointmentId: firstOther.externalId },
    );
  }

  const others = new Set(live.filter((t) => t.appointmentId === appointment.id && t.userId !== request.userId).map((t) => t.userId));
  if (others.size + 1 > appointment.maxParticipants) {
    throw new AppError(
      409,
      "participant_limit",
      "Conflict",
      `The appointment allows ${appointment.maxParticipants} participant(s) at a time.`,
    );
  }
  return { appointment, role, opensAt };
}
