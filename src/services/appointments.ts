import { randomUUID } from "node:crypto";
import type { PrismaClient } from "../db/database.js";
import type { Sql } from "../db/sql.js";
import { canonicalTimeZone, resolveAppointmentTimes } from "../domain/appointment-times.js";
import { type JoinPolicy, joinWindowFor } from "../domain/join-window.js";
import { invalidRequest, notFound } from "../errors.js";
import type { Appointment, Prisma } from "../generated/prisma/client.js";
import type { AppointmentView, WebhookEvent } from "../http/schemas/appointments.js";
import type { VideoProvider } from "../providers/video-provider.js";
import { type AuditEntry, type AuditPage, readAudit } from "./audit.js";
import { appointmentView } from "./appointment-view.js";
import {
  APPOINTMENT_FOR_UPDATE,
  type AppointmentRow,
  auditColumns,
  auditInsert,
  LOCK_KEY,
  SET_ACCESS_BLOCKED,
  CANCEL_APPOINTMENT,
  DELETE_TOMBSTONE,
  FINISH_DELIVERY,
  INSERT_APPOINTMENT_AND_FINISH,
  insertValues,
  LOCK_DELIVERY_AND_APPOINTMENT,
  REPLACE_APPOINTMENT,
  REVOKE_APPOINTMENT_TOKENS,
  type ScheduleFields,
  SET_REVISION,
  scheduleValues,
  readStoredState,
  type StoredState,
  UPSERT_TOMBSTONE,
} from "./queries.js";
import type { SessionService } from "./sessions.js";

/**
 * Serialises every change of one appointment and returns it: the advisory
 * lock covers an externalId that has no row yet (creation, tombstones), the
 * row lock is the one a join-token transaction holds, so a revocation cannot
 * miss a token being issued at the same moment.
 */
async function lockAppointment(tx: SqlQuery, externalId: string): Promise<AppointmentRow | undefined> {
  await tx.query(LOCK_KEY, [`appointment:${externalId}`]);
  const [row] = await tx.query<AppointmentRow>(APPOINTMENT_FOR_UPDATE, [externalId]);
  return row;
}

export interface AppointmentServiceOptions {
  prisma: PrismaClient;
  sql: Sql;
  provider: VideoProvider;
  sessions: SessionService;
  /** Time a webhook may spend on an inline session attempt (inside the 10 s answer bound). */
  sessionBudgetMs: number;
  /** How long a new appointment's session is reserved for the webhook's own attempt. */
  sessionLeaseMs: number;
  policy: JoinPolicy;
  now: () => Date;
}

export interface WebhookOutcome {
  /** 200 applied or ignored, 202 stored with the provider session still pending. */
  status: 200 | 202;
  body: { applied: boolean; appointment?: AppointmentView };
  /** A redelivery answered from the stored first result. */
  replayed: boolean;
  /** For metrics: applied, ignored or tombstone. */
  outcome: "applied" | "ignored" | "tombstone";
}

type ScheduledData = WebhookEvent["data"];

const DEFAULT_SETTINGS = { maxParticipants: 2, waitingRoom: true, recording: false };

/** API.md §1: an event older than or equal to what is stored is acknowledged and ignored, when both carry a revision. */
const isStale = (stored: number | null | undefined, incoming: number | null | undefined) =>
  typeof stored === "number" && typeof incoming === "number" && incoming <= stored;

/** The highest revision known wins, so an unrevisioned event cannot reopen the door to older revisions. */
const newestRevision = (stored: number | null | undefined, incoming: number | null | undefined) =>
  typeof incoming !== "number" ? (stored ?? null) : typeof stored !== "number" ? incoming : Math.max(stored, incoming);


export class AppointmentService {
  constructor(private readonly options: AppointmentServiceOptions) {}

  private get prisma() {
    return this.options.prisma;
  }

  /**
   * Applies one scheduling webhook exactly once. The transaction first takes
   * an advisory lock on the webhook-id: a concurrent redelivery waits there
   * until this one commits, then reads the answer stored with it, so ten
   * simultaneous deliveries have one effect, on every replica. The delivery
   * row is written once, with its answer, by the transaction's last statement.
   * A failure rolls everything back, so a redelivery simply tries again.
   */
  async applyWebhook(webhookId: string, event: WebhookEvent): Promise<WebhookOutcome> {
    const started = Date.now();
    // Pure checks first: a malformed event changes nothing and is not remembered.
    const scheduled = event.type === "appointment.scheduled" ? prepareScheduled(event.data) : undefined;
    const { externalId } = event.data;

    const step = await this.options.sql.transaction(async (tx): Promise<WebhookStep> => {
      await tx.query(LOCK_DELIVERY_AND_APPOINTMENT, [`webhook:${webhookId}`, `appointment:${externalId}`]);
      const state = await readStoredState(tx, webhookId, externalId);
      if (state.delivery) {
        const stored = state.delivery;
        return stored.responseStatus === IN_PROGRESS ? { kind: "in_progress" } : { kind: "done", outcome: replayed(stored) };
      }

      const now = this.options.now();
      const result = scheduled
        ? await this.schedule(tx, webhookId, event.data, scheduled, state, now)
        : await this.cancel(tx, webhookId, event.data, state, now);

      // The answer of a remote session creation is only known after this commit;
      // until then a redelivery waits for it (see awaitAnswer).
      const answer = result.sessionToCreate ? { status: IN_PROGRESS, body: { applied: true } } : result;
      const finish = [
        ...auditColumns(result.audit, now),
        webhookId,
        event.type,
        externalId,
        answer.status,
        JSON.stringify(answer.body),
      ];
      if (result.insert) {
        await tx.query(INSERT_APPOINTMENT_AND_FINISH, [...finish, ...insertValues(result.insert, now)]);
      } else {
        await tx.query(FINISH_DELIVERY, finish);
      }
      return result.sessionToCreate
        ? { kind: "create_session", appointment: result.sessionToCreate }
        : { kind: "done", outcome: { status: result.status, body: result.body, outcome: result.outcome, replayed: false } };
    });

    switch (step.kind) {
      case "done":
        return step.outcome;
      case "in_progress":
        return this.awaitAnswer(webhookId, started);
      case "create_session":
        // Outside the transaction: a slow provider holds no lock and no connection.
        await this.options.sessions.attempt(step.appointment, { deadline: started + this.options.sessionBudgetMs });
        return { ...(await this.finishDelivery(webhookId, step.appointment.externalId)), replayed: false, outcome: "applied" };
    }
  }

  /** Stores the answer of a delivery whose session attempt has ended (or whose processor died). */
  private async finishDelivery(webhookId: string, externalId: string): Promise<Pick<WebhookOutcome, "status" | "body">> {
    const row = await this.prisma.appointment.findUniqueOrThrow({ where: { externalId } });
    const stored = await this.prisma.webhookDelivery.findUniqueOrThrow({ where: { webhookId } });
    const applied = (stored.responseBody as { applied?: boolean }).applied ?? true;
    const answer = { status: statusOf(row), body: { applied, appointment: appointmentView(row) } } as const;
    const { count } = await this.prisma.webhookDelivery.updateMany({
      where: { webhookId, responseStatus: IN_PROGRESS },
      data: { responseStatus: answer.status, responseBody: answer.body as Prisma.InputJsonValue },
    });
    if (count === 1) return answer;
    // Someone else finished it first: theirs is the answer.
    const final = await this.prisma.webhookDelivery.findUniqueOrThrow({ where: { webhookId } });
    return { status: final.responseStatus as 200 | 202, body: final.responseBody as WebhookOutcome["body"] };
  }

  /**
   * A redelivery that arrives while the first is still creating the session
   * waits for its answer (API.md §1: never a 409). If the first never
   * finishes (its process died), the answer is made from what is stored.
   */
  private async awaitAnswer(webhookId: string, started: number): Promise<WebhookOutcome> {
    const giveUpAt = started + this.options.sessionBudgetMs + 500;
    for (;;) {
      const stored = await this.prisma.webhookDelivery.findUniqueOrThrow({ where: { webhookId } });
      if (stored.responseStatus !== IN_PROGRESS) return replayed(stored);
      if (Date.now() >= giveUpAt) {
        return { ...(await this.finishDelivery(webhookId, stored.externalId ?? "")), replayed: true, outcome: "ignored" };
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  private async schedule(
    tx: SqlQuery,
    webhookId: string,
    data: ScheduledData,
    prepared: PreparedSchedule,
    { appointment: existing, tombstone }: StoredState,
    now: Date,
  ): Promise<ScheduleResult> {
    const { externalId } = data;
    const revision = data.revision ?? null;
    const base = { externalId, actor: "scheduler", at: now };

    if (existing && isStale(existing.revision, revision)) {
      return {
        status: statusOf(existing),
        body: { applied: false, appointment: appointmentView(existing) },
        outcome: "ignored",
        audit: [
          {
            ...base,
            type: "webhook.ignored",
            outcome: "stale_revision",
            detail: { webhookId, event: "appointment.scheduled", revision, storedRevision: existing.revision },
          },
        ],
      };
    }
    let tombstoneRevision: number | null = null;
    if (!existing) {
      if (tombstone && isStale(tombstone.revision, revision)) {
        return {
          status: 200,
          body: { applied: false },
          outcome: "ignored",
          audit: [
            {
              ...base,
              type: "webhook.ignored",
              outcome: "cancelled_earlier",
              detail: { webhookId, event: "appointment.scheduled", revision, cancelledRevision: tombstone.revision },
            },
          ],
        };
      }
      if (tombstone) {
        await tx.query(DELETE_TOMBSTONE, [externalId]);
        tombstoneRevision = tombstone.revision;
      }
    }

    const fields: ScheduleFields = {
      status: "scheduled",
      revision: newestRevision(existing ? existing.revision : tombstoneRevision, revision),
      startsAt: prepared.times.startsAt,
      endsAt: prepared.times.endsAt,
      timeZone: data.timeZone ? canonicalTimeZone(data.timeZone) : null,
      agentId: prepared.agent.id,
      agentName: prepared.agent.name ?? null,
      customerId: prepared.customer.id,
      customerName: prepared.customer.name ?? null,
      ...prepared.settings,
      ...joinWindowFor(prepared.times, this.options.policy),
      cancelledAt: null,
    };
    const applied = { webhookId, event: "appointment.scheduled", revision };

    if (!existing) {
      const provider = this.options.provider;
      // A remote provider's session is created after the commit, under the lease taken here.
      const session = provider.remote.sessions
        ? {
            sessionId: null,
            status: "pending" as const,
            nextAttemptAt: now,
            lastError: null,
            claimedUntil: new Date(now.getTime() + this.options.sessionLeaseMs),
            audit: [] as AuditEntry[],
          }
        : await this.createLocalSession(externalId, prepared.settings, now);
      const row: AppointmentRow = {
        ...fields,
        id: randomUUID(),
        externalId,
        provider: provider.name,
        sessionId: session.sessionId,
        sessionStatus: session.status,
        sessionAttempts: provider.remote.sessions ? 0 : 1,
        sessionNextAttemptAt: session.nextAttemptAt,
        sessionLastError: session.lastError,
        sessionClaimedUntil: session.claimedUntil,
        accessBlocked: false,
        createdAt: now,
        updatedAt: now,
      };
      const audit = [{ ...base, type: "webhook.applied" as const, outcome: "created", detail: applied }, ...session.audit];
      // Written by applyWebhook together with the audit entries and the stored answer: one round trip.
      const answer = { status: statusOf(row), body: { applied: true, appointment: appointmentView(row) }, outcome: "applied" as const, audit, insert: row };
      return provider.remote.sessions ? { ...answer, sessionToCreate: row } : answer;
    }

    const changes = describeChanges(existing, fields);
    const revoke = (reason: string, userId: string | null) =>
      tx.query<{ id: string }>(REVOKE_APPOINTMENT_TOKENS, [existing.id, now, reason, userId]).then((rows) => rows.length);
    // Replaced participants lose their tokens as reassigned; whoever is left loses theirs if the time moved.
    const revoked = {
      reassigned:
        (changes.includes("agent") ? await revoke("reassigned", existing.agentId) : 0) +
        (changes.includes("customer") ? await revoke("reassigned", existing.customerId) : 0),
      rescheduled: changes.includes("times") ? await revoke("rescheduled", null) : 0,
    };
    const [row] = await tx.query<AppointmentRow>(REPLACE_APPOINTMENT, [...scheduleValues(fields, now), existing.id]);
    if (!row) throw new Error("UPDATE … RETURNING returned no row");
    const audit: AuditEntry[] = [
      {
        ...base,
        type: "webhook.applied",
        outcome: existing.status === "cancelled" ? "rebooked" : "updated",
        detail: { ...applied, changes },
      },
    ];
    for (const [reason, count] of Object.entries(revoked)) {
      if (count > 0) audit.push({ ...base, actor: "system", type: "token.revoked", outcome: "revoked", detail: { reason, count } });
    }
    return { status: statusOf(row), body: { applied: true, appointment: appointmentView(row) }, outcome: "applied", audit };
  }

  private async cancel(
    tx: SqlQuery,
    webhookId: string,
    data: ScheduledData,
    { appointment: existing, tombstone }: StoredState,
    now: Date,
  ): Promise<ScheduleResult> {
    const { externalId } = data;
    const revision = data.revision ?? null;
    const base = { externalId, actor: "scheduler", at: now };
    const detail = { webhookId, event: "appointment.cancelled", revision };

    if (!existing) {
      if (tombstone && isStale(tombstone.revision, revision)) {
        return {
          status: 200,
          body: { applied: false },
          outcome: "ignored",
          audit: [{ ...base, type: "webhook.ignored", outcome: "stale_revision", detail }],
        };
      }
      // A tombstone, so that an older `scheduled` event arriving later cannot resurrect the appointment.
      await tx.query(UPSERT_TOMBSTONE, [externalId, newestRevision(tombstone?.revision, revision), now]);
      return {
        status: 200,
        body: { applied: false },
        outcome: "tombstone",
        audit: [{ ...base, type: "webhook.ignored", outcome: "unknown_appointment", detail }],
      };
    }

    if (isStale(existing.revision, revision) || existing.status === "cancelled") {
      let row = existing;
      if (existing.status === "cancelled" && !isStale(existing.revision, revision)) {
        [row = existing] = await tx.query<AppointmentRow>(SET_REVISION, [
          existing.id,
          newestRevision(existing.revision, revision),
          now,
        ]);
      }
      return {
        status: statusOf(row),
        body: { applied: false, appointment: appointmentView(row) },
        outcome: "ignored",
        audit: [
          {
            ...base,
            type: "webhook.ignored",
            outcome: existing.status === "cancelled" ? "already_cancelled" : "stale_revision",
            detail,
          },
        ],
      };
    }

    const revoked = await tx.query<{ id: string }>(REVOKE_APPOINTMENT_TOKENS, [existing.id, now, "cancelled", null]);
    const [row] = await tx.query<AppointmentRow>(CANCEL_APPOINTMENT, [existing.id, now, newestRevision(existing.revision, revision)]);
    if (!row) throw new Error("UPDATE … RETURNING returned no row");
    const audit: AuditEntry[] = [{ ...base, type: "webhook.applied", outcome: "cancelled", detail }];
    if (revoked.length > 0) {
      audit.push({ ...base, actor: "system", type: "token.revoked", outcome: "revoked", detail: { reason: "cancelled", count: revoked.length } });
    }
    return { status: statusOf(row), body: { applied: true, appointment: appointmentView(row) }, outcome: "applied", audit };
  }

  /** A session of a provider that makes them in-process (no network), inside the webhook's transaction. */
  private async createLocalSession(externalId: string, settings: PreparedSchedule["settings"], now: Date) {
    const provider = this.options.provider;
    const { sessionId } = await provider.createSession(
      { externalId, settings },
      { deadline: Date.now() + this.options.sessionBudgetMs },
    );
    return {
      sessionId,
      status: "ready" as const,
      nextAttemptAt: null,
      lastError: null,
      claimedUntil: null,
      audit: [
        {
          externalId,
          actor: "system",
          at: now,
          type: "session.created" as const,
          outcome: "ready",
          detail: { provider: provider.name, sessionId },
        },
      ],
    };
  }

  /** API.md §2: the appointment's agent or customer, or a caller with scope appointments:read; 404 to anyone else. */
  async read(externalId: string, caller: { userId: string; canReadAny: boolean }): Promise<AppointmentView> {
    const row = await this.prisma.appointment.findUnique({ where: { externalId } });
    if (!row || (!caller.canReadAny && row.agentId !== caller.userId && row.customerId !== caller.userId)) {
      throw notFound("No such appointment.");
    }
    return appointmentView(row);
  }

  /** API.md §5 kill switch: revokes every live token; with `block`, no new token until unblocked. */
  async revokeAll(
    externalId: string,
    request: { reason?: string; block?: boolean },
    actor: string,
  ): Promise<{ revoked: number; appointment: AppointmentView }> {
    return this.options.sql.transaction(async (tx) => {
      const existing = await lockAppointment(tx, externalId);
      if (!existing) throw notFound("No such appointment.");
      const now = this.options.now();
      const block = request.block === true;
      const revocationReason = block ? "blocked" : "operator";
      const revoked = (await tx.query(REVOKE_APPOINTMENT_TOKENS, [existing.id, now, revocationReason, null])).length;
      const [row = existing] = block ? await tx.query<AppointmentRow>(SET_ACCESS_BLOCKED, [existing.id, true, now]) : [];
      const reason = request.reason ?? null;
      const audit: AuditEntry[] = [
        { externalId, actor, at: now, type: "token.revoked", outcome: "revoked", detail: { reason, revocationReason, count: revoked } },
      ];
      if (block) audit.push({ externalId, actor, at: now, type: "appointment.blocked", outcome: "blocked", detail: { reason } });
      await tx.query(...auditInsert(audit, now));
      return { revoked, appointment: appointmentView(row) };
    });
  }

  async unblock(externalId: string, actor: string): Promise<{ appointment: AppointmentView }> {
    return this.options.sql.transaction(async (tx) => {
      const existing = await lockAppointment(tx, externalId);
      if (!existing) throw notFound("No such appointment.");
      const now = this.options.now();
      const [row = existing] = await tx.query<AppointmentRow>(SET_ACCESS_BLOCKED, [existing.id, false, now]);
      const outcome = existing.accessBlocked ? "unblocked" : "was_not_blocked";
      await tx.query(...auditInsert([{ externalId, actor, at: now, type: "appointment.unblocked", outcome }], now));
      return { appointment: appointmentView(row) };
    });
  }

  /** API.md §6, oldest first. Known for an appointment or a recorded cancellation of an unknown id. */
  async events(externalId: string, after: bigint | undefined, limit: number): Promise<AuditPage> {
    const [appointment, tombstone] = await Promise.all([
      this.prisma.appointment.findUnique({ where: { externalId }, select: { id: true } }),
      this.prisma.cancellationTombstone.findUnique({ where: { externalId }, select: { externalId: true } }),
    ]);
    if (!appointment && !tombstone) throw notFound("No such appointment.");
    return readAudit(this.prisma, externalId, after, limit);
  }
}

const statusOf = (row: Pick<Appointment, "sessionStatus">): 200 | 202 => (row.sessionStatus === "pending" ? 202 : 200);

/** response_status of a delivery whose answer is not known yet. */
const IN_PROGRESS = 0;

type ScheduleResult = Omit<WebhookOutcome, "replayed"> & {
  audit: AuditEntry[];
  /** A new appointment, inserted with the audit entries and the stored answer. */
  insert?: AppointmentRow;
  sessionToCreate?: Appointment;
};

type SqlQuery = Pick<Sql, "query">;

type WebhookStep =
  | { kind: "done"; outcome: WebhookOutcome }
  | { kind: "in_progress" }
  | { kind: "create_session"; appointment: Appointment };

const replayed = (stored: { responseStatus: number; responseBody: unknown }): WebhookOutcome => ({
  status: stored.responseStatus as 200 | 202,
  body: stored.responseBody as WebhookOutcome["body"],
  replayed: true,
  outcome: "ignored",
});

interface PreparedSchedule {
  times: { startsAt: Date; endsAt: Date };
  agent: { id: string; name?: string | null };
  customer: { id: string; name?: string | null };
  settings: typeof DEFAULT_SETTINGS;
}

/** `appointment.scheduled` needs times and both participants; reported by path like schema errors. */
function prepareScheduled(data: ScheduledData): PreparedSchedule {
  const missing = (["startsAt", "endsAt", "agent", "customer"] as const).filter((field) => data[field] === undefined);
  if (missing.length > 0) {
    throw invalidRequest(
      "An appointment.scheduled event needs startsAt, endsAt, agent and customer.",
      missing.map((field) => ({ path: `/data/${field}`, message: "is required" })),
    );
  }
  const { startsAt, endsAt, agent, customer } = data as Required<Pick<ScheduledData, "startsAt" | "endsAt" | "agent" | "customer">>;
  if (agent.id === customer.id) {
    throw invalidRequest("The agent and the customer must be different users.", [
      { path: "/data/customer/id", message: "must differ from /data/agent/id" },
    ]);
  }
  return {
    times: resolveAppointmentTimes({ startsAt, endsAt, timeZone: data.timeZone }),
    agent,
    customer,
    // Only the three known settings: anything else a scheduler sends is ignored (API.md §1).
    settings: {
      maxParticipants: data.settings?.maxParticipants ?? DEFAULT_SETTINGS.maxParticipants,
      waitingRoom: data.settings?.waitingRoom ?? DEFAULT_SETTINGS.waitingRoom,
      recording: data.settings?.recording ?? DEFAULT_SETTINGS.recording,
    },
  };
}

function describeChanges(existing: Appointment, next: Pick<Appointment, "startsAt" | "endsAt" | "agentId" | "customerId">) {
  const changes: ("times" | "agent" | "customer")[] = [];
  if (existing.startsAt.getTime() !== next.startsAt.getTime() || existing.endsAt.getTime() !== next.endsAt.getTime()) {
    changes.push("times");
  }
  if (existing.agentId !== next.agentId) changes.push("agent");
  if (existing.customerId !== next.customerId) changes.push("customer");
  return changes;
}
