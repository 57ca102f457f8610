import { configDefaults, defineConfig } from "vitest/config";

// The unit tier needs neither dist/ nor Postgres, so `npm run test:unit` answers
// in seconds. Every pure test under test/domain/ belongs to it by its folder;
// so is the check of the layers (it reads the sources); the others are the files that build what they test in-process (the browser
// client against fakes, config parsing, the provider adapters against loopback
// fakes, the authentication plugin on a bare Fastify). A file not listed runs
// in the integration tier, which is always safe.
const unitTests = [
  "test/domain/**/*.test.ts",
  "test/architecture/**/*.test.ts",
  "test/client/joinwindow.test.ts",
  "test/config.test.ts",
  "test/providers/genesys.test.ts",
  "test/providers/vonage.test.ts",
  "test/providers/livekit.test.ts",
  "test/providers/daily.test.ts",
  "test/http/authentication.test.ts",
];

export default defineConfig({
  test: {
    // Integration files share one Postgres database (unique ids per test) and
    // start real servers; two workers keep a 2-core machine responsive.
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    projects: [
      {
        extends: true,
        test: { name: "unit", include: unitTests },
      },
      {
        extends: true,
        test: {
          name: "integration",
          include: ["test/**/*.test.ts"],
          exclude: [...configDefaults.exclude, ...unitTests],
          // A fresh database for the run, and dist/ for the process and browser tests.
          globalSetup: ["test/global-setup.ts"],
          // Fails a test that got an answer over HTTP which does not match /openapi.json (test/helpers/openapi.ts).
          setupFiles: ["test/helpers/openapi-setup.ts"],
        },
      },
    ],
  },
});
