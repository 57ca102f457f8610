import type { Config } from "../config.js";
import type { PrismaClient } from "../db/database.js";
import { MAX_APPOINTMENT_MS } from "../domain/appointment-times.js";
import { maxTokenLifetimeMs } from "../domain/join-window.js";
import { SigningKeyStore } from "../services/signing-keys.js";
import { LocalVideoProvider } from "./local.js";
import type { VideoProvider } from "./video-provider.js";

export interface ProviderSetup {
  provider: VideoProvider;
  /** The built-in provider's public keys, served at /.well-known/jwks.json (empty for other providers). */
  jwks: () => Promise<{ keys: object[] }>;
  /** Background work the provider needs while the app runs; returns its stop function. */
  start: () => Promise<() => void>;
}

/** The only place that knows which provider is configured. */
export function createVideoProvider(config: Config, prisma: PrismaClient, now: () => Date): ProviderSetup {
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
    default:
      throw new Error(`VIDEO_PROVIDER=${config.videoProvider} is not available yet`);
  }
}
