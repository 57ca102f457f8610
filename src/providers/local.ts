import { MAX_APPOINTMENT_MS } from "../domain/appointment-times.js";
import { maxTokenLifetimeMs } from "../domain/join-window.js";
import { integer, text, type VariableSpecs } from "../env-variables.js";
import type { ProviderAdapter } from "./provider-adapter.js";

const variables = {
  TOKEN_ISSUER: { parse: text, default: "joinwindow", description: "`iss` of local provider tokens" },
  LOCAL_KEY_ROTATION_DAYS: { parse: integer(1, 365), default: 30, description: "local signing key lifetime" },
} satisfies VariableSpecs;

/** The built-in provider: the service is its own token authority, with its signing keys in the database. */
export const local: ProviderAdapter<typeof variables> = {
  name: "local",
  variables,
  capabilities: {
    remoteSessions: false,
    remoteTokens: false,
    eject: false,
    presence: false,
    sessionExpiry: false,
    providerWaitingRoom: false,
  },
  configProblems: () => [],

  async create({ settings, config, prisma, now }) {
    if (!config.keyEncryptionSecret) throw new Error("KEY_ENCRYPTION_SECRET is required with VIDEO_PROVIDER=local");
    const { createLocalProvider } = await import("./local/provider.js");
    return createLocalProvider({
      prisma,
      issuer: settings.TOKEN_ISSUER,
      keyEncryptionSecret: config.keyEncryptionSecret,
      rotationDays: settings.LOCAL_KEY_ROTATION_DAYS,
      maxTokenLifetimeMs: maxTokenLifetimeMs(config, MAX_APPOINTMENT_MS),
      now,
    });
  },
};
