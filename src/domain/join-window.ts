/**
 * The service's role names everywhere in the contract (join response,
 * introspection, audit): `moderator` for the agent, `participant` for the
 * customer. A provider's own names live only inside its tokens.
 */
export type ParticipantRole = "moderator" | "participant";

export interface JoinPolicy {
  earlyJoinMinutesAgent: number;
  earlyJoinMinutesCustomer: number;
  graceMinutes: number;
}

export interface JoinWindow {
  agentOpensAt: Date;
  customerOpensAt: Date;
  closesAt: Date;
}

const MINUTE_MS = 60_000;

/** API.md §1: agent opens at start − early(agent), customer at start − early(customer), both close at end + grace. */
export function joinWindowFor(times: { startsAt: Date; endsAt: Date }, policy: JoinPolicy): JoinWindow {
  return {
    agentOpensAt: new Date(times.startsAt.getTime() - policy.earlyJoinMinutesAgent * MINUTE_MS),
    customerOpensAt: new Date(times.startsAt.getTime() - policy.earlyJoinMinutesCustomer * MINUTE_MS),
    closesAt: new Date(times.endsAt.getTime() + policy.graceMinutes * MINUTE_MS),
  };
}

/**
 * The longest a join token can live: it is issued no earlier than the
 * earliest opening time and expires at closesAt, and an appointment lasts at
 * most 24 h. Signing keys stay published this long after they stop signing.
 */
export function maxTokenLifetimeMs(policy: JoinPolicy, maxAppointmentMs: number): number {
  return (
    Math.max(policy.earlyJoinMinutesAgent, policy.earlyJoinMinutesCustomer) * MINUTE_MS +
    maxAppointmentMs +
    policy.graceMinutes * MINUTE_MS
  );
}

export function roleOf(appointment: { agentId: string; customerId: string }, userId: string): ParticipantRole | null {
  if (appointment.agentId === userId) return "moderator";
  if (appointment.customerId === userId) return "participant";
  return null;
}

export const opensAtFor = (window: JoinWindow, role: ParticipantRole) =>
  role === "moderator" ? window.agentOpensAt : window.customerOpensAt;
