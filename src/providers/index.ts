// The video providers. Adding one is its adapter file (provider-adapter.ts
// says what it declares) and its line in `providerAdapters`.
import type { Config } from "../config.js";
import type { PrismaClient } from "../db/database.js";
import { oneOf, type VariableSpec } from "../env-variables.js";
import { daily } from "./daily.js";
import { genesys } from "./genesys.js";
import { livekit } from "./livekit.js";
import { local } from "./local.js";
import type { PublicSigningJwk } from "./local/signing-keys.js";
import type { ProviderAdapter, ProviderSetup } from "./provider-adapter.js";
import type { ProviderCallObserver } from "./video-provider.js";
import { vonage } from "./vonage.js";

export const providerAdapters: readonly ProviderAdapter[] = [local, vonage, genesys, livekit, daily];

export const videoProviderVariable = {
  parse: oneOf(...providerAdapters.map((adapter) => adapter.name)),
  default: local.name,
  description: "video provider",
} satisfies VariableSpec<string>;

export function providerAdapter(name: string): ProviderAdapter {
  const adapter = providerAdapters.find((candidate) => candidate.name === name);
  if (!adapter) throw new Error(`no video provider is named ${JSON.stringify(name)}`);
  return adapter;
}

function configured(config: Config) {
  const adapter = providerAdapter(config.videoProvider);
  const settings = config.providerSettings[adapter.name];
  if (!settings) throw new Error(`the config holds no settings for VIDEO_PROVIDER=${adapter.name}`);
  return { adapter, settings };
}

/** The configured provider's own check of its settings, at boot: one line per problem. */
export function providerConfigProblems(config: Config): string[] {
  const { adapter, settings } = configured(config);
  return adapter.configProblems(settings);
}

const NO_KEYS = async () => ({ keys: [] as PublicSigningJwk[] });
const NOTHING_TO_RUN = async () => () => {};

/** The configured provider, and what the app serves and runs for it. */
export async function createVideoProvider(
  config: Config,
  prisma: PrismaClient,
  now: () => Date,
  observe?: ProviderCallObserver,
): Promise<Required<ProviderSetup>> {
  const { adapter, settings } = configured(config);
  const { provider, jwks, start } = await adapter.create({ settings, config, prisma, now, observe });
  return { provider, jwks: jwks ?? NO_KEYS, start: start ?? NOTHING_TO_RUN };
}
