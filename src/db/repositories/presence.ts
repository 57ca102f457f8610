import type { ParticipantRole } from "../../domain/join-window.js";
import type { Presence } from "../../domain/presence.js";
import { type Queryable, statement } from "../sql.js";

/** A token as a presence report names it, with its appointment. */
export interface PresenceToken {
  id: string;
  appointmentId: string;
  externalId: string;
  userId: string;
  role: ParticipantRole;
  notBefore: Date;
  expiresAt: Date;
  revokedAt: Date | null;
  revocationReason: string | null;
  /** The appointment's participants now (a reassignment may have replaced the token's holder). */
  agentId: string;
  customerId: string;
}

const TOKEN_COLUMNS = `t.id, t.appointment_id AS "appointmentId", a.external_id AS "externalId", t.user_id AS "userId", t.role,
  t.not_before AS "notBefore", t.expires_at AS "expiresAt", t.revoked_at AS "revokedAt", t.revocation_reason AS "revocationReason",
  a.agent_id AS "agentId", a.customer_id AS "customerId"`;

const TOKEN_BY_HASH = statement(
  "jw_presence_token_by_hash",
  `SELECT ${TOKEN_COLUMNS} FROM join_tokens t JOIN appointments a ON a.id = t.appointment_id WHERE t.token_hash = $1`,
);
const TOKEN_BY_ID = statement(
  "jw_presence_token_by_id",
  `SELECT ${TOKEN_COLUMNS} FROM join_tokens t JOIN appointments a ON a.id = t.appointment_id WHERE t.id = $1`,
);

/** The appointment a provider's session belongs to (session ids are the provider's: unique to it). */
const BY_SESSION = statement(
  "jw_presence_by_session",
  `SELECT id, external_id AS "externalId", agent_id AS "agentId", customer_id AS "customerId"
   FROM appointments WHERE session_id = $1 AND provider = $2`,
);

/** One participant's presence columns, row-locked: reports on one appointment are applied one at a time. */
const LOCK_PRESENCE = statement(
  "jw_lock_presence",
  `SELECT external_id AS "externalId",
          agent_present AS "agentPresent", agent_present_since AS "agentSince", agent_presence_at AS "agentAt",
          customer_present AS "customerPresent", customer_present_since AS "customerSince", customer_presence_at AS "customerAt"
   FROM appointments WHERE id = $1 FOR UPDATE`,
);

const storePresence = (role: ParticipantRole) => {
  const prefix = role === "moderator" ? "agent" : "customer";
  return statement(
    `jw_store_presence_${prefix}`,
    `UPDATE appointments SET ${prefix}_present = $2, ${prefix}_present_since = $3, ${prefix}_presence_at = $4 WHERE id = $1`,
  );
};
const STORE_PRESENCE = { moderator: storePresence("moderator"), participant: storePresence("participant") };

/**
 * A provider connection opened or closed (Vonage), and whether the user
 * still has another open one in this appointment (then their leaving one
 * connection is not their leaving).
 */
const RECORD_CONNECTION = statement(
  "jw_record_connection",
  `WITH recorded AS (
     INSERT INTO provider_connections (provider, connection_id, appointment_id, session_id, token_id, user_id, role, connected_at,
       disconnected_at, recorded_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7::"ParticipantRole", CASE WHEN $8 THEN $9::timestamptz END,
       CASE WHEN $8 THEN NULL ELSE $9::timestamptz END, $10)
     ON CONFLICT (provider, connection_id) DO UPDATE
       SET connected_at = COALESCE(provider_connections.connected_at, EXCLUDED.connected_at),
           disconnected_at = COALESCE(provider_connections.disconnected_at, EXCLUDED.disconnected_at)
     RETURNING connection_id)
   SELECT EXISTS (
     SELECT 1 FROM provider_connections c
     WHERE c.provider = $1 AND c.appointment_id = $3 AND c.user_id = $6 AND c.connection_id <> $2
       AND c.connected_at IS NOT NULL AND c.disconnected_at IS NULL) AS "otherOpen"
   FROM recorded`,
);

/** Whether the user holds a live token for the appointment (else a provider's `joined` means someone got in without one). */
const HOLDS_LIVE_TOKEN = statement(
  "jw_holds_live_token",
  `SELECT EXISTS (SELECT 1 FROM join_tokens WHERE appointment_id = $1 AND user_id = $2 AND revoked_at IS NULL
                  AND expires_at > $3 AND not_before <= $3) AS "holds"`,
);

export interface SessionAppointment {
  id: string;
  externalId: string;
  agentId: string;
  customerId: string;
}

export interface NewConnection {
  provider: string;
  connectionId: string;
  appointmentId: string;
  sessionId: string;
  tokenId: string | null;
  userId: string;
  role: ParticipantRole;
  joined: boolean;
  at: Date;
}

/** Presence (API.md §10): the appointment's presence columns and the providers' connections. */
export class PresenceRepository {
  constructor(private readonly db: { sql: Queryable }) {}

  async token(by: { tokenHash: string } | { id: string }): Promise<PresenceToken | undefined> {
    const [row] =
      "tokenHash" in by
        ? await this.db.sql.query<PresenceToken>(TOKEN_BY_HASH, [by.tokenHash])
        : await this.db.sql.query<PresenceToken>(TOKEN_BY_ID, [by.id]);
    return row;
  }

  async bySession({ provider, sessionId }: { provider: string; sessionId: string }): Promise<SessionAppointment | undefined> {
    const [row] = await this.db.sql.query<SessionAppointment>(BY_SESSION, [sessionId, provider]);
    return row;
  }

  /** The participant's presence, row-locked in `tx`; undefined when the appointment is gone. */
  async lock({ tx, appointmentId, role }: { tx: Queryable; appointmentId: string; role: ParticipantRole }) {
    const [row] = await tx.query<{
      externalId: string;
      agentPresent: boolean;
      agentSince: Date | null;
      agentAt: Date | null;
      customerPresent: boolean;
      customerSince: Date | null;
      customerAt: Date | null;
    }>(LOCK_PRESENCE, [appointmentId]);
    if (!row) return undefined;
    const presence: Presence =
      role === "moderator"
        ? { present: row.agentPresent, since: row.agentSince, at: row.agentAt }
        : { present: row.customerPresent, since: row.customerSince, at: row.customerAt };
    return { externalId: row.externalId, presence };
  }

  async store({ tx, appointmentId, role, presence }: { tx: Queryable; appointmentId: string; role: ParticipantRole; presence: Presence }) {
    await tx.query(STORE_PRESENCE[role], [appointmentId, presence.present, presence.since, presence.at]);
  }

  /** Records a connection's opening or closing; whether the user has another connection open. */
  async recordConnection({ tx, connection, now }: { tx: Queryable; connection: NewConnection; now: Date }): Promise<boolean> {
    const c = connection;
    const [row] = await tx.query<{ otherOpen: boolean }>(RECORD_CONNECTION, [
      c.provider,
      c.connectionId,
      c.appointmentId,
      c.sessionId,
      c.tokenId,
      c.userId,
      c.role,
      c.joined,
      c.at,
      now,
    ]);
    return row?.otherOpen ?? false;
  }

  async holdsLiveToken({ appointmentId, userId, now }: { appointmentId: string; userId: string; now: Date }): Promise<boolean> {
    const [row] = await this.db.sql.query<{ holds: boolean }>(HOLDS_LIVE_TOKEN, [appointmentId, userId, now]);
    return row?.holds ?? false;
  }
}
