import type { EjectionsRepository } from "../db/repositories/ejections.js";
import type { TimedEventsRepository } from "../db/repositories/timed-events.js";
import type { Sql } from "../db/sql.js";
import type { ParticipantRole } from "../domain/join-window.js";
import { type OutboundEvent, timedEvent } from "../domain/outbound-events.js";
import { dueTimedEvents, isTimedEventKind, type TimedEventPolicy, timedEventState } from "../domain/timed-events.js";
import { type BackgroundLoopHandlers, runEvery } from "./background-loop.js";

export interface TimedEventServiceOptions {
  sql: Pick<Sql, "transaction">;
  timers: Pick<TimedEventsRepository, "nextDue" | "claimDue" | "record">;
  policy: TimedEventPolicy;
  now: () => Date;
  /** With a provider that can eject: everyone is removed from the room when its window closes (API.md §10). */
  ejections?: Pick<EjectionsRepository, "enqueue"> | undefined;
}

/** Appointments handled per transaction; a pass goes on while batches come back full (catching up after a downtime). */
const BATCH = 200;

/**
 * Emits the timed events (API.md §9) when they fall due: every replica runs
 * it every second, and each due appointment is taken by one of them (its row
 * lock, skipped by the others), so each event is emitted once, within about
 * a second of its instant, or late after a downtime, with its own instant.
 */
export class TimedEventService {
  constructor(private readonly options: TimedEventServiceOptions) {}

  /** One batch: the events emitted. */
  async emitDue(limit = BATCH): Promise<{ appointments: number; events: number }> {
    const { sql, timers, policy } = this.options;
    return sql.transaction(async (tx) => {
      const now = this.options.now();
      const due = await timers.claimDue({ tx, now, limit });
      if (due.length === 0) return { appointments: 0, events: 0 };
      const events: OutboundEvent[] = [];
      const closed: string[] = [];
      const states = due.map((appointment) => {
        const emitted = appointment.timedEventsEmitted.filter(isTimedEventKind);
        const present = new Set<ParticipantRole>();
        if (appointment.agentCame) present.add("moderator");
        if (appointment.customerCame) present.add("participant");
        const newly = dueTimedEvents(appointment, emitted, now, policy);
        for (const { kind, at } of newly) {
          if (kind === "closed") closed.push(appointment.id);
          const event = timedEvent(kind, appointment.externalId, at, present);
          if (event) events.push(event);
        }
        return { id: appointment.id, ...timedEventState(appointment, [...emitted, ...newly.map(({ kind }) => kind)], policy) };
      });
      await timers.record({ tx, states, events, now });
      await this.options.ejections?.enqueue({ tx, appointmentIds: closed, reason: "window_closed", now });
      return { appointments: due.length, events: events.length };
    });
  }

  /**
   * Everything due now, batch after batch. One read of the index's first
   * entry says whether anything is due, so an idle pass is one statement,
   * not a transaction.
   */
  async emitAllDue(): Promise<number> {
    const nextDue = await this.options.timers.nextDue();
    if (nextDue === null || nextDue.getTime() > this.options.now().getTime()) return 0;
    let events = 0;
    for (;;) {
      const batch = await this.emitDue();
      events += batch.events;
      if (batch.appointments < BATCH) return events;
    }
  }

  start(intervalMs: number, handlers: BackgroundLoopHandlers): () => Promise<void> {
    return runEvery(intervalMs, () => this.emitAllDue(), handlers);
  }
}
