import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase } from "../../src/db/database.js";
import { createDatabase, dropDatabase } from "../helpers/postgres.js";
import { type SchemaShape, shapeFromDatabase, shapeFromPrismaSchema } from "../helpers/schema-shape.js";

const schemaPath = fileURLToPath(new URL("../../prisma/schema.prisma", import.meta.url));

describe("schema.prisma and prisma/migrations", () => {
  let database: { name: string; url: string };
  let client: pg.Client;

  beforeAll(async () => {
    database = await createDatabase("jw_drift");
    const db = await openDatabase({
      databaseUrl: database.url,
      databasePoolSize: 1,
      databaseAcquireTimeoutMs: 5000,
      databaseQueryTimeoutMs: 60000,
      dataDir: "",
    });
    await db.migrate();
    await db.close();
    client = new pg.Client(database.url);
    await client.connect();
  });

  afterAll(async () => {
    await client?.end();
    if (database) await dropDatabase(database.name);
  });

  it("describe the same tables, columns, types, nullability, defaults, indexes, foreign keys and enums", async () => {
    const expected = await shapeFromPrismaSchema(schemaPath);
    const actual = await shapeFromDatabase(client);
    expect(Object.keys(expected.tables).length).toBeGreaterThan(0);
    expect(actual).toEqual(expected);
  });

  it("stores every instant as timestamptz", async () => {
    const expected = await shapeFromPrismaSchema(schemaPath);
    const types = Object.values(expected.tables).flatMap((t) => Object.values(t.columns).map((c) => c.type));
    expect(types.filter((t) => t.startsWith("timestamp("))).toEqual([]);
    expect(types).toContain("timestamptz(3)");
  });

  // The comparison itself must notice a change, or the test above proves nothing.
  it.each([
    ["a dropped index", `DROP INDEX "join_tokens_user_live_idx"`],
    ["a changed default", `ALTER TABLE "appointments" ALTER COLUMN "max_participants" SET DEFAULT 3`],
    ["a changed nullability", `ALTER TABLE "appointments" ALTER COLUMN "time_zone" SET NOT NULL`],
    ["a changed type", `ALTER TABLE "audit_events" ALTER COLUMN "at" TYPE timestamp(3)`],
    ["an extra column", `ALTER TABLE "signing_keys" ADD COLUMN "note" text`],
    [
      "a changed foreign key action",
      `ALTER TABLE "join_tokens" DROP CONSTRAINT "join_tokens_appointment_id_fkey", ADD CONSTRAINT "join_tokens_appointment_id_fkey" FOREIGN KEY ("appointment_id") REFERENCES "appointments"("id") ON DELETE RESTRICT ON UPDATE CASCADE`,
    ],
    [
      "a unique index made plain",
      `DROP INDEX "join_tokens_token_hash_key"; CREATE INDEX "join_tokens_token_hash_key" ON "join_tokens"("token_hash")`,
    ],
    ["an added enum value", `ALTER TYPE "RevocationReason" ADD VALUE 'expired'`],
    [
      "a partial index made full",
      `DROP INDEX "appointments_timed_events_idx"; CREATE INDEX "appointments_timed_events_idx" ON "appointments"("next_timed_event_at")`,
    ],
    [
      "a changed index predicate",
      `DROP INDEX "subscription_deliveries_queue_idx"; CREATE INDEX "subscription_deliveries_queue_idx" ON "subscription_deliveries"("subscription_id", "next_attempt_at") WHERE status = 'failed'`,
    ],
    ["a changed array default", `ALTER TABLE "subscriptions" ALTER COLUMN "events" SET DEFAULT '{a}'`],
  ])("notices %s", async (_what, sql) => {
    const expected: SchemaShape = await shapeFromPrismaSchema(schemaPath);
    await client.query("BEGIN");
    try {
      await client.query(sql);
      const actual = await shapeFromDatabase(client);
      expect(actual).not.toEqual(expected);
    } finally {
      await client.query("ROLLBACK");
    }
  });
});
