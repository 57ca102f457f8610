import type { Config } from "../config.js";
import type { PrismaClient } from "../db/database.js";
import { MAX_APPOINTMENT_MS } from "../domain/appointment-times.js";
import { maxTokenLifetimeMs } from "../domain/join-window.js";
import { SigningKeyStore } from "../services/signing-keys.js";
import { LocalVideoProvider } from "./local.js";
import type { ProviderCallObserver, VideoProvider } from "./video-provider.js";

export interface ProviderSetup {
  provider: VideoProvider;
  /** The built-in provider's public keys, served at /.well-known/jwks.json (empty for other providers). */
  jwks: () => Promise<{ keys: object[] }>;
  /** Background work the provider needs while the app runs; returns its stop function. */
  start: () => Promise<() => void>;
}

// The remote adapters (axios, the Vonage SDK) are loaded only when configured: tens of MB otherwise unused.

/** Each adapter's own variables, checked at boot: one line per problem. */
export async function providerConfigProblems(config: Config): Promise<string[]> {
  switch (config.videoProvider) {
    case "vonage":
      return (await import("./vonage.js")).vonageConfigProblems(config);
    case "genesys":
      return (await import("./genesys.js")).genesysConfigProblems(config);
    case "local":
      return [];
  }
}

const NOTHING_TO_RUN = async () => () => {};

/** The only place that knows which provider is configured. */
export async function createVideoProvider(
  config: Config,
  prisma: PrismaClient,
  now: () => Date,
  observe?: ProviderCallObserver,
): Promise<ProviderSetup> {
  const noKeys = async () => ({ keys: [] });
  switch (config.videoProvider) {
    case "local": {
      if (!config.keyEncryptionSecret) throw new Error("KEY_ENCRYPTION_SECRET is required with VIDEO_PROVIDER=local");
      const keys = new SigningKeyStore({
        prisma,
        keyEncryptionSecret: config.keyEncryptionSecret,
        rotationDays: config.localKeyRotationDays,
        maxTokenLifetimeMs: maxTokenLifetimeMs(config, MAX_APPOINTMENT_MS),
        now,
      });
      return {
        provider: new LocalVideoProvider({ keys, issuer: config.tokenIssuer }),
        jwks: () => keys.jwks(),
        start: () => keys.keepFresh(),
      };
    }
    case "vonage": {
      const { createVonageProvider, loadVonagePrivateKey } = await import("./vonage.js");
      return {
        provider: createVonageProvider({
          applicationId: config.vonageApplicationId ?? "",
          privateKey: await loadVonagePrivateKey(config),
          apiBase: config.vonageApiBase,
          timeoutMs: config.providerTimeoutMs,
          now,
          ...(observe ? { observe } : {}),
        }),
        jwks: noKeys,
        start: NOTHING_TO_RUN,
      };
    }
    case "genesys": {
      const { createGenesysProvider } = await import("./genesys.js");
      return {
        provider: createGenesysProvider({
          loginBase: config.genesysLoginBase ?? "",
          apiBase: config.genesysApiBase ?? "",
          clientId: config.genesysClientId ?? "",
          clientSecret: config.genesysClientSecret ?? "",
          timeoutMs: config.providerTimeoutMs,
          now,
          ...(observe ? { observe } : {}),
        }),
        jwks: noKeys,
        start: NOTHING_TO_RUN,
      };
    }
  }
}
