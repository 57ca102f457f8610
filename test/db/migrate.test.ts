import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import { openDatabase } from "../../src/db/database.js";
import { checksumOf, type Migration, MigrationError, readMigrations } from "../../src/db/migrate.js";
import { createDatabase, dropDatabase } from "../helpers/postgres.js";

const created: string[] = [];
afterEach(async () => {
  await Promise.all(created.splice(0).map((name) => dropDatabase(name)));
});

async function freshDatabase() {
  const database = await createDatabase("jw_migrate");
  created.push(database.name);
  return database;
}

const open = (url: string, poolSize = 2) =>
  openDatabase({
    databaseUrl: url,
    databasePoolSize: poolSize,
    databaseAcquireTimeoutMs: 5000,
    databaseQueryTimeoutMs: 60000,
    dataDir: "",
  });

async function bookkeeping(url: string) {
  const client = new pg.Client(url);
  await client.connect();
  try {
    const { rows } = await client.query(
      `SELECT migration_name, checksum, finished_at, rolled_back_at, applied_steps_count, logs FROM "_prisma_migrations" ORDER BY migration_name`,
    );
    return rows;
  } finally {
    await client.end();
  }
}

describe("migrations", () => {
  it("apply from zero with Prisma's bookkeeping, then do nothing the second time", async () => {
    const { url } = await freshDatabase();
    const migrations = await readMigrations();
    const db = await open(url);
    try {
      const first = await db.migrate();
      expect(first.applied).toEqual(migrations.map((m) => m.name));
      const second = await db.migrate();
      expect(second).toEqual({ applied: [], alreadyApplied: migrations.length });
    } finally {
      await db.close();
    }
    const rows = await bookkeeping(url);
    expect(rows).toHaveLength(migrations.length);
    for (const [i, row] of rows.entries()) {
      expect(row.migration_name).toBe(migrations[i]?.name);
      expect(row.checksum).toMatch(/^[0-9a-f]{64}$/);
      expect(row.checksum).toBe(checksumOf(migrations[i]?.sql ?? ""));
      expect(row.finished_at).toBeInstanceOf(Date);
      expect(row.rolled_back_at).toBeNull();
      expect(row.applied_steps_count).toBe(1);
    }
  });

  it("are applied exactly once when several replicas start together", async () => {
    const { url } = await freshDatabase();
    const replicas = await Promise.all(Array.from({ length: 6 }, () => open(url)));
    try {
      const results = await Promise.all(replicas.map((db) => db.migrate()));
      const applied = results.flatMap((r) => r.applied);
      const migrations = await readMigrations();
      expect(applied.sort()).toEqual(migrations.map((m) => m.name).sort());
    } finally {
      await Promise.all(replicas.map((db) => db.close()));
    }
    expect(await bookkeeping(url)).toHaveLength((await readMigrations()).length);
  });

  it("stop with a clear message when an applied migration was changed", async () => {
    const { url } = await freshDatabase();
    const migrations = await readMigrations();
    const db = await open(url);
    try {
      await db.migrate();
      const edited: Migration[] = migrations.map((m, i) =>
        i === 0 ? { ...m, sql: `${m.sql}\n-- edited`, checksum: checksumOf(`${m.sql}\n-- edited`) } : m,
      );
      const failure = db.migrate({ migrations: edited });
      await expect(failure).rejects.toBeInstanceOf(MigrationError);
      await expect(failure).rejects.toThrow(
        new RegExp(`^migration ${migrations[0]?.name} was changed after it was applied`),
      );
    } finally {
      await db.close();
    }
  });

  it("leave nothing behind when a migration fails, and say which one", async () => {
    const { url } = await freshDatabase();
    const migrations = await readMigrations();
    const broken = {
      name: "29990101000000_broken",
      sql: "CREATE TABLE ok_table (id int); SELECT * FROM missing_table;",
    };
    const db = await open(url);
    try {
      await expect(
        db.migrate({ migrations: [...migrations, { ...broken, checksum: checksumOf(broken.sql) }] }),
      ).rejects.toThrow(/^migration 29990101000000_broken failed: relation "missing_table" does not exist/);
    } finally {
      await db.close();
    }
    const client = new pg.Client(url);
    await client.connect();
    try {
      const { rows } = await client.query(`SELECT to_regclass('ok_table') AS table`);
      expect(rows[0].table).toBeNull();
    } finally {
      await client.end();
    }
    expect((await bookkeeping(url)).map((r) => r.migration_name)).toEqual(migrations.map((m) => m.name));
  });
});

describe("the embedded PGlite database", () => {
  it("migrates, keeps what was written across a restart, and runs the same Prisma code", async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "jw-pglite-"));
    const config = {
      databaseUrl: undefined,
      databasePoolSize: 1,
      databaseAcquireTimeoutMs: 5000,
      databaseQueryTimeoutMs: 60000,
      dataDir,
    };
    try {
      const first = await openDatabase(config);
      expect(first.kind).toBe("pglite");
      const migrated = await first.migrate();
      expect(migrated.applied.length).toBeGreaterThan(0);
      const startsAt = new Date("2026-11-23T14:00:00.000Z");
      await first.prisma.appointment.create({
        data: {
          externalId: "pglite-smoke",
          startsAt,
          endsAt: new Date("2026-11-23T14:30:00.000Z"),
          timeZone: "America/New_York",
          agentId: "agent-7",
          customerId: "cust-42",
          agentOpensAt: new Date("2026-11-23T13:50:00.000Z"),
          customerOpensAt: new Date("2026-11-23T13:55:00.000Z"),
          closesAt: new Date("2026-11-23T14:45:00.000Z"),
          provider: "local",
        },
      });
      await first.close();

      const second = await openDatabase(config);
      try {
        expect((await second.migrate()).applied).toEqual([]);
        const stored = await second.prisma.appointment.findUnique({ where: { externalId: "pglite-smoke" } });
        expect(stored?.startsAt.toISOString()).toBe(startsAt.toISOString());
        expect(stored?.timeZone).toBe("America/New_York");
        // The unique constraint on externalId holds here as on Postgres.
        await expect(
          second.prisma.appointment.create({ data: { ...stored, id: undefined } as never }),
        ).rejects.toMatchObject({ code: "P2002" });
      } finally {
        await second.close();
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
