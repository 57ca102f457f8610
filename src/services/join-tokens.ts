import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { AppointmentRow } from "../db/repositories/appointment-rows.js";
import type { AppointmentsRepository } from "../db/repositories/appointments.js";
import type { JoinTokensRepository } from "../db/repositories/join-tokens.js";
import { isUniqueViolation } from "../db/errors.js";
import type { Queryable, Sql } from "../db/sql.js";
import { providerUnavailable } from "../domain/errors.js";
import { type Admission, checkHolders, checkWindow } from "../domain/join-rules.js";
import type { ParticipantRole } from "../domain/join-window.js";
import { hashToken } from "../domain/token-hash.js";
import { type CallBudget, ProviderUnavailableError, type VideoProvider } from "../providers/video-provider.js";
import type { JoinTokenResponse } from "../schemas/appointments.js";
import { needsExpirySync, type SessionService } from "./sessions.js";

export interface JoinTokenServiceOptions {
  sql: Pick<Sql, "transaction">;
  appointments: Pick<AppointmentsRepository, "byExternalId" | "lockForJoin">;
  tokens: Pick<JoinTokensRepository, "liveAround" | "issue" | "byHash">;
  provider: VideoProvider;
  sessions: SessionService;
  now: () => Date;
  /** API.md §3: a join token is answered within 15 s; provider calls get what is left of this. */
  budgetMs: number;
}

interface JoinRequest {
  externalId: string;
  userId: string;
  supersede: boolean;
}

type Eligibility = Admission & { appointment: AppointmentRow };

/** A token made by a remote provider before the transaction, and what it was made for. */
interface PreparedToken {
  token: string;
  tokenId: string;
  sessionId: string;
  roomUrl: string | null;
  role: ParticipantRole;
  notBefore: number;
  expiresAt: number;
}

class SessionPending extends Error {
  constructor(readonly appointmentId: string) {
    super("session pending");
  }
}
class ChangedMeanwhile extends Error {}
/** The provider's room still expires at the appointment's old times (Daily, after a reschedule). */
class ExpiryOutOfDate extends Error {
  constructor(readonly appointment: AppointmentRow) {
    super("session expiry out of date");
  }
}

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
  async issue(request: JoinRequest): Promise<JoinTokenResponse> {
    const budget: CallBudget = { deadline: Date.now() + this.options.budgetMs };
    for (let round = 0; round < MAX_ROUNDS; round++) {
      let prepared: PreparedToken | undefined;
      try {
        prepared = this.options.provider.remote.tokens ? await this.prepareRemoteToken(request, budget) : undefined;
        return await this.commit(request, budget, prepared);
      } catch (error) {
        // A remote provider answered a token already stored: one that derives tokens from their properties and the
        // second (Daily's meeting tokens carry no nonce) does so for two requests of a user within a second.
        if (prepared && isUniqueViolation(error)) {
          // The same user's live token, asked for again within its second (a double click): the same answer.
          const again = await this.sameLiveToken(request, prepared);
          if (again) return again;
          // Revoked since: a new token can only differ in a later second.
          await sleep(1000 - (Date.now() % 1000) + 5);
          continue;
        }
        if (error instanceof SessionPending) {
          await this.withProviderErrors(() => this.options.sessions.ensureReady(error.appointmentId, budget));
          continue;
        }
        if (error instanceof ChangedMeanwhile) continue;
        if (error instanceof ExpiryOutOfDate) {
          await this.withProviderErrors(() => this.options.sessions.syncExpiry(error.appointment, budget));
          continue;
        }
        throw error;
      }
    }
    throw providerUnavailable("The appointment kept changing while the token was being made; try again.", 1);
  }

  private async prepareRemoteToken(request: JoinRequest, budget: CallBudget): Promise<PreparedToken> {
    const now = this.options.now();
    const row = await this.options.appointments.byExternalId({ externalId: request.externalId });
    const { appointment, role, opensAt } = await this.eligibility(undefined, row, request, now);
    if (!appointment.sessionId || appointment.sessionStatus !== "ready") throw new SessionPending(appointment.id);
    if (needsExpirySync(this.options.provider, appointment)) throw new ExpiryOutOfDate(appointment);
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
      roomUrl: appointment.sessionRoomUrl,
      role,
      notBefore: opensAt.getTime(),
      expiresAt: appointment.closesAt.getTime(),
    };
  }

  /** The join answer of the user's live token whose value a remote provider answered again; undefined when it is not live. */
  private async sameLiveToken(request: JoinRequest, prepared: PreparedToken): Promise<JoinTokenResponse | undefined> {
    const stored = await this.options.tokens.byHash({ tokenHash: hashToken(prepared.token) });
    const live =
      stored !== undefined &&
      stored.revokedAt === null &&
      stored.userId === request.userId &&
      stored.externalId === request.externalId &&
      stored.sessionId === prepared.sessionId &&
      stored.expiresAt.getTime() === prepared.expiresAt;
    if (!live) return undefined;
    return {
      appointmentId: request.externalId,
      provider: this.options.provider.name,
      applicationId: this.options.provider.applicationId,
      sessionId: stored.sessionId,
      token: prepared.token,
      tokenId: stored.id,
      roomUrl: prepared.roomUrl,
      role: prepared.role,
      notBefore: stored.notBefore.toISOString(),
      expiresAt: stored.expiresAt.toISOString(),
    };
  }

  /**
   * BEGIN, the locks with the appointment row, the live tokens, the writes,
   * COMMIT: five round trips, each statement's snapshot taken after the locks
   * it depends on are held.
   */
  private commit(request: JoinRequest, budget: CallBudget, prepared: PreparedToken | undefined): Promise<JoinTokenResponse> {
    const { sql, provider, appointments, tokens } = this.options;
    return sql.transaction(async (tx) => {
      const locked = await appointments.lockForJoin({ tx, userId: request.userId, externalId: request.externalId });
      const now = this.options.now();
      const { appointment, role, opensAt } = await this.eligibility(tx, locked, request, now);
      const sessionId = appointment.sessionId;
      if (!sessionId || appointment.sessionStatus !== "ready") throw new SessionPending(appointment.id);
      if (needsExpirySync(provider, appointment)) throw new ExpiryOutOfDate(appointment);
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
      // Revokes the caller's other live tokens, stores the new one and audits both.
      await tokens.issue({
        tx,
        tokenId,
        userId: request.userId,
        role,
        tokenHash: hashToken(token),
        provider: provider.name,
        sessionId,
        appointmentId: appointment.id,
        externalId: request.externalId,
        notBefore: opensAt,
        expiresAt: appointment.closesAt,
        now,
        actor: `user:${request.userId}`,
        withEvents: locked?.subscribed === true,
      });

      return {
        appointmentId: request.externalId,
        provider: provider.name,
        applicationId: provider.applicationId,
        sessionId,
        token,
        tokenId,
        roomUrl: appointment.sessionRoomUrl,
        role,
        notBefore: opensAt.toISOString(),
        expiresAt: appointment.closesAt.toISOString(),
      };
    });
  }

  /**
   * The §3 checks (domain/join-rules.ts), around the read of the live tokens:
   * `appointment` is the row as read (under its row lock, in `tx`), and the
   * tokens are read in `tx` too, after the locks.
   */
  private async eligibility(
    tx: Queryable | undefined,
    appointment: AppointmentRow | undefined,
    request: JoinRequest,
    now: Date,
  ): Promise<Eligibility> {
    const admitted = checkWindow(appointment, request.userId, now);
    const live = await this.options.tokens.liveAround({ tx, userId: request.userId, appointmentId: admitted.appointment.id, now });
    checkHolders(admitted.appointment, request, live);
    return admitted;
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
