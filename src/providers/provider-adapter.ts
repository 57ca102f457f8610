import type { Config } from "../config.js";
import type { PrismaClient } from "../db/database.js";
import type { ValuesOf, VariableSpecs } from "../env-variables.js";
import type { PublicSigningJwk } from "./local/signing-keys.js";
import type { ProviderCallObserver, VideoProvider } from "./video-provider.js";

/**
 * What a provider can do. The rest of the code asks these (or the
 * VideoProvider's `remote`, which mirrors the first two), never a name.
 */
export interface ProviderCapabilities {
  /** Creating a session leaves the process (so it never runs inside a transaction). */
  remoteSessions: boolean;
  /** Issuing a token leaves the process. */
  remoteTokens: boolean;
  /** It can remove a participant from a running session. */
  eject: boolean;
  /** It tells the service who joins and leaves a session (its callbacks at POST /v1/providers/{name}/events). */
  presence: boolean;
  /** Its sessions expire at the appointment's closesAt and must be moved on a reschedule (VideoProvider.updateSession). */
  sessionExpiry: boolean;
  /** It has a waiting room of its own (the service enforces one for every provider in any case, API.md §3). */
  providerWaitingRoom: boolean;
}

export interface ProviderContext<Settings> {
  /** The adapter's own variables, read at boot. */
  settings: Settings;
  /** The service's config, for what providers share (PROVIDER_TIMEOUT_MS, the join policy, …). */
  config: Config;
  prisma: PrismaClient;
  now: () => Date;
  observe?: ProviderCallObserver;
}

export interface ProviderSetup {
  provider: VideoProvider;
  /** Public keys served at /.well-known/jwks.json, for a provider whose tokens the service signs itself. */
  jwks?: () => Promise<{ keys: PublicSigningJwk[] }>;
  /** Background work while the app runs; resolves to its stop function. */
  start?: () => Promise<() => void>;
}

/** `configProblems` of an adapter none of whose variables may be missing: one line per missing one. */
export const everyVariableRequired =
  (provider: string) =>
  (settings: Record<string, unknown>): string[] =>
    Object.entries(settings)
      .filter(([, value]) => !value)
      .map(([name]) => `${name} is required with VIDEO_PROVIDER=${provider}`);

/**
 * One video provider, as src/providers/index.ts lists it. Keep the adapter's
 * module light: config.ts reads every adapter's variables whichever is
 * configured, so `create` is where SDKs and HTTP clients get imported.
 */
export interface ProviderAdapter<Variables extends VariableSpecs = VariableSpecs> {
  /** VIDEO_PROVIDER's value for it. */
  readonly name: string;
  /** Its environment variables, read and validated at boot like config.ts's own. */
  readonly variables: Variables;
  readonly capabilities: ProviderCapabilities;
  /** What is missing or unusable in its settings when it is the configured one: one line per problem. */
  configProblems(settings: ValuesOf<Variables>): string[];
  create(context: ProviderContext<ValuesOf<Variables>>): Promise<ProviderSetup>;
}
