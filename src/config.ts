// One schema for every environment variable, validated once at boot.
//
// Each variable has a parser that either returns a typed value or says, in
// one line, what it expected. A set-but-empty variable counts as unset (so
// `FOO=` in a compose file means "use the default"), and values are never
// echoed back for variables that hold secrets.

export type VideoProviderName = "local" | "vonage" | "genesys";
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
  videoProvider: VideoProviderName;
  earlyJoinMinutesAgent: number;
  earlyJoinMinutesCustomer: number;
  graceMinutes: number;
  tokenIssuer: string;
  localKeyRotationDays: number;
  keyEncryptionSecret: string | undefined;
  providerTimeoutMs: number;
  sessionReconcileIntervalMs: number;
  vonageApplicationId: string | undefined;
  vonagePrivateKey: string | undefined;
  vonagePrivateKeyPath: string | undefined;
  vonageApiBase: string;
  genesysLoginBase: string | undefined;
  genesysApiBase: string | undefined;
  genesysClientId: string | undefined;
  genesysClientSecret: string | undefined;
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

type Parser<T> = (raw: string) => { ok: true; value: T } | { ok: false; expected: string };

interface VariableSpec<T> {
  parse: Parser<T>;
  default?: T;
  /** Never echo the value in an error message. */
  secret?: boolean;
  description: string;
}

const ok = <T>(value: T) => ({ ok: true as const, value });
const fail = (expected: string) => ({ ok: false as const, expected });

const integer =
  (min: number, max: number): Parser<number> =>
  (raw) =>
    /^-?\d+$/.test(raw) && Number(raw) >= min && Number(raw) <= max
      ? ok(Number(raw))
      : fail(`an integer from ${min} to ${max}`);

const text: Parser<string> = (raw) => ok(raw);

const oneOf =
  <T extends string>(...values: T[]): Parser<T> =>
  (raw) =>
    (values as string[]).includes(raw) ? ok(raw as T) : fail(`one of ${values.join(", ")}`);

const httpUrl: Parser<string> = (raw) => {
  try {
    const url = new URL(raw);
    if (url.protocol === "http:" || url.protocol === "https:") return ok(raw.replace(/\/+$/, ""));
  } catch {
    // falls through to the message below
  }
  return fail("an http(s) URL");
};

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

const WEBHOOK_SECRET_FORMAT = /^whsec_[A-Za-z0-9+/]+={0,2}$/;
const webhookSecrets: Parser<string[]> = (raw) => {
  const secrets = raw.split(/\s+/).filter(Boolean);
  return secrets.length > 0 && secrets.every((s) => WEBHOOK_SECRET_FORMAT.test(s))
    ? ok(secrets)
    : fail("one or more space-separated secrets of the form whsec_<base64>");
};

const pem: Parser<string> = (raw) => {
  // Keys often arrive through env files with literal "\n" sequences.
  const value = raw.includes("\\n") ? raw.replace(/\\n/g, "\n") : raw;
  return /-----BEGIN [A-Z ]+-----/.test(value) ? ok(value) : fail("a PEM-encoded key");
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
  VIDEO_PROVIDER: { parse: oneOf("local", "vonage", "genesys"), default: "local", description: "video provider" },
  EARLY_JOIN_MINUTES_AGENT: { parse: integer(0, 1440), default: 10, description: "agent may join this early" },
  EARLY_JOIN_MINUTES_CUSTOMER: { parse: integer(0, 1440), default: 5, description: "customer may join this early" },
  GRACE_MINUTES: { parse: integer(0, 1440), default: 15, description: "join window stays open after the end" },
  TOKEN_ISSUER: { parse: text, default: "joinwindow", description: "`iss` of local provider tokens" },
  LOCAL_KEY_ROTATION_DAYS: { parse: integer(1, 365), default: 30, description: "local signing key lifetime" },
  KEY_ENCRYPTION_SECRET: {
    parse: longSecret,
    secret: true,
    description: "encrypts the local provider's private keys at rest",
  },
  PROVIDER_TIMEOUT_MS: { parse: integer(100, 60000), default: 5000, description: "per-call provider timeout" },
  SESSION_RECONCILE_INTERVAL_MS: {
    parse: integer(100, 3_600_000),
    default: 5000,
    description: "how often pending provider sessions are retried in the background",
  },
  VONAGE_APPLICATION_ID: { parse: text, description: "Vonage application id" },
  VONAGE_PRIVATE_KEY: { parse: pem, secret: true, description: "Vonage application private key (PEM)" },
  VONAGE_PRIVATE_KEY_PATH: { parse: text, description: "file holding the Vonage private key" },
  VONAGE_API_BASE: { parse: httpUrl, default: "https://video.api.vonage.com", description: "Vonage Video API base" },
  GENESYS_LOGIN_BASE: { parse: httpUrl, description: "Genesys OAuth base URL" },
  GENESYS_API_BASE: { parse: httpUrl, description: "Genesys API base URL" },
  GENESYS_CLIENT_ID: { parse: text, description: "Genesys OAuth client id" },
  GENESYS_CLIENT_SECRET: { parse: text, secret: true, description: "Genesys OAuth client secret" },
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
} satisfies Record<string, VariableSpec<unknown>>;

type Variables = typeof variables;
type ValueOf<S> = S extends { parse: Parser<infer T> } ? (S extends { default: unknown } ? T : T | undefined) : never;
type Parsed = { [K in keyof Variables]: ValueOf<Variables[K]> };

/** Reads and validates every variable; throws ConfigError listing each problem on its own line. */
export function loadConfig(env: NodeJS.ProcessEnv | Record<string, string | undefined>): Config {
  const problems: string[] = [];
  const values: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(variables) as [string, VariableSpec<unknown>][]) {
    const raw = env[name]?.trim();
    if (raw === undefined || raw === "") {
      values[name] = spec.default;
      continue;
    }
    const result = spec.parse(raw);
    if (result.ok) {
      values[name] = result.value;
    } else {
      const shown = spec.secret ? "" : ` (got ${JSON.stringify(raw.length > 60 ? `${raw.slice(0, 60)}…` : raw)})`;
      problems.push(`${name} must be ${result.expected}${shown}`);
    }
  }
  const v = values as Parsed;

  const authMethods = [v.AUTH_JWT_SECRET, v.AUTH_JWT_PUBLIC_KEY, v.AUTH_JWKS_URL].filter((m) => m !== undefined);
  if (authMethods.length > 1) {
    problems.push("AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY and AUTH_JWKS_URL are alternatives: set only one");
  }
  if (v.VONAGE_PRIVATE_KEY !== undefined && v.VONAGE_PRIVATE_KEY_PATH !== undefined) {
    problems.push("VONAGE_PRIVATE_KEY and VONAGE_PRIVATE_KEY_PATH are alternatives: set only one");
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
    videoProvider: v.VIDEO_PROVIDER,
    earlyJoinMinutesAgent: v.EARLY_JOIN_MINUTES_AGENT,
    earlyJoinMinutesCustomer: v.EARLY_JOIN_MINUTES_CUSTOMER,
    graceMinutes: v.GRACE_MINUTES,
    tokenIssuer: v.TOKEN_ISSUER,
    localKeyRotationDays: v.LOCAL_KEY_ROTATION_DAYS,
    keyEncryptionSecret: v.KEY_ENCRYPTION_SECRET,
    providerTimeoutMs: v.PROVIDER_TIMEOUT_MS,
    sessionReconcileIntervalMs: v.SESSION_RECONCILE_INTERVAL_MS,
    vonageApplicationId: v.VONAGE_APPLICATION_ID,
    vonagePrivateKey: v.VONAGE_PRIVATE_KEY,
    vonagePrivateKeyPath: v.VONAGE_PRIVATE_KEY_PATH,
    vonageApiBase: v.VONAGE_API_BASE,
    genesysLoginBase: v.GENESYS_LOGIN_BASE,
    genesysApiBase: v.GENESYS_API_BASE,
    genesysClientId: v.GENESYS_CLIENT_ID,
    genesysClientSecret: v.GENESYS_CLIENT_SECRET,
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
  if (config.videoProvider === "local" && !config.keyEncryptionSecret) {
    missing.push("KEY_ENCRYPTION_SECRET is required in production with VIDEO_PROVIDER=local");
  }
  return missing;
}
