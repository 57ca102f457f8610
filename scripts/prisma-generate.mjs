// Generates the Prisma client offline.
//
// Every Prisma CLI command first looks for the native schema engine and tries
// to download it from Prisma's binary host, which these machines cannot reach.
// `prisma generate` never runs that engine (the query compiler is WebAssembly
// inside @prisma/client), so pointing PRISMA_SCHEMA_ENGINE_BINARY at any
// existing executable satisfies the lookup without a download.
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const prismaCli = require.resolve("prisma/build/index.js");

const result = spawnSync(process.execPath, [prismaCli, "generate"], {
  stdio: "inherit",
  env: {
    PRISMA_SCHEMA_ENGINE_BINARY: process.execPath,
    PRISMA_HIDE_UPDATE_MESSAGE: "1",
    CHECKPOINT_DISABLE: "1",
    ...process.env,
  },
});
process.exit(result.status ?? 1);
