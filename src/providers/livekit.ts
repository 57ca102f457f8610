import { httpUrl, type Parser, text, type ValuesOf, type VariableSpecs } from "../env-variables.js";
import { everyVariableRequired, type ProviderAdapter } from "./provider-adapter.js";

/**
 * LiveKit hands out its URL as wss://… (what clients connect to); its API is
 * the same host over https, as the server SDK does the conversion too.
 */
const liveKitUrl: Parser<string> = (raw) => {
  const http = raw.replace(/^ws(s?):\/\//i, "http$1://");
  const parsed = httpUrl(http);
  return parsed.ok ? parsed : { ok: false, expected: "an http(s) or ws(s) URL" };
};

const variables = {
  LIVEKIT_URL: { parse: liveKitUrl, description: "LiveKit server URL (https://… or the wss://… clients use)" },
  LIVEKIT_API_KEY: { parse: text, description: "LiveKit API key" },
  LIVEKIT_API_SECRET: { parse: text, secret: true, description: "LiveKit API secret" },
} satisfies VariableSpecs;

export type LiveKitSettings = ValuesOf<typeof variables>;

/** LiveKit (API.md §8): rooms over RoomService (Twirp), access tokens signed in the process. */
export const livekit: ProviderAdapter<typeof variables> = {
  name: "livekit",
  variables,
  capabilities: {
    remoteSessions: true,
    remoteTokens: false,
    eject: true,
    presence: true,
    sessionExpiry: false,
    providerWaitingRoom: false,
  },
  // Every one of its variables is required.
  configProblems: everyVariableRequired("livekit"),

  async create({ settings, config, now, observe }) {
    // The SDK (and the protobuf runtime under it) is loaded only when LiveKit is configured.
    const { createLiveKitProvider } = await import("./livekit/provider.js");
    return {
      provider: createLiveKitProvider({
        url: settings.LIVEKIT_URL ?? "",
        apiKey: settings.LIVEKIT_API_KEY ?? "",
        apiSecret: settings.LIVEKIT_API_SECRET ?? "",
        timeoutMs: config.providerTimeoutMs,
        now,
        observe,
      }),
    };
  },
};
