import type { AppointmentRow } from "../db/repositories/appointment-rows.js";
import type { AppointmentsRepository } from "../db/repositories/appointments.js";
import type { StoredAnswer, WebhookDeliveriesRepository } from "../db/repositories/webhook-deliveries.js";
import type { Sql } from "../db/sql.js";
import type { AppointmentEvent } from "../domain/appointment-event.js";
import type { AppointmentLifecycle, LifecycleResult } from "./appointment-lifecycle.js";
import { statusOf } from "./appointment-lifecycle.js";
import { appointmentView } from "./appointment-view.js";
import type { SessionService } from "./sessions.js";

export interface WebhookOutcome {
  status: 200 | 202;
  body: LifecycleResult["body"];
  /** A redelivery answered from the stored first result. */
  replayed: boolean;
  /** For metrics. */
  outcome: LifecycleResult["outcome"];
}

export interface WebhookDeliveryServiceOptions {
  sql: Pick<Sql, "transaction">;
  deliveries: WebhookDeliveriesRepository;
  appointments: Pick<AppointmentsRepository, "byExternalId">;
  lifecycle: Pick<AppointmentLifecycle, "apply">;
  sessions: Pick<SessionService, "attempt">;
  /** Time a delivery may spend on its session attempt (inside the 10 s answer bound). */
  sessionBudgetMs: number;
  now: () => Date;
}

/** The stored answer of a delivery whose answer is not known yet. */
const IN_PROGRESS = 0;

type Step = { kind: "done"; outcome: WebhookOutcome } | { kind: "in_progress" } | { kind: "create_session"; appointment: AppointmentRow };

const replayed = (stored: StoredAnswer): WebhookOutcome => ({
  status: stored.responseStatus as 200 | 202,
  body: stored.responseBody as WebhookOutcome["body"],
  replayed: true,
  outcome: "ignored",
});

/**
 * Applies each scheduler delivery exactly once, whatever its source: the
 * transaction first takes an advisory lock on the delivery id, so a
 * concurrent redelivery waits there until this one commits, then reads the
 * answer stored with it; ten simultaneous deliveries have one effect, on
 * every replica. The delivery row is written once, with its answer, by the
 * transaction's last statement. A failure rolls everything back, so a
 * redelivery simply tries again.
 */
export class WebhookDeliveryService {
  constructor(private readonly options: WebhookDeliveryServiceOptions) {}

  async apply({ deliveryId, event }: { deliveryId: string; event: AppointmentEvent }): Promise<WebhookOutcome> {
    const started = Date.now();
    const { deliveries, lifecycle } = this.options;
    const { externalId } = event;

    const step = await this.options.sql.transaction(async (tx): Promise<Step> => {
      await deliveries.lock({ tx, deliveryId, externalId });
      const stored = await deliveries.storedState({ tx, deliveryId, externalId });
      if (stored.delivery) {
        return stored.delivery.responseStatus === IN_PROGRESS ? { kind: "in_progress" } : { kind: "done", outcome: replayed(stored.delivery) };
      }
      const now = this.options.now();
      const result = await lifecycle.apply({ tx, event, stored, deliveryId, now });
      // The answer of a remote session creation is only known after this commit;
      // until then a redelivery waits for it (see awaitAnswer).
      const answer = result.sessionToCreate ? { status: IN_PROGRESS, body: { applied: true } } : result;
      await deliveries.finish({
        tx,
        deliveryId,
        eventType: event.type,
        externalId,
        answer: { responseStatus: answer.status, responseBody: answer.body },
        audit: result.audit,
        // Nobody could receive them: no subscription is active.
        events: stored.subscribed ? result.events : [],
        ...(result.newAppointment ? { newAppointment: result.newAppointment } : {}),
        now,
      });
      return result.sessionToCreate
        ? { kind: "create_session", appointment: result.sessionToCreate }
        : { kind: "done", outcome: { status: result.status, body: result.body, outcome: result.outcome, replayed: false } };
    });

    switch (step.kind) {
      case "done":
        return step.outcome;
      case "in_progress":
        return this.awaitAnswer(deliveryId, started);
      case "create_session":
        // Outside the transaction: a slow provider holds no lock and no connection.
        await this.options.sessions.attempt(step.appointment, { deadline: started + this.options.sessionBudgetMs });
        return { ...(await this.settle(deliveryId, step.appointment.externalId)), replayed: false, outcome: "applied" };
    }
  }

  /** Stores the answer of a delivery whose session attempt has ended (or whose processor died). */
  private async settle(deliveryId: string, externalId: string): Promise<Pick<WebhookOutcome, "status" | "body">> {
    const { deliveries, appointments } = this.options;
    const row = await appointments.byExternalId({ externalId });
    if (!row) throw new Error(`the appointment of delivery ${deliveryId} is gone`);
    const stored = await deliveries.find({ deliveryId });
    const applied = (stored.responseBody as { applied?: boolean }).applied ?? true;
    const answer = { status: statusOf(row), body: { applied, appointment: appointmentView(row) } } as const;
    if (await deliveries.settle({ deliveryId, from: IN_PROGRESS, answer: { responseStatus: answer.status, responseBody: answer.body } })) {
      return answer;
    }
    // Someone else finished it first: theirs is the answer.
    const final = await deliveries.find({ deliveryId });
    return { status: final.responseStatus as 200 | 202, body: final.responseBody as WebhookOutcome["body"] };
  }

  /**
   * A redelivery that arrives while the first is still creating the session
   * waits for its answer (API.md §1: never a 409). If the first never
   * finishes (its process died), the answer is made from what is stored.
   */
  private async awaitAnswer(deliveryId: string, started: number): Promise<WebhookOutcome> {
    const giveUpAt = started + this.options.sessionBudgetMs + 500;
    for (;;) {
      const stored = await this.options.deliveries.find({ deliveryId });
      if (stored.responseStatus !== IN_PROGRESS) return replayed(stored);
      if (Date.now() >= giveUpAt) {
        return { ...(await this.settle(deliveryId, stored.externalId ?? "")), replayed: true, outcome: "ignored" };
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
