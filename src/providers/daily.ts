import { httpUrl, text, type ValuesOf, type VariableSpecs } from "../env-variables.js";
import type { ProviderAdapter } from "./provider-adapter.js";

const variables = {
  DAILY_API_KEY: { parse: text, secret: true, description: "Daily REST API key" },
  DAILY_API_BASE: { parse: httpUrl, default: "https://api.daily.co/v1", description: "Daily REST API base" },
  // Optional: without it every presence callback is refused (401), so the service never
  // learns who is in a Daily room.
  DAILY_WEBHOOK_SECRET: { parse: text, secret: true, description: "Daily webhook HMAC secret (base64), for presence" },
} satisfies VariableSpecs;

export type DailySettings = ValuesOf<typeof variables>;

/** Daily (API.md §8): private rooms and meeting tokens over REST. */
export const daily: ProviderAdapter<typeof variables> = {
  name: "daily",
  variables,
  capabilities: {
    remoteSessions: true,
    remoteTokens: true,
    eject: true,
    presence: true,
    sessionExpiry: true,
    providerWaitingRoom: false,
  },
  configProblems: dailyConfigProblems,

  async create({ settings, config, now, observe }) {
    // The HTTP client is loaded only when Daily is configured.
    const { createDailyProvider } = await import("./daily/provider.js");
    return {
      provider: createDailyProvider({
        apiKey: settings.DAILY_API_KEY ?? "",
        apiBase: settings.DAILY_API_BASE,
        webhookSecret: settings.DAILY_WEBHOOK_SECRET,
        timeoutMs: config.providerTimeoutMs,
        now,
        observe,
      }),
    };
  },
};

function dailyConfigProblems(settings: DailySettings): string[] {
  const problems: string[] = [];
  if (!settings.DAILY_API_KEY) problems.push("DAILY_API_KEY is required with VIDEO_PROVIDER=daily");
  const secret = settings.DAILY_WEBHOOK_SECRET;
  // Daily keys its signatures with the decoded secret: one that is not base64 could never verify.
  if (secret !== undefined && !/^[A-Za-z0-9+/_-]+={0,2}$/.test(secret.trim())) {
    problems.push("DAILY_WEBHOOK_SECRET must be base64, as Daily's webhook `hmac` is");
  }
  return problems;
}
