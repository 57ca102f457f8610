import { createPrivateKey } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { VonageSettings } from "../vonage.js";

/** Why a PEM is not a usable Vonage private key, or undefined. Never quotes the key. */
export function privateKeyProblem(pem: string): string | undefined {
  let key;
  try {
    key = createPrivateKey(pem);
  } catch {
    return "an unencrypted PEM RSA private key (it could not be read as a private key)";
  }
  if (key.asymmetricKeyType !== "rsa") return `an RSA private key (got ${key.asymmetricKeyType ?? "another"} key)`;
  // jsonwebtoken (inside @vonage/jwt) refuses to sign RS256 with smaller keys.
  if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) return "an RSA private key of at least 2048 bits";
  return undefined;
}

/** The configured private key's PEM text, from VONAGE_PRIVATE_KEY or the file at VONAGE_PRIVATE_KEY_PATH. */
export async function loadVonagePrivateKey(
  settings: Pick<VonageSettings, "VONAGE_PRIVATE_KEY" | "VONAGE_PRIVATE_KEY_PATH">,
): Promise<string> {
  if (settings.VONAGE_PRIVATE_KEY) return settings.VONAGE_PRIVATE_KEY;
  if (settings.VONAGE_PRIVATE_KEY_PATH) return readFile(settings.VONAGE_PRIVATE_KEY_PATH, "utf8");
  throw new Error("one of VONAGE_PRIVATE_KEY or VONAGE_PRIVATE_KEY_PATH is required with VIDEO_PROVIDER=vonage");
}
