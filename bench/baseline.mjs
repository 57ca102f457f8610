// The bare baseline (not part of the product): the three benchmarked routes
// doing only their essential work with the raw `pg` driver and named prepared
// statements, no logging, no schemas, no plugins. It is the practical limit
// of this machine for the same work; the service is compared to it.
//
//   introspect: SHA-256 of the token, one indexed select of the token row with
//               its appointment, one audit insert.
//   join:       one HS256 verification of the user JWT, one select of the
//               appointment, then in one transaction a FOR UPDATE select of the
//               caller's live tokens, one revoking update and one insert; one
//               ES256 signature (made before the transaction, since the insert
//               stores its hash).
//   webhook:    one HMAC-SHA256 check, then in one transaction the delivery
//               insert, the appointment insert and the audit insert.
//
// Environment: DATABASE_URL, AUTH_JWT_SECRET, WEBHOOK_SECRET, PORT, HOST.
import { createHash, createHmac, generateKeyPairSync, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { createSigner, createVerifier } from "fast-jwt";
import Fastify from "fastify";
import pg from "pg";

const env = process.env;
const pool = new pg.Pool({ connectionString: env.DATABASE_URL, max: 10 });
const verifyUserJwt = createVerifier({ key: env.AUTH_JWT_SECRET, algorithms: ["HS256"], requiredClaims: ["exp", "sub"] });
const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
const kid = randomBytes(8).toString("hex");
const signToken = createSigner({ algorithm: "ES256", key: privateKey.export({ type: "pkcs8", format: "pem" }), kid });
const webhookKey = Buffer.from(env.WEBHOOK_SECRET.slice("whsec_".length), "base64");

const sec = (date) => Math.floor(date.getTime() / 1000);
const problem = (reply, status, code) =>
  reply.code(status).type("application/problem+json").send({ type: "about:blank", title: code, status, code });

const SELECT_TOKEN = {
  name: "bl_select_token",
  text: `SELECT t.id, t.user_id, t.role, t.provider, t.session_id, t.issued_at, t.not_before, t.expires_at,
                t.revoked_at, t.revocation_reason, a.external_id
         FROM join_tokens t JOIN appointments a ON a.id = t.appointment_id
         WHERE t.token_hash = $1`,
};
const INSERT_AUDIT = {
  name: "bl_insert_audit",
  text: `INSERT INTO audit_events (external_id, type, actor, outcome, detail, at) VALUES ($1, $2, $3, $4, $5, $6)`,
};
const SELECT_APPOINTMENT = {
  name: "bl_select_appointment",
  text: `SELECT id, status, agent_id, customer_id, access_blocked, agent_opens_at, customer_opens_at, closes_at,
                session_id, session_status
         FROM appointments WHERE external_id = $1`,
};
const LOCK_LIVE_TOKENS = {
  name: "bl_lock_live_tokens",
  text: `SELECT id, appointment_id FROM join_tokens
         WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 FOR UPDATE`,
};
const REVOKE_PREVIOUS = {
  name: "bl_revoke_previous",
  text: `UPDATE join_tokens SET revoked_at = $3, revocation_reason = 'replaced'
         WHERE appointment_id = $1 AND user_id = $2 AND revoked_at IS NULL AND expires_at > $3`,
};
const INSERT_TOKEN = {
  name: "bl_insert_token",
  text: `INSERT INTO join_tokens (id, appointment_id, user_id, role, token_hash, provider, session_id,
                                 issued_at, not_before, expires_at)
         VALUES ($1, $2, $3, $4, $5, 'local', $6, $7, $8, $9)`,
};
const INSERT_DELIVERY = {
  name: "bl_insert_delivery",
  text: `INSERT INTO webhook_deliveries (webhook_id, event_type, external_id, response_status, response_body)
         VALUES ($1, $2, $3, 200, $4)`,
};
const INSERT_APPOINTMENT = {
  name: "bl_insert_appointment",
  text: `INSERT INTO appointments (id, external_id, status, revision, starts_at, ends_at, time_zone,
                                  agent_id, agent_name, customer_id, customer_name,
                                  agent_opens_at, customer_opens_at, closes_at, provider, session_id,
                                  session_status, updated_at)
         VALUES ($1, $2, 'scheduled', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'local', $14, 'ready', $15)`,
};

async function inTransaction(work) {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const result = await work(client);
    await client.query("COMMIT");
    return result;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

const app = Fastify({ logger: false, bodyLimit: 64 * 1024 });

app.post("/v1/tokens/introspect", async (request, reply) => {
  const token = request.body?.token;
  if (typeof token !== "string") return problem(reply, 400, "invalid_request");
  const hash = createHash("sha256").update(token).digest("hex");
  const { rows } = await pool.query({ ...SELECT_TOKEN, values: [hash] });
  const row = rows[0];
  const now = new Date();
  const result = !row
    ? { active: false, reason: "unknown" }
    : row.revoked_at
      ? { active: false, reason: "revoked", revocationReason: row.revocation_reason }
      : now >= row.expires_at
        ? { active: false, reason: "expired" }
        : now < row.not_before
          ? { active: false, reason: "not_yet_valid" }
          : {
              active: true,
              jti: row.id,
              sub: row.user_id,
              role: row.role,
              appointmentId: row.external_id,
              sessionId: row.session_id,
              provider: row.provider,
              iat: sec(row.issued_at),
              nbf: sec(row.not_before),
              exp: sec(row.expires_at),
            };
  await pool.query({
    ...INSERT_AUDIT,
    values: [
      row?.external_id ?? "",
      "token.introspected",
      "gateway:baseline",
      result.active ? "active" : result.reason,
      row ? { tokenId: row.id, userId: row.user_id } : {},
      now,
    ],
  });
  return result;
});

app.post("/v1/appointments/:externalId/join-token", async (request, reply) => {
  const match = /^Bearer (\S+)$/.exec(request.headers.authorization ?? "");
  let sub;
  try {
    sub = verifyUserJwt(match?.[1] ?? "").sub;
  } catch {
    return problem(reply, 401, "unauthenticated");
  }
  const { externalId } = request.params;
  const { rows } = await pool.query({ ...SELECT_APPOINTMENT, values: [externalId] });
  const appointment = rows[0];
  const role = appointment?.agent_id === sub ? "moderator" : appointment?.customer_id === sub ? "participant" : null;
  if (!appointment || !role) return problem(reply, 404, "not_found");
  if (appointment.status === "cancelled") return problem(reply, 409, "appointment_cancelled");
  if (appointment.access_blocked) return problem(reply, 403, "access_blocked");
  const now = new Date();
  const opensAt = role === "moderator" ? appointment.agent_opens_at : appointment.customer_opens_at;
  if (now < opensAt) return problem(reply, 425, "too_early");
  if (now >= appointment.closes_at) return problem(reply, 410, "join_window_closed");
  if (appointment.session_status !== "ready") return problem(reply, 503, "provider_unavailable");

  const tokenId = randomUUID();
  const token = signToken({
    iss: "joinwindow",
    sub,
    aud: "joinwindow",
    sid: appointment.session_id,
    role,
    nbf: sec(opensAt),
    exp: sec(appointment.closes_at),
    iat: sec(now),
    jti: tokenId,
  });
  const hash = createHash("sha256").update(token).digest("hex");
  const conflict = await inTransaction(async (client) => {
    const live = await client.query({ ...LOCK_LIVE_TOKENS, values: [sub, now] });
    if (live.rows.some((t) => t.appointment_id !== appointment.id)) return true;
    await client.query({ ...REVOKE_PREVIOUS, values: [appointment.id, sub, now] });
    await client.query({
      ...INSERT_TOKEN,
      values: [tokenId, appointment.id, sub, role, hash, appointment.session_id, now, opensAt, appointment.closes_at],
    });
    return false;
  });
  if (conflict) return problem(reply, 409, "active_elsewhere");
  return reply.code(201).send({
    appointmentId: externalId,
    provider: "local",
    applicationId: null,
    sessionId: appointment.session_id,
    token,
    tokenId,
    role,
    notBefore: opensAt.toISOString(),
    expiresAt: appointment.closes_at.toISOString(),
  });
});

await app.register(async (scope) => {
  // The signature is over the raw bytes, so the body stays a string until it is checked.
  scope.addContentTypeParser("application/json", { parseAs: "string" }, (_request, body, done) => done(null, body));
  scope.post("/v1/webhooks/appointments", async (request, reply) => {
    const id = request.headers["webhook-id"];
    const timestamp = request.headers["webhook-timestamp"];
    const signatures = String(request.headers["webhook-signature"] ?? "");
    const raw = request.body;
    if (!id || !timestamp || Math.abs(Date.now() / 1000 - Number(timestamp)) > 300) {
      return problem(reply, 401, "invalid_signature");
    }
    const expected = createHmac("sha256", webhookKey).update(`${id}.${timestamp}.${raw}`).digest();
    const valid = signatures.split(" ").some((s) => {
      const given = Buffer.from(s.startsWith("v1,") ? s.slice(3) : "", "base64");
      return given.length === expected.length && timingSafeEqual(given, expected);
    });
    if (!valid) return problem(reply, 401, "invalid_signature");
    let event;
    try {
      event = JSON.parse(raw);
    } catch {
      return problem(reply, 400, "invalid_request");
    }
    const data = event?.data;
    if (event?.type !== "appointment.scheduled" || typeof data?.externalId !== "string") {
      return problem(reply, 400, "invalid_request");
    }
    const startsAt = new Date(data.startsAt);
    const endsAt = new Date(data.endsAt);
    if (!(endsAt > startsAt)) return problem(reply, 422, "invalid_time_range");
    const now = new Date();
    const join = {
      agentOpensAt: new Date(startsAt.getTime() - 10 * 60_000),
      customerOpensAt: new Date(startsAt.getTime() - 5 * 60_000),
      closesAt: new Date(endsAt.getTime() + 15 * 60_000),
    };
    const appointment = {
      id: randomUUID(),
      externalId: data.externalId,
      status: "scheduled",
      revision: data.revision ?? null,
      startsAt: startsAt.toISOString(),
      endsAt: endsAt.toISOString(),
      timeZone: data.timeZone ?? null,
      agent: { id: data.agent?.id, name: data.agent?.name ?? null },
      customer: { id: data.customer?.id, name: data.customer?.name ?? null },
      settings: { maxParticipants: 2, waitingRoom: true, recording: false },
      join: {
        agentOpensAt: join.agentOpensAt.toISOString(),
        customerOpensAt: join.customerOpensAt.toISOString(),
        closesAt: join.closesAt.toISOString(),
      },
      session: { provider: "local", id: `ses_${randomBytes(18).toString("base64url")}`, status: "ready" },
      accessBlocked: false,
    };
    const body = { applied: true, appointment };
    await inTransaction(async (client) => {
      await client.query({ ...INSERT_DELIVERY, values: [id, event.type, data.externalId, body] });
      await client.query({
        ...INSERT_APPOINTMENT,
        values: [
          appointment.id,
          data.externalId,
          appointment.revision,
          startsAt,
          endsAt,
          appointment.timeZone,
          appointment.agent.id,
          appointment.agent.name,
          appointment.customer.id,
          appointment.customer.name,
          join.agentOpensAt,
          join.customerOpensAt,
          join.closesAt,
          appointment.session.id,
          now,
        ],
      });
      await client.query({
        ...INSERT_AUDIT,
        values: [data.externalId, "webhook.applied", "scheduler", "created", { webhookId: id, revision: appointment.revision }, now],
      });
    });
    return body;
  });
});

const address = await app.listen({ port: Number(env.PORT ?? 0), host: env.HOST ?? "127.0.0.1" });
console.log(`baseline listening on ${address.replace("[::1]", "127.0.0.1")}`);

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.once(signal, async () => {
    await app.close();
    await pool.end();
    process.exit(0);
  });
}
