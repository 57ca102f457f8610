/** One line of an appointment's audit trail (API.md §6). */
export type AuditType =
  | "webhook.applied"
  | "webhook.ignored"
  | "session.created"
  | "session.failed"
  | "token.issued"
  | "token.revoked"
  | "token.introspected"
  | "appointment.blocked"
  | "appointment.unblocked"
  | "participant.joined"
  | "participant.left"
  | "participant.ejected"
  | "participant.eject_failed"
  | "subscription.created"
  | "subscription.deleted"
  | "subscription.secret_rotated"
  | "subscription.enabled"
  | "subscription.disabled";

export interface AuditEntry {
  /** The appointment's externalId; "" for an introspection of an unknown token and for subscriptions' entries. */
  externalId: string;
  type: AuditType;
  /** Who did it: "scheduler", "user:<sub>", "operator:<sub>", "gateway:<sub>", "system". */
  actor: string;
  outcome: string;
  /** Never a token or a secret: ids, reasons, counts. */
  detail?: Record<string, unknown>;
  /** Defaults to the writer's `now`. */
  at?: Date;
}
