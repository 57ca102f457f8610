import { httpUrl, text, type VariableSpecs } from "../env-variables.js";
import { everyVariableRequired, type ProviderAdapter } from "./provider-adapter.js";

const variables = {
  GENESYS_LOGIN_BASE: { parse: httpUrl, description: "Genesys OAuth base URL" },
  GENESYS_API_BASE: { parse: httpUrl, description: "Genesys API base URL" },
  GENESYS_CLIENT_ID: { parse: text, description: "Genesys OAuth client id" },
  GENESYS_CLIENT_SECRET: { parse: text, secret: true, description: "Genesys OAuth client secret" },
} satisfies VariableSpecs;

/** The Genesys-style REST contract (API.md §8): sessions and tokens both come from the provider. */
export const genesys: ProviderAdapter<typeof variables> = {
  name: "genesys",
  variables,
  capabilities: {
    remoteSessions: true,
    remoteTokens: true,
    eject: false,
    presence: false,
    sessionExpiry: false,
    providerWaitingRoom: true,
  },
  configProblems: everyVariableRequired("genesys"),

  async create({ settings, config, now, observe }) {
    // The HTTP client is loaded only when Genesys is configured.
    const { createGenesysProvider } = await import("./genesys/provider.js");
    return {
      provider: createGenesysProvider({
        loginBase: settings.GENESYS_LOGIN_BASE ?? "",
        apiBase: settings.GENESYS_API_BASE ?? "",
        clientId: settings.GENESYS_CLIENT_ID ?? "",
        clientSecret: settings.GENESYS_CLIENT_SECRET ?? "",
        timeoutMs: config.providerTimeoutMs,
        now,
        observe,
      }),
    };
  },
};
