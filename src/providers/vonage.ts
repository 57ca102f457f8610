import { readFileSync } from "node:fs";
import { httpUrl, pem, text, type ValuesOf, type VariableSpecs } from "../env-variables.js";
import type { ProviderAdapter } from "./provider-adapter.js";
import { loadVonagePrivateKey, privateKeyProblem } from "./vonage/private-key.js";

const variables = {
  VONAGE_APPLICATION_ID: { parse: text, description: "Vonage application id" },
  VONAGE_PRIVATE_KEY: { parse: pem, secret: true, description: "Vonage application private key (PEM)" },
  VONAGE_PRIVATE_KEY_PATH: { parse: text, description: "file holding the Vonage private key" },
  VONAGE_API_BASE: { parse: httpUrl, default: "https://video.api.vonage.com", description: "Vonage Video API base" },
  VONAGE_SIGNATURE_SECRET: {
    parse: text,
    secret: true,
    description: "signature secret of the Session Monitoring callback (Vonage secure callbacks), for presence",
  },
} satisfies VariableSpecs;

export type VonageSettings = ValuesOf<typeof variables>;

/**
 * Vonage Video: sessions over REST, client tokens signed in the process with
 * the application key; presence from its signed session-monitoring callbacks,
 * eject by force disconnect.
 */
export const vonage: ProviderAdapter<typeof variables> = {
  name: "vonage",
  variables,
  capabilities: {
    remoteSessions: true,
    remoteTokens: false,
    eject: true,
    presence: true,
    sessionExpiry: false,
    providerWaitingRoom: false,
  },
  configProblems: vonageConfigProblems,

  async create({ settings, config, now, observe }) {
    // The SDK and the HTTP client are loaded only when Vonage is configured: tens of MB otherwise unused.
    const { createVonageProvider } = await import("./vonage/provider.js");
    return {
      provider: createVonageProvider({
        applicationId: settings.VONAGE_APPLICATION_ID ?? "",
        privateKey: await loadVonagePrivateKey(settings),
        apiBase: settings.VONAGE_API_BASE,
        signatureSecret: settings.VONAGE_SIGNATURE_SECRET,
        timeoutMs: config.providerTimeoutMs,
        now,
        observe,
      }),
    };
  },
};

// VONAGE_SIGNATURE_SECRET is optional: without it sessions and tokens work, and every callback is refused.
function vonageConfigProblems(settings: VonageSettings): string[] {
  const { VONAGE_APPLICATION_ID: applicationId, VONAGE_PRIVATE_KEY: inlineKey, VONAGE_PRIVATE_KEY_PATH: path } = settings;
  if (inlineKey !== undefined && path !== undefined) {
    return ["VONAGE_PRIVATE_KEY and VONAGE_PRIVATE_KEY_PATH are alternatives: set only one"];
  }
  const problems: string[] = [];
  if (!applicationId) problems.push("VONAGE_APPLICATION_ID is required with VIDEO_PROVIDER=vonage");
  let key: string | undefined;
  let source = "VONAGE_PRIVATE_KEY";
  if (inlineKey) {
    key = inlineKey;
  } else if (path) {
    source = `the file at VONAGE_PRIVATE_KEY_PATH (${path})`;
    try {
      key = readFileSync(path, "utf8");
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? "unreadable";
      problems.push(`VONAGE_PRIVATE_KEY_PATH: cannot read ${path} (${code})`);
    }
  } else {
    problems.push("one of VONAGE_PRIVATE_KEY or VONAGE_PRIVATE_KEY_PATH is required with VIDEO_PROVIDER=vonage");
  }
  if (key !== undefined) {
    const problem = privateKeyProblem(key);
    if (problem) problems.push(`${source} must be ${problem}`);
  }
  return problems;
}
