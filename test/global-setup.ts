import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";
import { assertPostgresReachable, createMigratedDatabase, dropDatabase } from "./helpers/postgres.js";

declare module "vitest" {
  export interface ProvidedContext {
    databaseUrl: string;
  }
}

/**
 * One fresh Postgres database for the run, migrated once and dropped at the
 * end (WITH (FORCE), so a crashed run cannot block the next). Also brings
 * dist/ up to date, because process-level tests start the server exactly as
 * `npm start` does and the browser tests load the compiled client; the build
 * stamp (a hash of its inputs, scripts/build.mjs) lets a run without source
 * changes skip the compilation. Only the integration tier runs this.
 */
export default async function setup(project: TestProject) {
  try {
    await assertPostgresReachable();
  } catch (error) {
    console.error(`\n${(error as Error).message}\n`);
    process.exit(1);
  }
  execFileSync(process.execPath, [fileURLToPath(new URL("../scripts/build.mjs", import.meta.url)), "--if-stale"], {
    stdio: "inherit",
  });

  const { name, url } = await createMigratedDatabase();
  project.provide("databaseUrl", url);

  return async () => {
    await dropDatabase(name);
  };
}
