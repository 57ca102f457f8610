import type { AddressInfo } from "node:net";
import { inject } from "vitest";
import { type App, buildApp } from "../../src/app.js";
import { type Config, loadConfig } from "../../src/config.js";
import { type Database, openDatabase } from "../../src/db/database.js";

export const TEST_WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
export const TEST_JWT_SECRET = "test-user-jwt-secret-that-is-long-enough-0123456789";
export const TEST_KEY_ENCRYPTION_SECRET = "test-key-encryption-secret-0123456789abcdef";

/** The production config schema, fed the environment a test run uses. */
export function testConfig(overrides: Record<string, string | undefined> = {}): Config {
  return loadConfig({
    DATABASE_URL: inject("databaseUrl"),
    LOG_LEVEL: "silent",
    WEBHOOK_SECRET: TEST_WEBHOOK_SECRET,
    AUTH_JWT_SECRET: TEST_JWT_SECRET,
    KEY_ENCRYPTION_SECRET: TEST_KEY_ENCRYPTION_SECRET,
    ...overrides,
  });
}

export interface TestApp {
  app: App;
  db: Database;
  config: Config;
  /** Base URL once `listen()` was called. */
  url: string;
  listen(): Promise<string>;
  close(): Promise<void>;
}

/** A clock a test can move, instead of waiting for a window to open or close. */
export class TestClock {
  private offsetMs = 0;
  readonly now = () => new Date(Date.now() + this.offsetMs);
  advance(ms: number) {
    this.offsetMs += ms;
  }
}

/** Builds the app exactly as server.ts does, on the run's Postgres database unless overridden. */
export async function startApp(
  overrides: Record<string, string | undefined> = {},
  options: { clock?: TestClock } = {},
): Promise<TestApp> {
  const config = testConfig(overrides);
  const db = await openDatabase(config);
  const app = await buildApp({ config, db, ...(options.clock ? { now: options.clock.now } : {}) });
  const handle: TestApp = {
    app,
    db,
    config,
    url: "",
    async listen() {
      await app.listen({ port: 0, host: "127.0.0.1" });
      handle.url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
      return handle.url;
    },
    async close() {
      await app.close();
      await db.close();
    },
  };
  return handle;
}
