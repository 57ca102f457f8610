import type { AddressInfo } from "node:net";
import type { InjectOptions, LightMyRequestResponse } from "fastify";
import type { DestinationStream } from "pino";
import { inject } from "vitest";
import { type App, buildApp } from "../../src/app.js";
import { createLogger } from "../../src/logging.js";
import { type Config, loadConfig } from "../../src/config.js";
import { type Database, openDatabase } from "../../src/db/database.js";
import { describeMismatch, type ObservedResponse, observeHttp, type OpenApiDocument, OpenApiResponseChecker } from "./openapi.js";

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

/** One checker per distinct document: compiling its schemas is the expensive part. */
const checkers = new Map<string, OpenApiResponseChecker>();

function checkerFor(document: OpenApiDocument): OpenApiResponseChecker {
  const key = JSON.stringify(document);
  let checker = checkers.get(key);
  if (!checker) {
    checker = new OpenApiResponseChecker(document);
    checkers.set(key, checker);
  }
  return checker;
}

/**
 * Every answer the tests get from this app is checked against its OpenAPI
 * document: `app.inject` rejects with the mismatch, and answers over real
 * HTTP fail the running test (test/helpers/openapi-setup.ts).
 */
function checkAnswers(app: App, checker: OpenApiResponseChecker) {
  const injectUnchecked = app.inject.bind(app) as (options: InjectOptions) => Promise<LightMyRequestResponse>;
  app.inject = (async (...args: unknown[]) => {
    if (args.length !== 1 || typeof args[0] !== "object") {
      throw new Error("call `await app.inject({ ... })`: its answer is checked against /openapi.json");
    }
    const response = await injectUnchecked(args[0] as InjectOptions);
    const observed: ObservedResponse = {
      method: response.raw.req.method ?? "GET",
      url: response.raw.req.url ?? "/",
      status: response.statusCode,
      headers: response.headers,
      body: response.rawPayload,
    };
    const issues = checker.check(observed);
    if (issues.length > 0) throw new Error(describeMismatch(observed, issues));
    return response;
  }) as unknown as App["inject"];
  app.server.prependListener("request", observeHttp(checker));
}

export interface StartOptions {
  clock?: TestClock;
  /** Where the app's log lines go (the default test config logs nothing). */
  logDestination?: DestinationStream;
  /** Changes the document the answers are checked against: for the test that proves a mismatch fails. */
  document?: (served: OpenApiDocument) => OpenApiDocument;
}

/** Builds the app exactly as server.ts does, on the run's Postgres database unless overridden. */
export async function startApp(overrides: Record<string, string | undefined> = {}, options: StartOptions = {}): Promise<TestApp> {
  const config = testConfig(overrides);
  const db = await openDatabase(config);
  const app = await buildApp({
    config,
    db,
    ...(options.clock ? { now: options.clock.now } : {}),
    ...(options.logDestination ? { logger: createLogger(config, options.logDestination) } : {}),
  });
  const served = structuredClone(app.swagger()) as unknown as OpenApiDocument;
  checkAnswers(app, checkerFor(options.document ? options.document(served) : served));
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
