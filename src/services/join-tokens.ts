import { randomUUID } from "node:crypto";
import type { Sql } from "../db/sql.js";
import { checkJoinWindow } from "../domain/join-window.js";
import { AppError } from "../errors.js";
import { type CallBudget, ProviderUnavailableError, type VideoProvider } from "../providers/video-provider.js";
import type { AuditEntry } from "./audit.js";
import {
  APPOINTMENT_BY_EXTERNAL_ID,
  APPOINTMENT_FOR_UPDATE,
  type AppointmentRow,
  auditInsert,
  INSERT_TOKEN,
  LIVE_TOKENS_AROUND,
  LOCK_KEY,
  type LiveTokenRow,
  REVOKE_CALLER_TOKENS,
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
  /** The caller's other appointments with live tokens (superseded when the request goes on). */
  elsewhere: { appointmentId: string; externalId: string }[];
  /** The caller already holds a live token here (replaced when the request goes on). */
  holdsToken: boolean;
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
    const { appointment, role, opensAt } = await eligibility(this.options.sql, request, now, false);
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

  private commit(request: JoinRequest, budget: CallBudget, prepared: PreparedToken | undefined): Promise<IssuedJoinToken> {
    const { sql, provider } = this.options;
    return sql.transaction(async (tx) => {
        await tx.query(LOCK_KEY, [`user:${request.userId}`]);
        const now = this.options.now();
        const { appointment, role, opensAt, elsewhere, holdsToken } = await eligibility(tx, request, now, true);
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

        const actor = `user:${request.userId}`;
        const audit: AuditEntry[] = [];
        let replaced = 0;
        if (holdsToken || elsewhere.length > 0) {
          const revoked = await tx.query<{ appointmentId: string }>(REVOKE_CALLER_TOKENS, [
            request.userId,
            appointment.id,
            now,
          ]);
          replaced = revoked.filter((r) => r.appointmentId === appointment.id).length;
          for (const other of elsewhere) {
            const count = revoked.filter((r) => r.appointmentId === other.appointmentId).length;
            audit.push({
              externalId: other.externalId,
              actor,
              at: now,
              type: "token.revoked",
              outcome: "revoked",
              detail: { reason: "superseded", count, userId: request.userId, by: request.externalId },
            });
          }
          if (replaced > 0) {
            audit.push({
              externalId: request.externalId,
              actor,
              at: now,
              type: "token.revoked",
              outcome: "revoked",
              detail: { reason: "replaced", count: replaced, userId: request.userId },
            });
          }
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
        await tx.query(INSERT_TOKEN, [
          tokenId,
          appointment.id,
          request.userId,
          role,
          hashToken(token),
          provider.name,
          sessionId,
          now,
          opensAt,
          appointment.closesAt,
        ]);
        audit.push({
          externalId: request.externalId,
          actor,
          at: now,
          type: "token.issued",
          outcome: replaced > 0 ? "replaced_previous" : "issued",
          detail: { tokenId, userId: request.userId, role, expiresAt: appointment.closesAt.toISOString() },
        });
        await tx.query(...auditInsert(audit, now));

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
 * 403, 425, 410, then the two 409s of who holds tokens. With `lock`, the
 * appointment row stays locked until the transaction ends.
 */
async function eligibility(sql: Pick<Sql, "query">, request: JoinRequest, now: Date, lock: boolean): Promise<Eligibility> {
  const [appointment] = await sql.query<AppointmentRow>(lock ? APPOINTMENT_FOR_UPDATE : APPOINTMENT_BY_EXTERNAL_ID, [
    request.externalId,
  ]);
  const { role, opensAt } = checkJoinWindow(appointment ?? null, request.userId, now);
  if (!appointment) throw new Error("unreachable: checkJoinWindow refuses a missing appointment");

  const live = await sql.query<LiveTokenRow>(LIVE_TOKENS_AROUND, [request.userId, appointment.id, now]);
  const elsewhere = live.filter((t) => t.userId === request.userId && t.appointmentId !== appointment.id);
  const [firstOther] = elsewhere;
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
  return {
    appointment,
    role,
    opensAt,
    elsewhere: elsewhere.map((e) => ({ appointmentId: e.appointmentId, externalId: e.externalId })),
    holdsToken: live.some((t) => t.appointmentId === appointment.id && t.userId === request.userId),
  };
}
