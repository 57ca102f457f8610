import type { AuditRepository } from "../db/repositories/audit.js";
import type { EjectionsRepository } from "../db/repositories/ejections.js";
import type { OutboxRepository } from "../db/repositories/outbox.js";
import type { PresenceRepository, PresenceToken } from "../db/repositories/presence.js";
import type { Sql } from "../db/sql.js";
import { AppError } from "../domain/errors.js";
import type { ParticipantRole } from "../domain/join-window.js";
import { applyPresence, type PresenceState } from "../domain/presence.js";
import { hashToken } from "../domain/token-hash.js";
import type { PresenceReport, VideoProvider } from "../providers/video-provider.js";

export interface PresenceServiceOptions {
  sql: Pick<Sql, "transaction">;
  presence: PresenceRepository;
  audit: Pick<AuditRepository, "record">;
  outbox: Pick<OutboxRepository, "record">;
  /** With a provider that can eject: someone a provider reports in the room without a live token is removed. */
  ejections?: Pick<EjectionsRepository, "enqueue"> | undefined;
  provider: Pick<VideoProvider, "name" | "identityOf">;
  now: () => Date;
}

/** One participant's report, resolved to its appointment. */
interface Resolved {
  appointmentId: string;
  userId: string;
  role: ParticipantRole;
  state: PresenceState;
  at: Date;
  /** `gateway` or the provider's name: the `via` of the events. */
  via: string;
  actor: string;
  tokenId: string | null;
  connectionId?: string | undefined;
  sessionId?: string | undefined;
}

export interface GatewayPresenceAnswer {
  appointmentId: string;
  userId: string;
  role: ParticipantRole;
  state: PresenceState;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Why a token is not active, as introspection says it (API.md §4); null when it is. */
function inactiveReason(token: PresenceToken | undefined, now: Date): "unknown" | "revoked" | "expired" | "not_yet_valid" | null {
  if (!token) return "unknown";
  if (token.revokedAt) return "revoked";
  if (now.getTime() >= token.expiresAt.getTime()) return "expired";
  if (now.getTime() < token.notBefore.getTime()) return "not_yet_valid";
  return null;
}

/**
 * Presence (API.md §10), from a video gateway (the `local` provider's) or
 * from the provider's callbacks: stored on the appointment by the source's
 * own event time (redeliveries and reordering never move it backwards),
 * audited and emitted as `participant.joined` / `participant.left`, in one
 * transaction under the appointment's row lock.
 */
export class PresenceService {
  constructor(private readonly options: PresenceServiceOptions) {}

  /**
   * A gateway's report, naming the participant by token. `joined` for a token
   * that is not active is 409 `token_inactive` (the gateway must not admit
   * them); `left` is taken for any token this service issued.
   */
  async fromGateway(
    report: { token?: string | undefined; tokenId?: string | undefined; state: PresenceState },
    actor: string,
  ): Promise<GatewayPresenceAnswer> {
    const { presence } = this.options;
    const now = this.options.now();
    const token =
      report.token !== undefined
        ? await presence.token({ tokenHash: hashToken(report.token) })
        : report.tokenId !== undefined && UUID.test(report.tokenId)
          ? await presence.token({ id: report.tokenId })
          : undefined;
    const inactive = inactiveReason(token, now);
    if (!token || (inactive && report.state === "joined")) {
      const reason = inactive ?? "unknown";
      throw new AppError("token_inactive", `The token is not active (${reason}): do not admit its holder.`, { reason });
    }
    // A holder the appointment no longer has (reassigned) is not its presence: their `left` is taken and changes nothing.
    const role = token.userId === token.agentId ? "moderator" : token.userId === token.customerId ? "participant" : undefined;
    if (!role) return { appointmentId: token.externalId, userId: token.userId, role: token.role, state: report.state };
    await this.apply({
      appointmentId: token.appointmentId,
      userId: token.userId,
      role,
      state: report.state,
      at: now,
      via: "gateway",
      actor,
      tokenId: token.id,
    });
    return { appointmentId: token.externalId, userId: token.userId, role: token.role, state: report.state };
  }

  /**
   * A provider callback's reports (already authenticated by the adapter).
   * Reports for a session, user or token this service does not know are
   * acknowledged and ignored; returns how many were taken.
   */
  async fromProvider(reports: readonly PresenceReport[]): Promise<{ taken: number; ignored: number }> {
    let taken = 0;
    for (const report of reports) {
      const resolved = await this.resolve(report);
      if (!resolved) continue;
      await this.apply(resolved);
      taken++;
    }
    return { taken, ignored: reports.length - taken };
  }

  private async resolve(report: PresenceReport): Promise<Resolved | undefined> {
    const { presence, provider } = this.options;
    const appointment = await presence.bySession({ provider: provider.name, sessionId: report.sessionId });
    if (!appointment) return undefined;
    let userId = report.userId;
    let tokenId: string | null = null;
    if (report.tokenId !== undefined) {
      const token = UUID.test(report.tokenId) ? await presence.token({ id: report.tokenId }) : undefined;
      if (!token || token.appointmentId !== appointment.id) return undefined;
      userId = token.userId;
      tokenId = token.id;
    }
    // The provider may know users by an id of its own (Daily's user_id is at most 36 characters).
    const identity = (id: string) => (tokenId === null && provider.identityOf ? provider.identityOf(id) : id);
    const role: ParticipantRole | undefined =
      userId === identity(appointment.agentId) ? "moderator" : userId === identity(appointment.customerId) ? "participant" : undefined;
    if (!userId || !role) return undefined;
    return {
      appointmentId: appointment.id,
      userId: role === "moderator" ? appointment.agentId : appointment.customerId,
      role,
      state: report.state,
      at: report.at,
      via: provider.name,
      actor: `provider:${provider.name}`,
      tokenId,
      connectionId: report.connectionId,
      sessionId: report.sessionId,
    };
  }

  private async apply(report: Resolved): Promise<void> {
    const { presence, audit, outbox, provider, ejections } = this.options;
    const now = this.options.now();
    await this.options.sql.transaction(async (tx) => {
      const locked = await presence.lock({ tx, appointmentId: report.appointmentId, role: report.role });
      if (!locked) return;
      // One connection of several closing (a second tab, a reconnect) is not the participant leaving.
      if (report.connectionId !== undefined && report.sessionId !== undefined) {
        const otherOpen = await presence.recordConnection({
          tx,
          connection: {
            provider: provider.name,
            connectionId: report.connectionId,
            appointmentId: report.appointmentId,
            sessionId: report.sessionId,
            tokenId: report.tokenId,
            userId: report.userId,
            role: report.role,
            joined: report.state === "joined",
            at: report.at,
          },
          now,
        });
        if (report.state === "left" && otherOpen) return;
      }
      const outcome = applyPresence(locked.presence, report);
      if (outcome.kind === "stale") return;
      await presence.store({ tx, appointmentId: report.appointmentId, role: report.role, presence: outcome.next });
      if (outcome.kind !== "changed") return;
      const type = report.state === "joined" ? "participant.joined" : "participant.left";
      await audit.record({
        tx,
        now,
        entries: [
          {
            externalId: locked.externalId,
            type,
            actor: report.actor,
            outcome: report.state === "joined" ? "present" : "absent",
            detail: {
              userId: report.userId,
              role: report.role,
              via: report.via,
              reportedAt: report.at.toISOString(),
              ...(report.tokenId ? { tokenId: report.tokenId } : {}),
              ...(report.connectionId ? { connectionId: report.connectionId } : {}),
            },
          },
        ],
      });
      await outbox.record({
        tx,
        now,
        events: [{ type, externalId: locked.externalId, at: report.at, data: { userId: report.userId, role: report.role, via: report.via } }],
      });
    });
    // Someone the provider let in without a live token (a revoked one is still valid at the provider until it expires).
    if (ejections && report.via !== "gateway" && report.state === "joined") {
      const holds = await presence.holdsLiveToken({ appointmentId: report.appointmentId, userId: report.userId, now });
      if (!holds) await ejections.enqueue({ appointmentIds: [report.appointmentId], reason: "no_live_token", userId: report.userId, now });
    }
  }
}
