// One schema for every environment variable, validated once at boot (the
// shape and the parsers are in env-variables.ts). The video providers declare
// their own variables (src/providers/): they are read here too, whichever
// provider is configured, into `providerSettings`.
import {
  boolean,
  fail,
  httpUrl,
  integer,
  ok,
  oneOf,
  type Parser,
  pem,
  readVariables,
  text,
  type VariableSpecs,
} from "./env-variables.js";
import { providerAdapters, videoProviderVariable } from "./providers/index.js";

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export interface Config {
  nodeEnv: string;
  port: number;
  host: string;
  databaseUrl: string | undefined;
  databasePoolSize: number;
  databaseAcquireTimeoutMs: number;
  databaseQueryTimeoutMs: number;
  dataDir: string;
  webhookSecrets: string[];
  authJwtSecret: string | undefined;
  authJwtPublicKey: string | undefined;
  authJwksUrl: string | undefined;
  authJwtIssuer: string | undefined;
  authJwtAudience: string | undefined;
  /** AUTH_JWT_USER_CLAIM: the claim that holds the user id (`sub` unless set). */
  authJwtUserClaim: string;
  /** The name of one of the registry's providers (src/providers/index.ts). */
  videoProvider: string;
  /** Each provider's own variables, keyed by provider name, then by variable name. */
  providerSettings: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
  earlyJoinMinutesAgent: number;
  earlyJoinMinutesCustomer: number;
  graceMinutes: number;
  noShowMinutes: number;
  keyEncryptionSecret: string | undefined;
  providerTimeoutMs: number;
  sessionReconcileIntervalMs: number;
  subscriptionTimeoutMs: number;
  /** Seconds to wait before each retry of a failed delivery; its length is the number of retries. */
  subscriptionRetrySchedule: number[];
  subscriptionsAllowPrivateTargets: boolean;
  corsOrigins: string[];
  rateLimitPerMinute: number;
  rateLimitJoinPerMinute: number;
  logLevel: LogLevel;
  shutdownTimeoutMs: number;
  httpRequestTimeoutMs: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
    this.name = "ConfigError";
  }
}

const postgresUrl: Parser<string> = (raw) => {
  try {
    const url = new URL(raw);
    if (url.protocol === "postgres:" || url.protocol === "postgresql:") return ok(raw);
  } catch {
    // falls through to the message below
  }
  return fail("a postgresql:// URL");
};

const longSecret: Parser<string> = (raw) => (raw.length >= 32 ? ok(raw) : fail("a secret of at least 32 characters"));

/** A JWT claim's name: a top-level member (no paths), as identity providers name them (`sub`, `email`, `preferred_username`). */
const claimName: Parser<string> = (raw) =>
  /^[A-Za-z_][A-Za-z0-9_:.-]{0,63}$/.test(raw) ? ok(raw) : fail("a JWT claim name (letters, digits, _ : . -)");

const WEBHOOK_SECRET_FORMAT = /^whsec_[A-Za-z0-9+/]+={0,2}$/;
const webhookSecrets: Parser<string[]> = (raw) => {
  const secrets = raw.split(/\s+/).filter(Boolean);
  return secrets.length > 0 && secrets.every((s) => WEBHOOK_SECRET_FORMAT.test(s))
    ? ok(secrets)
    : fail("one or more space-separated secrets of the form whsec_<base64>");
};

const retrySchedule: Parser<number[]> = (raw) => {
  const steps = raw.split(",").map((step) => step.trim());
  const valid = steps.length <= 50 && steps.every((step) => /^\d{1,7}(\.\d{1,3})?$/.test(step));
  return valid ? ok(steps.map(Number)) : fail("a comma-separated list of at most 50 waits in seconds, like 5,300,1800");
};

const originList: Parser<string[]> = (raw) => {
  const origins = raw.split(/[\s,]+/).filter(Boolean);
  for (const origin of origins) {
    try {
      const url = new URL(origin);
      if (url.origin !== origin.replace(/\/$/, ""))
        return fail("a comma-separated list of origins like https://portal.example.com");
    } catch {
      return fail("a comma-separated list of origins like https://portal.example.com");
    }
  }
  return ok(origins.map((o) => o.replace(/\/$/, "")));
};

export const variables = {
  NODE_ENV: { parse: text, default: "development", description: "production makes missing secrets fatal" },
  PORT: { parse: integer(0, 65535), default: 3000, description: "HTTP port" },
  HOST: { parse: text, default: "0.0.0.0", description: "listen address" },
  DATABASE_URL: { parse: postgresUrl, secret: true, description: "Postgres URL; unset = embedded PGlite in DATA_DIR" },
  DATABASE_POOL_SIZE: { parse: integer(1, 1000), default: 10, description: "Postgres connections per process" },
  DATABASE_ACQUIRE_TIMEOUT_MS: {
    parse: integer(100, 120000),
    default: 5000,
    description: "wait for a pooled connection before answering 503 not_ready",
  },
  DATABASE_QUERY_TIMEOUT_MS: {
    parse: integer(100, 600000),
    default: 15000,
    description: "a query that takes longer fails (503 not_ready) instead of hanging",
  },
  DATA_DIR: { parse: text, default: "./.data", description: "embedded database and development secrets" },
  WEBHOOK_SECRET: {
    parse: webhookSecrets,
    secret: true,
    description: "Standard Webhooks secret(s), space-separated for rotation",
  },
  AUTH_JWT_SECRET: { parse: longSecret, secret: true, description: "HS256 secret for user JWTs" },
  AUTH_JWT_PUBLIC_KEY: { parse: pem, description: "PEM public key for user JWTs (RS256/ES256/EdDSA)" },
  AUTH_JWKS_URL: { parse: httpUrl, description: "identity provider's JWKS URL" },
  AUTH_JWT_ISSUER: { parse: text, description: "required `iss` of user JWTs" },
  AUTH_JWT_AUDIENCE: { parse: text, description: "required `aud` of user JWTs" },
  AUTH_JWT_USER_CLAIM: {
    parse: claimName,
    default: "sub",
    description: "the JWT claim holding the user id (e.g. email, when the scheduler knows users by e-mail)",
  },
  VIDEO_PROVIDER: videoProviderVariable,
  EARLY_JOIN_MINUTES_AGENT: { parse: integer(0, 1440), default: 10, description: "agent may join this early" },
  EARLY_JOIN_MINUTES_CUSTOMER: { parse: integer(0, 1440), default: 5, description: "customer may join this early" },
  GRACE_MINUTES: { parse: integer(0, 1440), default: 15, description: "join window stays open after the end" },
  NO_SHOW_MINUTES: {
    parse: integer(0, 1440),
    default: 10,
    description: "appointment.no_show names who is not present this long after the start",
  },
  KEY_ENCRYPTION_SECRET: {
    parse: longSecret,
    secret: true,
    description: "encrypts secrets at rest: subscriptions' signing secrets, the local provider's private keys",
  },
  PROVIDER_TIMEOUT_MS: { parse: integer(100, 60000), default: 5000, description: "per-call provider timeout" },
  SESSION_RECONCILE_INTERVAL_MS: {
    parse: integer(100, 3_600_000),
    default: 5000,
    description: "how often pending provider sessions are retried in the background",
  },
  SUBSCRIPTION_TIMEOUT_MS: {
    parse: integer(100, 60000),
    default: 5000,
    description: "a subscriber must answer a delivery with a 2xx within this",
  },
  SUBSCRIPTION_RETRY_SCHEDULE: {
    parse: retrySchedule,
    default: [5, 300, 1800, 7200, 18000, 36000, 36000],
    description: "seconds to wait before each retry of a failed delivery (then it is failed)",
  },
  SUBSCRIPTIONS_ALLOW_PRIVATE_TARGETS: {
    parse: boolean,
    default: false,
    description: "true allows http and private, loopback and link-local subscription URLs (tests, private networks)",
  },
  CORS_ORIGINS: { parse: originList, default: [], description: "origins allowed to call from a browser" },
  RATE_LIMIT_PER_MINUTE: {
    parse: integer(0, 10_000_000),
    default: 1200,
    description: "requests per client address (0 = off)",
  },
  RATE_LIMIT_JOIN_PER_MINUTE: {
    parse: integer(0, 1_000_000),
    default: 30,
    description: "join-token requests per user (0 = off)",
  },
  LOG_LEVEL: {
    parse: oneOf("fatal", "error", "warn", "info", "debug", "trace", "silent"),
    default: "info",
    description: "pino log level",
  },
  SHUTDOWN_TIMEOUT_MS: {
    parse: integer(100, 600000),
    default: 10000,
    description: "grace period for in-flight requests",
  },
  HTTP_REQUEST_TIMEOUT_MS: {
    parse: integer(500, 120000),
    default: 10000,
    description: "a client must send its whole request (headers and body) within this, else 408 and the connection is closed",
  },
} satisfies VariableSpecs;

/** Reads and validates every variable; throws ConfigError listing each problem on its own line. */
export function loadConfig(env: NodeJS.ProcessEnv | Record<string, string | undefined>): Config {
  const problems: string[] = [];
  const v = readVariables(variables, env, problems);
  const providerSettings = Object.fromEntries(
    providerAdapters.map((adapter) => [adapter.name, readVariables(adapter.variables, env, problems)]),
  );

  const authMethods = [v.AUTH_JWT_SECRET, v.AUTH_JWT_PUBLIC_KEY, v.AUTH_JWKS_URL].filter((m) => m !== undefined);
  if (authMethods.length > 1) {
    problems.push("AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY and AUTH_JWKS_URL are alternatives: set only one");
  }
  if (problems.length > 0) throw new ConfigError(problems);

  return {
    nodeEnv: v.NODE_ENV,
    port: v.PORT,
    host: v.HOST,
    databaseUrl: v.DATABASE_URL,
    databasePoolSize: v.DATABASE_POOL_SIZE,
    databaseAcquireTimeoutMs: v.DATABASE_ACQUIRE_TIMEOUT_MS,
    databaseQueryTimeoutMs: v.DATABASE_QUERY_TIMEOUT_MS,
    dataDir: v.DATA_DIR,
    webhookSecrets: v.WEBHOOK_SECRET ?? [],
    authJwtSecret: v.AUTH_JWT_SECRET,
    authJwtPublicKey: v.AUTH_JWT_PUBLIC_KEY,
    authJwksUrl: v.AUTH_JWKS_URL,
    authJwtIssuer: v.AUTH_JWT_ISSUER,
    authJwtAudience: v.AUTH_JWT_AUDIENCE,
    authJwtUserClaim: v.AUTH_JWT_USER_CLAIM,
    videoProvider: v.VIDEO_PROVIDER,
    providerSettings,
    earlyJoinMinutesAgent: v.EARLY_JOIN_MINUTES_AGENT,
    earlyJoinMinutesCustomer: v.EARLY_JOIN_MINUTES_CUSTOMER,
    graceMinutes: v.GRACE_MINUTES,
    noShowMinutes: v.NO_SHOW_MINUTES,
    keyEncryptionSecret: v.KEY_ENCRYPTION_SECRET,
    providerTimeoutMs: v.PROVIDER_TIMEOUT_MS,
    sessionReconcileIntervalMs: v.SESSION_RECONCILE_INTERVAL_MS,
    subscriptionTimeoutMs: v.SUBSCRIPTION_TIMEOUT_MS,
    subscriptionRetrySchedule: v.SUBSCRIPTION_RETRY_SCHEDULE,
    subscriptionsAllowPrivateTargets: v.SUBSCRIPTIONS_ALLOW_PRIVATE_TARGETS,
    corsOrigins: v.CORS_ORIGINS,
    rateLimitPerMinute: v.RATE_LIMIT_PER_MINUTE,
    rateLimitJoinPerMinute: v.RATE_LIMIT_JOIN_PER_MINUTE,
    logLevel: v.LOG_LEVEL,
    shutdownTimeoutMs: v.SHUTDOWN_TIMEOUT_MS,
    httpRequestTimeoutMs: v.HTTP_REQUEST_TIMEOUT_MS,
  };
}

/** Secrets a production deployment must provide; in development they are generated (see dev-secrets.ts). */
export function missingProductionSecrets(config: Config): string[] {
  const missing: string[] = [];
  if (config.webhookSecrets.length === 0) missing.push("WEBHOOK_SECRET is required in production");
  if (!config.authJwtSecret && !config.authJwtPublicKey && !config.authJwksUrl) {
    missing.push("one of AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY or AUTH_JWKS_URL is required in production");
  }
  if (!config.keyEncryptionSecret) {
    missing.push("KEY_ENCRYPTION_SECRET is required in production (it encrypts subscriptions' secrets and the local provider's keys)");
  }
  return missing;
}
