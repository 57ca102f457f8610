/**
 * What a scheduler says happened to one appointment, whatever format it came
 * in (API.md §1, and §11's native webhooks): the one input of the lifecycle
 * rules (lifecycle.ts). Times are resolved instants; settings are complete.
 */
export interface Participant {
  id: string;
  name: string | null;
}

export interface AppointmentSettings {
  maxParticipants: number;
  waitingRoom: boolean;
  recording: boolean;
}

/** API.md §1's defaults for settings a scheduler does not send. */
export const DEFAULT_SETTINGS: AppointmentSettings = { maxParticipants: 2, waitingRoom: true, recording: false };

export interface ScheduledEvent {
  type: "appointment.scheduled";
  externalId: string;
  /** The scheduler's ordering of its events; null when it gives none (then the event always applies). */
  revision: number | null;
  startsAt: Date;
  endsAt: Date;
  /** The canonical IANA name, or null. */
  timeZone: string | null;
  agent: Participant;
  customer: Participant;
  settings: AppointmentSettings;
}

export interface CancelledEvent {
  type: "appointment.cancelled";
  externalId: string;
  revision: number | null;
}

export type AppointmentEvent = ScheduledEvent | CancelledEvent;
