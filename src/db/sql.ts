import type { PGlite, Transaction as PGliteTransaction } from "@electric-sql/pglite";
import type pg from "pg";
import { isDatabaseUnavailable } from "./errors.js";

/**
 * Plain SQL for the hot paths (join token, introspection, webhook), where
 * Prisma's per-query planning and result mapping cost more than the query
 * itself (bench/README.md has the profile). The same statements run on
 * Postgres, as named prepared statements through the pool, and on PGlite, so
 * the embedded database keeps the same code paths.
 */
export interface Statement {
  /** Name of the prepared statement on Postgres; unique per text. */
  name: string;
  text: string;
}

export interface Sql {
  query<Row>(statement: Statement, params: unknown[]): Promise<Row[]>;
  /** BEGIN … COMMIT on one connection; ROLLBACK when `work` throws. */
  transaction<T>(work: (sql: Sql) => Promise<T>): Promise<T>;
}

/** What a repository method runs its statements on: the pool, or one transaction's connection. */
export type Queryable = Pick<Sql, "query">;

export const statement = (name: string, text: string): Statement => Object.freeze({ name, text });

/**
 * pg copies every query config it is given, property by property, through
 * their descriptors (~2 µs). The statement itself (name and text) is the
 * prototype of each execution's config, so only `values` is copied.
 */
function pgQueryConfig(s: Statement, values: unknown[]): pg.QueryConfig {
  const config = Object.create(s) as pg.QueryConfig;
  config.values = values;
  return config;
}

export function postgresSql(pool: pg.Pool): Sql {
  const on = (client: pg.Pool | pg.PoolClient): Pick<Sql, "query"> => ({
    async query<Row>(s: Statement, params: unknown[]) {
      // pg would format a Date field by field in the host's local time; the native ISO form is the same instant, faster.
      const values = params.map((value) => (value instanceof Date ? value.toISOString() : value));
      const result = await client.query(pgQueryConfig(s, values));
      return result.rows as Row[];
    },
  });
  return {
    ...on(pool),
    async transaction<T>(work: (sql: Sql) => Promise<T>): Promise<T> {
      const client = await pool.connect();
      const inner: Sql = {
        ...on(client),
        transaction: () => Promise.reject(new Error("nested transactions are not supported")),
      };
      let broken: Error | undefined;
      try {
        await client.query("BEGIN");
        const result = await work(inner);
        await client.query("COMMIT");
        return result;
      } catch (error) {
        if (isDatabaseUnavailable(error)) {
          // The connection is gone, or its statement timed out and may still be running: a ROLLBACK would
          // queue behind it for a second timeout. Postgres rolls back the transaction of a closed connection.
          broken = error as Error;
        } else {
          await client.query("ROLLBACK").catch((rollbackError: unknown) => {
            broken = rollbackError as Error;
          });
        }
        throw error;
      } finally {
        // A broken connection is destroyed, never returned to the pool.
        client.release(broken);
      }
    },
  };
}

export function pgliteSql(pglite: PGlite): Sql {
  const on = (client: PGlite | PGliteTransaction): Pick<Sql, "query"> => ({
    async query<Row>(s: Statement, params: unknown[]) {
      return (await client.query<Row>(s.text, params)).rows;
    },
  });
  return {
    ...on(pglite),
    transaction<T>(work: (sql: Sql) => Promise<T>): Promise<T> {
      return pglite.transaction((tx) =>
        work({ ...on(tx), transaction: () => Promise.reject(new Error("nested transactions are not supported")) }),
      );
    },
  };
}
