import type { AppointmentsRepository } from "../db/repositories/appointments.js";
import type { AuditRepository } from "../db/repositories/audit.js";
import { notFound } from "../domain/errors.js";
import type { AppointmentView, AuditPage } from "../schemas/appointments.js";
import { appointmentView } from "./appointment-view.js";

/** Reading appointments and their audit trails (API.md §2, §6). */
export class AppointmentReads {
  constructor(
    private readonly options: {
      appointments: Pick<AppointmentsRepository, "byExternalId" | "isKnown">;
      audit: Pick<AuditRepository, "page">;
    },
  ) {}

  /** Its agent, its customer, or a caller with scope appointments:read; 404 to anyone else (existence is not revealed). */
  async read(externalId: string, caller: { userId: string; canReadAny: boolean }): Promise<AppointmentView> {
    const row = await this.options.appointments.byExternalId({ externalId });
    if (!row || (!caller.canReadAny && row.agentId !== caller.userId && row.customerId !== caller.userId)) {
      throw notFound("No such appointment.");
    }
    return appointmentView(row);
  }

  /** Oldest first. Known for an appointment or a recorded cancellation of an unknown id. */
  async events(externalId: string, after: bigint | undefined, limit: number): Promise<AuditPage> {
    if (!(await this.options.appointments.isKnown({ externalId }))) throw notFound("No such appointment.");
    return this.options.audit.page({ externalId, after, limit });
  }
}
