import type { Appointment } from "../generated/prisma/client.js";
import type { AppointmentView } from "../schemas/appointments.js";

/** The contract's Appointment representation (API.md §1): UTC instants with `Z`, null where the scheduler gave none. */
export function appointmentView(row: Appointment): AppointmentView {
  return {
    id: row.id,
    externalId: row.externalId,
    status: row.status,
    revision: row.revision,
    startsAt: row.startsAt.toISOString(),
    endsAt: row.endsAt.toISOString(),
    timeZone: row.timeZone,
    agent: { id: row.agentId, name: row.agentName },
    customer: { id: row.customerId, name: row.customerName },
    settings: { maxParticipants: row.maxParticipants, waitingRoom: row.waitingRoom, recording: row.recording },
    join: {
      agentOpensAt: row.agentOpensAt.toISOString(),
      customerOpensAt: row.customerOpensAt.toISOString(),
      closesAt: row.closesAt.toISOString(),
    },
    session: { provider: row.provider, id: row.sessionId, status: row.sessionStatus, roomUrl: row.sessionRoomUrl },
    presence: {
      agent: { present: row.agentPresent, since: row.agentPresentSince?.toISOString() ?? null },
      customer: { present: row.customerPresent, since: row.customerPresentSince?.toISOString() ?? null },
    },
    accessBlocked: row.accessBlocked,
  };
}
