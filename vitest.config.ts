import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    // Fails a test that got an answer over HTTP which does not match /openapi.json (test/helpers/openapi.ts).
    setupFiles: ["test/helpers/openapi-setup.ts"],
    // Integration files share one Postgres database (unique ids per test) and
    // start real servers; two workers keep a 2-core machine responsive.
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
