import { mkdir } from "node:fs/promises";
import path from "node:path";
import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import type { Config } from "../config.js";
import { PrismaClient } from "../generated/prisma/client.js";
import { type MigrateOptions, type MigrationResult, migrate, type SqlConnection } from "./migrate.js";
import { withinTime } from "../support/within-time.js";
import { pgliteSql, postgresSql, type Sql } from "./sql.js";

export type { PrismaClient } from "../generated/prisma/client.js";

/**
 * The service's database: Postgres through @prisma/adapter-pg when
 * DATABASE_URL is set, otherwise an embedded PGlite in DATA_DIR through
 * pglite-prisma-adapter. Everything above this module sees only `prisma`,
 * whichever it is: same schema, same migrations, same queries.
 */
export interface Database {
  readonly kind: "postgres" | "pglite";
  readonly prisma: PrismaClient;
  /** Plain SQL on the same database, for the hot paths (see sql.ts). */
  readonly sql: Sql;
  /** Applies pending migrations (see migrate.ts). */
  migrate(options?: MigrateOptions): Promise<MigrationResult>;
  /** Resolves when the database answers a trivial query; rejects otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export type DatabaseConfig = Pick<
  Config,
  "databaseUrl" | "databasePoolSize" | "databaseAcquireTimeoutMs" | "databaseQueryTimeoutMs" | "dataDir"
>;

const CLOSE_TIMEOUT_MS = 2_000;

export async function openDatabase(config: DatabaseConfig, onPoolError?: (error: Error) => void): Promise<Database> {
  return config.databaseUrl ? openPostgres(config, config.databaseUrl, onPoolError) : openPGlite(config.dataDir);
}

function openPostgres(config: DatabaseConfig, url: string, onPoolError?: (error: Error) => void): Database {
  const pool = new pg.Pool({
    connectionString: url,
    max: config.databasePoolSize,
    // Waiting for a free or new connection gives up after this, so a stalled
    // or saturated database turns into a 503 instead of a hung request.
    connectionTimeoutMillis: config.databaseAcquireTimeoutMs,
    query_timeout: config.databaseQueryTimeoutMs,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
  });
  // An idle client losing its connection must not crash the process.
  pool.on("error", (error) => onPoolError?.(error));
  // pg-pool listens for a client's 'error' only while the client is idle. One that loses its connection
  // while checked out (a backend terminated, a server stopped, inside a transaction) would emit 'error'
  // with no listener, which ends the process. The statement in flight fails with that same error and its
  // caller answers for it; the pool drops the client when it is released. So every client, whoever checks
  // it out (our transactions, Prisma's adapter, the migration runner), keeps a listener for its whole life.
  pool.on("connect", (client) => client.on("error", ignoreLostConnection));
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });

  return {
    kind: "postgres",
    prisma,
    sql: postgresSql(pool),
    async migrate(options) {
      const client = await pool.connect();
      try {
        return await migrate(asSqlConnection(client), options);
      } finally {
        client.release();
      }
    },
    async ping() {
      await pool.query("SELECT 1");
    },
    async close() {
      await prisma.$disconnect();
      // pool.end() waits for every connection's goodbye; a hung database never
      // sends it, and shutdown must not wait for it.
      await withinTime(pool.end(), CLOSE_TIMEOUT_MS, () => undefined);
    },
  };
}

async function openPGlite(dataDir: string): Promise<Database> {
  // Loaded only when used: a service on Postgres never pays for the embedded database's memory.
  const [{ PGlite }, { PrismaPGlite }] = await Promise.all([import("@electric-sql/pglite"), import("pglite-prisma-adapter")]);
  const directory = path.resolve(dataDir, "pgdata");
  await mkdir(directory, { recursive: true });
  const pglite = await PGlite.create(directory);
  const prisma = new PrismaClient({ adapter: new PrismaPGlite(pglite) });
  return {
    kind: "pglite",
    prisma,
    sql: pgliteSql(pglite),
    migrate: (options) => migrate(pglite, options),
    async ping() {
      await pglite.query("SELECT 1");
    },
    async close() {
      await prisma.$disconnect();
      await pglite.close();
    },
  };
}

function ignoreLostConnection() {}

function asSqlConnection(client: pg.PoolClient): SqlConnection {
  return {
    query: async <Row>(sql: string, params?: unknown[]) => ({ rows: (await client.query(sql, params)).rows as Row[] }),
    exec: (sql) => client.query(sql),
  };
}
