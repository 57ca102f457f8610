import { randomBytes } from "node:crypto";
import pg from "pg";
import { openDatabase } from "../../src/db/database.js";

/** ENVIRONMENT.md: the default admin connection of these machines, overridable for other setups. */
export const DEFAULT_ADMIN_URL = "postgresql://postgres:postgres@127.0.0.1:5432/postgres";

export const adminUrl = () => process.env.TEST_DATABASE_URL || DEFAULT_ADMIN_URL;

export function databaseUrl(name: string, base = adminUrl()): string {
  const url = new URL(base);
  url.pathname = `/${name}`;
  return url.toString();
}

async function withAdmin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl(), connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** A new, empty database named jw_test_<random>; returns its URL. */
export async function createDatabase(prefix = "jw_test"): Promise<{ name: string; url: string }> {
  const name = `${prefix}_${randomBytes(6).toString("hex")}`;
  await withAdmin((client) => client.query(`CREATE DATABASE "${name}"`));
  return { name, url: databaseUrl(name) };
}

export async function dropDatabase(name: string): Promise<void> {
  await withAdmin((client) => client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
}

/** Checks the admin connection, turning any failure into one line that says how to fix it. */
export async function assertPostgresReachable(): Promise<void> {
  try {
    await withAdmin((client) => client.query("SELECT 1"));
  } catch (error) {
    const reason = (error as Error).message || String(error);
    throw new Error(
      `Postgres is not reachable at ${new URL(adminUrl()).host} (${reason}). Start it (docker compose up -d db, or pg_ctlcluster <version> main start) or set TEST_DATABASE_URL to an admin connection URL.`,
      { cause: error },
    );
  }
}

/**
 * A new database, migrated: the run's (global-setup.ts), or a test's own,
 * for tests whose background workers must not see other files' rows (timed
 * events under a moved clock, counts of every delivery); drop it with
 * dropDatabase(name).
 */
export async function createMigratedDatabase(prefix = "jw_test"): Promise<{ name: string; url: string }> {
  const created = await createDatabase(prefix);
  const db = await openDatabase({
    databaseUrl: created.url,
    databasePoolSize: 2,
    databaseAcquireTimeoutMs: 5000,
    databaseQueryTimeoutMs: 60000,
    dataDir: "",
  });
  try {
    await db.migrate();
  } finally {
    await db.close();
  }
  return created;
}
