import { randomUUID } from "node:crypto";
import type { PrismaClient } from "../db/database.js";
import { checkJoinWindow } from "../domain/join-window.js";
import { AppError } from "../errors.js";
import type { Appointment } from "../generated/prisma/client.js";
import { type CallBudget, ProviderUnavailableError, type VideoProvider } from "../providers/video-provider.js";
import { type AuditEntry, type Db, recordAudit } from "./audit.js";
import type { SessionService } from "./sessions.js";
import { hashToken, lockKey, revokeLiveTokens } from "./tokens-store.js";

export interface JoinTokenServiceOptions {
  prisma: PrismaClient;
  provider: VideoProvider;
  sessions: SessionService;
  now: () => Date;
  /** API.md §3: a join token is answered within 15 s; provider calls get what is left of this. */
  budgetMs: number;
  transactionTimeoutMs: number;
  acquireTimeoutMs: number;
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
  appointment: Appointment;
  role: "moderator" | "participant";
  opensAt: Date;
  /** The caller's other appointments with live tokens (superseded when the request goes on). */
  elsewhere: { appointmentId: string; externalId: string }[];
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
    const { appointment, role, opensAt } = await eligibility(this.options.prisma, request, now);
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
    const { prisma, provider } = this.options;
    return prisma.$transaction(
      async (tx) => {
        await lockKey(tx, `user:${request.userId}`);
        await tx.$queryRaw`SELECT id FROM appointments WHERE external_id = ${request.externalId} FOR UPDATE`;
        const now = this.options.now();
        const { appointment, role, opensAt, elsewhere } = await eligibility(tx, request, now);
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
        for (const other of elsewhere) {
          const count = await revokeLiveTokens(tx, { appointmentId: other.appointmentId, userId: request.userId }, "superseded", now);
          audit.push({
            externalId: other.externalId,
            actor,
            at: now,
            type: "token.revoked",
            outcome: "revoked",
            detail: { reason: "superseded", count, userId: request.userId, by: request.externalId },
          });
        }
        const replaced = await revokeLiveTokens(tx, { appointmentId: appointment.id, userId: request.userId }, "replaced", now);
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
        await tx.joinToken.create({
          data: {
            id: tokenId,
            appointmentId: appointment.id,
            userId: request.userId,
            role,
            tokenHash: hashToken(token),
            provider: provider.name,
            sessionId,
            issuedAt: now,
            notBefore: opensAt,
            expiresAt: appointment.closesAt,
          },
        });
        audit.push({
          externalId: request.externalId,
          actor,
          at: now,
          type: "token.issued",
          outcome: replaced > 0 ? "replaced_previous" : "issued",
          detail: { tokenId, userId: request.userId, role, expiresAt: appointment.closesAt.toISOString() },
        });
        await recordAudit(tx, audit);

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
      },
      { timeout: this.options.transactionTimeoutMs, maxWait: this.options.acquireTimeoutMs },
    );
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

/** The §3 checks after authentication and validation, in order: 404, 409, 403, 425, 410, then the two 409s of who holds tokens. */
async function eligibility(db: Db, request: JoinRequest, now: Date): Promise<Eligibility> {
  const appointment = await db.appointment.findUnique({ where: { externalId: request.externalId } });
  const { role, opensAt } = checkJoinWindow(appointment, request.userId, now);
  if (!appointment) throw new Error("unreachable: checkJoinWindow refuses a missing appointment");

  const live = { revokedAt: null, expiresAt: { gt: now } };
  const elsewhere = await db.joinToken.findMany({
    where: { userId: request.userId, appointmentId: { not: appointment.id }, ...live },
    select: { appointmentId: true, appointment: { select: { externalId: true } } },
    distinct: ["appointmentId"],
  });
  const [firstOther] = elsewhere;
  if (firstOther && !request.supersede) {
    throw new AppError(
      409,
      "active_elsewhere",
      "Conflict",
      "You hold a live join token for another appointment; join with supersede: true to leave it.",
      { otherAppointmentId: firstOther.appointment.externalId },
    );
  }

  const others = await db.joinToken.findMany({
    where: { appointmentId: appointment.id, userId: { not: request.userId }, ...live },
    select: { userId: true },
    distinct: ["userId"],
  });
  if (others.length + 1 > appointment.maxParticipants) {
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
    elsewhere: elsewhere.map((e) => ({ appointmentId: e.appointmentId, externalId: e.appointment.externalId })),
  };
}
