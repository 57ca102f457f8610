import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Config } from "./config.js";

interface DevSecrets {
  webhookSecret: string;
  authJwtSecret: string;
  keyEncryptionSecret: string;
}

const DEV_SECRETS_FILE = "dev-secrets.json";

/**
 * Outside production, fills in the secrets a first look needs so that
 * `npm start` works with nothing configured. They are generated once and kept
 * in DATA_DIR (mode 0600) so that a restart keeps accepting the same webhooks
 * and JWTs and can still decrypt the signing keys. Returns the file's path
 * when any generated secret is in use, so the caller can say so (never what
 * they are).
 */
export async function withDevelopmentSecrets(config: Config): Promise<{ config: Config; file?: string }> {
  const needsWebhook = config.webhookSecrets.length === 0;
  const needsAuth = !config.authJwtSecret && !config.authJwtPublicKey && !config.authJwksUrl;
  const needsKeyEncryption = !config.keyEncryptionSecret;
  if (!needsWebhook && !needsAuth && !needsKeyEncryption) return { config };

  const file = path.resolve(config.dataDir, DEV_SECRETS_FILE);
  const secrets = await loadOrCreate(file);
  return {
    file,
    config: {
      ...config,
      webhookSecrets: needsWebhook ? [secrets.webhookSecret] : config.webhookSecrets,
      authJwtSecret: needsAuth ? secrets.authJwtSecret : config.authJwtSecret,
      keyEncryptionSecret: needsKeyEncryption ? secrets.keyEncryptionSecret : config.keyEncryptionSecret,
    },
  };
}

async function readDevelopmentSecrets(dataDir: string): Promise<DevSecrets | undefined> {
  try {
    return JSON.parse(await readFile(path.resolve(dataDir, DEV_SECRETS_FILE), "utf8")) as DevSecrets;
  } catch {
    return undefined;
  }
}

async function loadOrCreate(file: string): Promise<DevSecrets> {
  const existing = await readDevelopmentSecrets(path.dirname(file));
  if (existing) return existing;
  const secrets: DevSecrets = {
    webhookSecret: `whsec_${randomBytes(32).toString("base64")}`,
    authJwtSecret: randomBytes(48).toString("base64url"),
    keyEncryptionSecret: randomBytes(32).toString("base64url"),
  };
  await mkdir(path.dirname(file), { recursive: true });
  // "wx": two processes starting together must not overwrite each other's secrets.
  try {
    await writeFile(file, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600, flag: "wx" });
    return secrets;
  } catch (error) {
    const again = await readDevelopmentSecrets(path.dirname(file));
    if (again) return again;
    throw error;
  }
}
