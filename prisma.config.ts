import { defineConfig } from "prisma/config";

// The datasource URL is only needed by `prisma migrate deploy` on a machine
// that has Prisma's schema engine; the service itself reads DATABASE_URL at
// boot and applies migrations with its own offline runner (src/db/migrate.ts).
export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
  datasource: { url: process.env.DATABASE_URL ?? "postgresql://postgres:postgres@127.0.0.1:5432/postgres" },
});
