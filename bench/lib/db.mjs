// Bench databases: a fresh jw_bench_<random> per phase, dropped at the end
// (also on failure and Ctrl-C), and a fast server-side preload.
import { randomBytes } from "node:crypto";
import pg from "pg";

export const DEFAULT_ADMIN_URL = "postgresql://postgres:postgres@127.0.0.1:5432/postgres";
export const adminUrl = () => process.env.BENCH_ADMIN_URL || process.env.TEST_DATABASE_URL || DEFAULT_ADMIN_URL;

export function databaseUrl(name, base = adminUrl()) {
  const url = new URL(base);
  url.pathname = `/${name}`;
  return url.toString();
}

async function withAdmin(fn) {
  const client = new pg.Client({ connectionString: adminUrl(), connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Names of the databases this run created and has not dropped yet. */
const created = new Set();

export async function createDatabase() {
  const name = `jw_bench_${randomBytes(6).toString("hex")}`;
  try {
    await withAdmin((client) => client.query(`CREATE DATABASE "${name}"`));
  } catch (error) {
    throw new Error(
      `cannot create the bench database through ${new URL(adminUrl()).host} (${error.message}). ` +
        "Start Postgres or set BENCH_ADMIN_URL (or TEST_DATABASE_URL) to an admin connection URL.",
      { cause: error },
    );
  }
  created.add(name);
  return { name, url: databaseUrl(name) };
}

export async function dropDatabase(name) {
  await withAdmin((client) => client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
  created.delete(name);
}

export async function dropAllCreated() {
  for (const name of [...created]) {
    try {
      await dropDatabase(name);
    } catch (error) {
      console.error(`bench: could not drop database ${name}: ${error.message}`);
    }
  }
}

/**
 * The synthetic data set, generated entirely inside Postgres (INSERT … SELECT
 * FROM generate_series): appointment i has external id `b-<i>`, agent
 * `agent-<i>`, customer `cust-<i>` (every user belongs to exactly one
 * appointment), opens now and ends in 2 h, with a ready `local` session. Its
 * one live token is held by the agent when i is even and by the customer when
 * i is odd; the token text is `<tokenPrefix><i>` and only its SHA-256 hex is
 * stored, as the service does, so the bench can rebuild any token from i.
 * The waiting room is off (API.md §3): half the customers ask while their
 * agent holds no token, and the join leg measures issuing tokens, not 425s
 * (the check itself is a look at rows the join reads anyway).
 */
export class Dataset {
  constructor({ startsAt, endsAt }) {
    this.seed = randomBytes(8).toString("hex");
    this.tokenPrefix = `jwbt_${randomBytes(24).toString("base64url")}_`;
    // Whole milliseconds: the columns are timestamptz(3).
    this.startsAt = new Date(Math.floor(startsAt.getTime() / 1000) * 1000);
    this.endsAt = new Date(Math.floor(endsAt.getTime() / 1000) * 1000);
    this.size = 0;
  }

  externalId = (i) => `b-${i}`;
  agentId = (i) => `agent-${i}`;
  customerId = (i) => `cust-${i}`;
  token = (i) => `${this.tokenPrefix}${i}`;
  /** Who holds appointment i's preloaded token. */
  tokenHolderIsAgent = (i) => i % 2 === 0;

  /** Adds appointments (and their tokens) up to `size`, in batches; returns seconds taken. */
  async growTo(url, size, { batch = 100_000, onProgress } = {}) {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const started = performance.now();
    try {
      for (let lo = this.size; lo < size; lo += batch) {
        const hi = Math.min(size, lo + batch) - 1;
        await client.query("BEGIN");
        await client.query(
          `INSERT INTO appointments (id, external_id, status, revision, starts_at, ends_at, time_zone,
              agent_id, agent_name, customer_id, customer_name, max_participants, waiting_room, recording,
              agent_opens_at, customer_opens_at, closes_at, provider, session_id, session_status, updated_at)
           SELECT md5($1 || ':a:' || i)::uuid, 'b-' || i, 'scheduled', 1, $2::timestamptz, $3::timestamptz, NULL,
              'agent-' || i, 'Agent ' || i, 'cust-' || i, 'Customer ' || i, 2, false, false,
              $2::timestamptz - interval '10 minutes', $2::timestamptz - interval '5 minutes',
              $3::timestamptz + interval '15 minutes', 'local', 'ses_' || substr(md5($1 || ':s:' || i), 1, 24),
              'ready', now()
           FROM generate_series($4::int, $5::int) AS i`,
          [this.seed, this.startsAt.toISOString(), this.endsAt.toISOString(), lo, hi],
        );
        await client.query(
          `INSERT INTO join_tokens (id, appointment_id, user_id, role, token_hash, provider, session_id,
              issued_at, not_before, expires_at)
           SELECT gen_random_uuid(), md5($1 || ':a:' || i)::uuid,
              CASE WHEN i % 2 = 0 THEN 'agent-' || i ELSE 'cust-' || i END,
              (CASE WHEN i % 2 = 0 THEN 'moderator' ELSE 'participant' END)::"ParticipantRole",
              encode(sha256(convert_to($2 || i, 'UTF8')), 'hex'), 'local',
              'ses_' || substr(md5($1 || ':s:' || i), 1, 24), now(),
              CASE WHEN i % 2 = 0 THEN $3::timestamptz - interval '10 minutes' ELSE $3::timestamptz - interval '5 minutes' END,
              $4::timestamptz + interval '15 minutes'
           FROM generate_series($5::int, $6::int) AS i`,
          [this.seed, this.tokenPrefix, this.startsAt.toISOString(), this.endsAt.toISOString(), lo, hi],
        );
        await client.query("COMMIT");
        this.size = hi + 1;
        onProgress?.(this.size);
      }
      // As a database that grew over time would be: statistics current, hint bits
      // and visibility map set, and the bulk load's WAL checkpointed rather than
      // billed to the first scenario that runs after it.
      await client.query("VACUUM (ANALYZE) appointments, join_tokens");
      await checkpointWith(client);
    } finally {
      await client.end();
    }
    return (performance.now() - started) / 1000;
  }
}

async function checkpointWith(client) {
  try {
    await client.query("CHECKPOINT");
  } catch {
    // Needs superuser or pg_checkpoint; without it the run just has a little more noise.
  }
}

/** A CHECKPOINT before each scenario, so that none pays for the previous one's WAL. */
export async function checkpoint(url) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await checkpointWith(client);
  } finally {
    await client.end();
  }
}

/** Row counts of the tables the scenarios write, for the report. */
export async function tableCounts(url) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query(
      `SELECT (SELECT count(*) FROM appointments)::int AS appointments,
              (SELECT count(*) FROM join_tokens)::int AS join_tokens,
              (SELECT count(*) FROM audit_events)::int AS audit_events,
              (SELECT count(*) FROM webhook_deliveries)::int AS webhook_deliveries`,
    );
    return rows[0];
  } finally {
    await client.end();
  }
}
