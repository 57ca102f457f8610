import { randomBytes } from "node:crypto";
import { createSigner } from "fast-jwt";
import type { SigningKeyStore } from "../services/signing-keys.js";
import type { SessionRequest, TokenRequest, VideoProvider } from "./video-provider.js";

export interface LocalProviderOptions {
  keys: SigningKeyStore;
  /** TOKEN_ISSUER. */
  issuer: string;
}

export const LOCAL_TOKEN_AUDIENCE = "joinwindow";

/** The built-in provider: the service is its own token authority (ES256 JWTs, keys in the database). */
export class LocalVideoProvider implements VideoProvider {
  readonly name = "local";
  readonly applicationId = null;
  readonly remote = { sessions: false, tokens: false };
  readonly #keys: SigningKeyStore;
  readonly #issuer: string;
  // One signer for the current kid: building one parses the PEM, and the kid only changes at rotation.
  #signer: { kid: string; sign: (payload: Record<string, unknown>) => string } | undefined;

  constructor(options: LocalProviderOptions) {
    this.#keys = options.keys;
    this.#issuer = options.issuer;
  }

  async createSession(_request: SessionRequest): Promise<{ sessionId: string }> {
    // 18 random bytes are exactly 24 base64url characters.
    return { sessionId: `ses_${randomBytes(18).toString("base64url")}` };
  }

  async issueToken(request: TokenRequest): Promise<{ token: string }> {
    const { kid, privateKey } = await this.#keys.currentKey();
    if (this.#signer?.kid !== kid) {
      // No noTimestamp: fast-jwt would then drop our own iat too. Given a
      // payload iat and no expiresIn/notBefore options, it keeps iat, exp and
      // nbf exactly as passed and adds no claim of its own.
      this.#signer = { kid, sign: createSigner({ algorithm: "ES256", key: privateKey, kid }) };
    }
    const token = this.#signer.sign({
      iss: this.#issuer,
      sub: request.userId,
      aud: LOCAL_TOKEN_AUDIENCE,
      sid: request.sessionId,
      role: request.role,
      nbf: epochSeconds(request.notBefore),
      exp: epochSeconds(request.expiresAt),
      iat: epochSeconds(request.issuedAt),
      jti: request.tokenId,
    });
    return { token };
  }
}

const epochSeconds = (date: Date) => Math.floor(date.getTime() / 1000);
