import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, missingProductionSecrets, variables } from "../src/config.js";
import { providerAdapters } from "../src/providers/index.js";

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

describe("loadConfig", () => {
  it("gives the contract's defaults when nothing is set", () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      port: 3000,
      databaseUrl: undefined,
      databasePoolSize: 10,
      dataDir: "./.data",
      videoProvider: "local",
      earlyJoinMinutesAgent: 10,
      earlyJoinMinutesCustomer: 5,
      graceMinutes: 15,
      providerSettings: {
        local: { TOKEN_ISSUER: "joinwindow", LOCAL_KEY_ROTATION_DAYS: 30 },
        vonage: { VONAGE_API_BASE: "https://video.api.vonage.com" },
      },
      providerTimeoutMs: 5000,
      corsOrigins: [],
      rateLimitPerMinute: 1200,
      rateLimitJoinPerMinute: 30,
      logLevel: "info",
      webhookSecrets: [],
    });
  });

  it("treats a set-but-empty variable as unset", () => {
    expect(loadConfig({ PORT: "", DATABASE_POOL_SIZE: "  ", VIDEO_PROVIDER: "" })).toMatchObject({
      port: 3000,
      databasePoolSize: 10,
      videoProvider: "local",
    });
  });

  it("names the variable and what it expects, in one line", () => {
    expect(problemsOf({ PORT: "abc" })).toEqual(['PORT must be an integer from 0 to 65535 (got "abc")']);
    expect(problemsOf({ PORT: "70000" })).toEqual(['PORT must be an integer from 0 to 65535 (got "70000")']);
    expect(problemsOf({ DATABASE_POOL_SIZE: "1.5" })[0]).toMatch(/^DATABASE_POOL_SIZE must be an integer/);
    expect(problemsOf({ VIDEO_PROVIDER: "zoom" })).toEqual([
      'VIDEO_PROVIDER must be one of local, vonage, genesys, livekit, daily (got "zoom")',
    ]);
    expect(problemsOf({ DATABASE_URL: "mysql://x" })[0]).toBe("DATABASE_URL must be a postgresql:// URL");
    expect(problemsOf({ AUTH_JWT_USER_CLAIM: "user.email[0]" })).toEqual([
      'AUTH_JWT_USER_CLAIM must be a JWT claim name (letters, digits, _ : . -) (got "user.email[0]")',
    ]);
  });

  it("reports every problem, one line each", () => {
    expect(problemsOf({ PORT: "x", GRACE_MINUTES: "-1", LOG_LEVEL: "loud" })).toHaveLength(3);
  });

  it("never echoes a secret's value", () => {
    const problems = problemsOf({ WEBHOOK_SECRET: "not-a-whsec-secret", AUTH_JWT_SECRET: "short-secret-value" });
    expect(problems.join("\n")).not.toContain("not-a-whsec-secret");
    expect(problems.join("\n")).not.toContain("short-secret-value");
    expect(problems).toEqual([
      "WEBHOOK_SECRET must be one or more space-separated secrets of the form whsec_<base64>",
      "AUTH_JWT_SECRET must be a secret of at least 32 characters",
    ]);
  });

  it("accepts several webhook secrets for rotation", () => {
    const config = loadConfig({ WEBHOOK_SECRET: "whsec_b2xk  whsec_bmV3" });
    expect(config.webhookSecrets).toEqual(["whsec_b2xk", "whsec_bmV3"]);
  });

  it("parses CORS origins and rejects paths", () => {
    expect(loadConfig({ CORS_ORIGINS: "https://a.example, https://b.example:8443/" }).corsOrigins).toEqual([
      "https://a.example",
      "https://b.example:8443",
    ]);
    expect(problemsOf({ CORS_ORIGINS: "https://a.example/portal" })[0]).toMatch(/^CORS_ORIGINS must be/);
  });

  it("takes a PEM with escaped newlines as env files write it", () => {
    const config = loadConfig({ AUTH_JWT_PUBLIC_KEY: "-----BEGIN PUBLIC KEY-----\\nMFk=\\n-----END PUBLIC KEY-----" });
    expect(config.authJwtPublicKey).toBe("-----BEGIN PUBLIC KEY-----\nMFk=\n-----END PUBLIC KEY-----");
  });

  it("refuses two ways of verifying user JWTs at once", () => {
    expect(
      problemsOf({ AUTH_JWT_SECRET: "x".repeat(40), AUTH_JWKS_URL: "https://idp.example/.well-known/jwks.json" }),
    ).toEqual(["AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY and AUTH_JWKS_URL are alternatives: set only one"]);
  });

  it("lists the secrets production needs", () => {
    expect(missingProductionSecrets(loadConfig({ NODE_ENV: "production" }))).toHaveLength(3);
    expect(
      missingProductionSecrets(
        loadConfig({
          NODE_ENV: "production",
          WEBHOOK_SECRET: "whsec_b2xk",
          AUTH_JWKS_URL: "https://idp.example/jwks",
          KEY_ENCRYPTION_SECRET: "k".repeat(32),
        }),
      ),
    ).toEqual([]);
  });

  it("is documented: .env.example lists every variable", async () => {
    const { readFile } = await import("node:fs/promises");
    const example = await readFile(new URL("../.env.example", import.meta.url), "utf8");
    const providerVariables = providerAdapters.flatMap((adapter) => Object.keys(adapter.variables));
    for (const name of [...Object.keys(variables), ...providerVariables]) {
      expect(example, name).toMatch(new RegExp(`^#? ?${name}=`, "m"));
    }
  });
});
