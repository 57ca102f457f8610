import { createHash, randomUUID } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Applies prisma/migrations offline, the way `prisma migrate deploy` would:
 * same folder layout, same `_prisma_migrations` bookkeeping (checksum = hex
 * SHA-256 of migration.sql), same advisory lock key. Prisma's CLI cannot run
 * here (its schema engine is a download), but a database migrated by this
 * runner can later be handed to `prisma migrate deploy` and vice versa.
 */

/** What the runner needs of a connection: pg's Client and PGlite both fit. */
export interface SqlConnection {
  query<Row>(sql: string, params?: unknown[]): Promise<{ rows: Row[] }>;
  /** Runs a script of several statements (simple query protocol). */
  exec(sql: string): Promise<unknown>;
}

export interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

export interface MigrationResult {
  applied: string[];
  alreadyApplied: number;
}

export class MigrationError extends Error {
  override name = "MigrationError";
}

/** Prisma Migrate's own advisory lock key, so our runner and `prisma migrate deploy` exclude each other. */
const MIGRATION_LOCK_KEY = 72707369;

const DEFAULT_MIGRATIONS_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../prisma/migrations",
);

const BOOKKEEPING_TABLE = `
CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
  "id" VARCHAR(36) PRIMARY KEY NOT NULL,
  "checksum" VARCHAR(64) NOT NULL,
  "finished_at" TIMESTAMPTZ,
  "migration_name" VARCHAR(255) NOT NULL,
  "logs" TEXT,
  "rolled_back_at" TIMESTAMPTZ,
  "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
  "applied_steps_count" INTEGER NOT NULL DEFAULT 0
)`;

export const checksumOf = (sql: string) => createHash("sha256").update(sql).digest("hex");

export async function readMigrations(dir = DEFAULT_MIGRATIONS_DIR): Promise<Migration[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const names = entries
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  return Promise.all(
    names.map(async (name) => {
      const sql = await readFile(path.join(dir, name, "migration.sql"), "utf8");
      return { name, sql, checksum: checksumOf(sql) };
    }),
  );
}

interface AppliedRow {
  migration_name: string;
  checksum: string;
  finished_at: Date | null;
  rolled_back_at: Date | null;
}

export interface MigrateOptions {
  migrations?: Migration[];
  /** How long to wait for another replica that holds the migration lock. */
  lockTimeoutMs?: number;
  log?: (message: string) => void;
}

export async function migrate(connection: SqlConnection, options: MigrateOptions = {}): Promise<MigrationResult> {
  const migrations = options.migrations ?? (await readMigrations());
  const log = options.log ?? (() => {});
  await acquireLock(connection, options.lockTimeoutMs ?? 120_000);
  try {
    await connection.exec(BOOKKEEPING_TABLE);
    const { rows } = await connection.query<AppliedRow>(
      `SELECT migration_name, checksum, finished_at, rolled_back_at FROM "_prisma_migrations" WHERE rolled_back_at IS NULL`,
    );
    const applied = new Map(rows.map((row) => [row.migration_name, row]));
    checkAppliedHistory(migrations, applied);

    const done: string[] = [];
    for (const migration of migrations) {
      if (applied.has(migration.name)) continue;
      await applyOne(connection, migration);
      log(`applied migration ${migration.name}`);
      done.push(migration.name);
    }
    return { applied: done, alreadyApplied: migrations.length - done.length };
  } finally {
    await connection.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]);
  }
}

function checkAppliedHistory(migrations: Migration[], applied: Map<string, AppliedRow>) {
  for (const row of applied.values()) {
    if (row.finished_at === null) {
      throw new MigrationError(
        `migration ${row.migration_name} started but never finished; inspect the database, then mark it rolled back in _prisma_migrations before starting again`,
      );
    }
  }
  for (const migration of migrations) {
    const row = applied.get(migration.name);
    if (row && row.checksum !== migration.checksum) {
      throw new MigrationError(
        `migration ${migration.name} was changed after it was applied (checksum ${row.checksum.slice(0, 12)}… in the database, ${migration.checksum.slice(0, 12)}… on disk); restore the file and put the change in a new migration`,
      );
    }
  }
}

async function applyOne(connection: SqlConnection, migration: Migration) {
  // One transaction per migration: a failed migration leaves neither a half-applied schema nor a bookkeeping row.
  await connection.exec("BEGIN");
  try {
    const id = randomUUID();
    await connection.query(
      `INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, applied_steps_count) VALUES ($1, $2, $3, now(), 0)`,
      [id, migration.checksum, migration.name],
    );
    await connection.exec(migration.sql);
    await connection.query(
      `UPDATE "_prisma_migrations" SET finished_at = now(), applied_steps_count = 1 WHERE id = $1`,
      [id],
    );
    await connection.exec("COMMIT");
  } catch (error) {
    await connection.exec("ROLLBACK");
    throw new MigrationError(`migration ${migration.name} failed: ${(error as Error).message}`);
  }
}

async function acquireLock(connection: SqlConnection, timeoutMs: number) {
  // pg_try_advisory_lock in a loop rather than pg_advisory_lock: a blocked
  // call would run into the pool's query timeout and could not be abandoned.
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await connection.query<{ locked: boolean }>("SELECT pg_try_advisory_lock($1) AS locked", [
      MIGRATION_LOCK_KEY,
    ]);
    if (rows[0]?.locked) return;
    if (Date.now() > deadline) {
      throw new MigrationError(`another process held the migration lock for more than ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
