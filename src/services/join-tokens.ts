import { randomUUID } from "node:crypto";
import type { PrismaClient } from "../db/database.js";
import { checkJoinWindow } from "../domain/join-window.js";
import { AppError } from "../errors.js";
import { ProviderUnavailableError, type VideoProvider } from "../providers/video-provider.js";
import { type AuditEntry, recordAudit } from "./audit.js";
import { hashToken, lockKey, revokeLiveTokens } from "./tokens-store.js";

export interface JoinTokenServiceOptions {
  prisma: PrismaClient;
  provider: VideoProvider;
  now: () => Date;
  /** API.md §3: a join token is answered within 15 s. */
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

export class JoinTokenService {
  constructor(private readonly options: JoinTokenServiceOptions) {}

  /**
   * API.md §3, checks in the contract's order; nothing is written unless all
   * pass. Two locks make the guarantees hold under concurrent requests and
   * across replicas: an advisory lock on the user (one live appointment and
   * one live token per user) and the appointment row (participant cap).
   */
  async issue(request: { externalId: string; userId: string; supersede: boolean }): Promise<IssuedJoinToken> {
    const { prisma, provider } = this.options;
    return prisma.$transaction(
      async (tx) => {
        await lockKey(tx, `user:${request.userId}`);
        await tx.$queryRaw`SELECT id FROM appointments WHERE external_id = ${request.externalId} FOR UPDATE`;
        const appointment = await tx.appointment.findUnique({ where: { externalId: request.externalId } });
        const now = this.options.now();
        const { role, opensAt } = checkJoinWindow(appointment, request.userId, now);
        if (!appointment) throw new Error("unreachable: checkJoinWindow refuses a missing appointment");

        const live = { revokedAt: null, expiresAt: { gt: now } };
        const elsewhere = await tx.joinToken.findMany({
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

        const others = await tx.joinToken.findMany({
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
        if (!appointment.sessionId || appointment.sessionStatus !== "ready") {
          throw providerUnavailable("The video session is not ready yet.");
        }

        const actor = `user:${request.userId}`;
        const audit: AuditEntry[] = [];
        for (const other of elsewhere) {
          const count = await revokeLiveTokens(tx, { appointmentId: other.appointmentId, userId: request.userId }, "superseded", now);
          audit.push({
            externalId: other.appointment.externalId,
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

        const tokenId = randomUUID();
        let token: string;
        try {
          ({ token } = await provider.issueToken({
            sessionId: appointment.sessionId,
            userId: request.userId,
            role,
            tokenId,
            issuedAt: now,
            notBefore: opensAt,
            expiresAt: appointment.closesAt,
          }));
        } catch (error) {
          if (error instanceof ProviderUnavailableError) {
            throw providerUnavailable("The video provider could not issue a token.", error.retryAfterSeconds);
          }
          throw error;
        }
        await tx.joinToken.create({
          data: {
            id: tokenId,
            appointmentId: appointment.id,
            userId: request.userId,
            role,
            tokenHash: hashToken(token),
            provider: provider.name,
            sessionId: appointment.sessionId,
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
          sessionId: appointment.sessionId,
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
}
