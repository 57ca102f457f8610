// `npm run migrate`: applies pending migrations to DATABASE_URL, or to the
// embedded database in DATA_DIR when it is unset, then exits.
import { ConfigError, loadConfig } from "../config.js";
import { openDatabase } from "./database.js";
import { MigrationError } from "./migrate.js";

try {
  const config = loadConfig(process.env);
  const db = await openDatabase(config);
  try {
    const result = await db.migrate({ log: (line) => console.log(line) });
    console.log(
      `${db.kind} database is up to date: ${result.applied.length} applied now, ${result.alreadyApplied} already applied`,
    );
  } finally {
    await db.close();
  }
} catch (error) {
  if (error instanceof ConfigError || error instanceof MigrationError) {
    console.error(error.message);
  } else {
    console.error(`migration failed: ${(error as Error).message}`);
  }
  process.exitCode = 1;
}
