// The process: configuration, secrets, database, migrations, listen, and a
// graceful stop. Everything about HTTP lives in app.ts.
import { setFlagsFromString } from "node:v8";
import closeWithGrace from "close-with-grace";
import { buildApp } from "./app.js";
import { createLogger } from "./logging.js";
import { type Config, ConfigError, loadConfig, missingProductionSecrets } from "./config.js";
import { openDatabase } from "./db/database.js";
import { MigrationError } from "./db/migrate.js";
import { withDevelopmentSecrets } from "./dev-secrets.js";
import { providerConfigProblems } from "./providers/index.js";

/** Boot failures are one plain line each (no stack trace), then exit code 1. */
function stop(lines: string[]): never {
  for (const line of lines) console.error(`joinwindow: ${line}`);
  process.exit(1);
}

function readConfig(): Config {
  try {
    return loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) stop(error.problems);
    throw error;
  }
}

async function main() {
  let config = readConfig();
  const logger = createLogger(config);

  const providerProblems = providerConfigProblems(config);
  if (providerProblems.length > 0) stop(providerProblems);

  if (config.nodeEnv === "production") {
    const missing = missingProductionSecrets(config);
    if (missing.length > 0) stop(missing);
  } else {
    const development = await withDevelopmentSecrets(config);
    config = development.config;
    if (development.file) {
      logger.warn(
        { file: development.file },
        "using development secrets generated for this data directory (NODE_ENV is not production); set them explicitly for real use",
      );
    }
  }

  if (config.databaseUrl) {
    // Prisma's query compiler is WebAssembly. Its optimising tier costs about 50 MB of code memory, for
    // queries that are off the hot paths (those run plain SQL, src/db/sql.ts); V8's baseline compiler is
    // enough. Not with PGlite: there the WebAssembly is the database itself. Set before any module is compiled.
    setFlagsFromString("--liftoff-only");
  }
  // The old generation may grow to at most twice what survived the last full collection before the
  // next one (V8 otherwise allows up to 4× on a machine with this much memory): under load that is the
  // difference between 170–195 MB and 250–280 MB, for about the same CPU (bench/README.md). Read at run
  // time, so it needs no command-line flag: npm start, the Dockerfile and the bench all run plain
  // `node dist/server.js`.
  setFlagsFromString("--heap-growing-percent=100");
  const db = await openDatabase(config, (error) =>
    logger.warn({ reason: error.message }, "idle database connection lost"),
  );
  try {
    await db.migrate({ log: (line) => logger.info(line) });
  } catch (error) {
    await db.close().catch(() => {});
    if (error instanceof MigrationError) stop([error.message]);
    stop([`cannot prepare the ${db.kind} database: ${(error as Error).message}`]);
  }

  const app = await buildApp({ config, db, logger });

  closeWithGrace({ delay: config.shutdownTimeoutMs }, async ({ signal, err }) => {
    if (err) logger.error({ err }, "shutting down after an unexpected error");
    else logger.info({ signal }, "shutting down: finishing in-flight requests");
    // app.close() stops accepting connections and waits for in-flight requests.
    await app.close();
    await db.close();
  });

  await app.listen({ port: config.port, host: config.host });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : config.port;
  logger.info(
    {
      database: db.kind === "pglite" ? `embedded (PGlite in ${config.dataDir})` : "postgres",
      provider: config.videoProvider,
    },
    `joinwindow is listening on http://localhost:${port} (API docs at /docs)`,
  );
}

await main();
