import { randomBytes } from "node:crypto";
import { createSigner } from "fast-jwt";
import type { PrismaClient } from "../../db/database.js";
import { SigningKeysRepository } from "../../db/repositories/signing-keys.js";
import { local } from "../local.js";
import type { ProviderSetup } from "../provider-adapter.js";
import type { SessionRequest, TokenRequest, VideoProvider } from "../video-provider.js";
import { SigningKeyStore, type SigningKeyStoreOptions } from "./signing-keys.js";

export interface LocalProviderOptions {
  keys: Pick<SigningKeyStore, "currentKey">;
  /** TOKEN_ISSUER. */
  issuer: string;
}

export interface LocalSetupOptions extends Omit<SigningKeyStoreOptions, "signingKeys"> {
  prisma: PrismaClient;
  /** TOKEN_ISSUER. */
  issuer: string;
}

const TOKEN_AUDIENCE = "joinwindow";

/** The provider, with its keys kept in `prisma`'s database: their JWKS, and their background refresh. */
export function createLocalProvider(options: LocalSetupOptions): ProviderSetup {
  const { prisma, issuer, ...keyOptions } = options;
  const keys = new SigningKeyStore({ ...keyOptions, signingKeys: new SigningKeysRepository({ prisma }) });
  return {
    provider: new LocalVideoProvider({ keys, issuer }),
    jwks: () => keys.jwks(),
    start: () => keys.keepFresh(),
  };
}

/** The built-in provider: the service is its own token authority (ES256 JWTs, keys in the database). */
export class LocalVideoProvider implements VideoProvider {
  readonly name = local.name;
  readonly applicationId = null;
  readonly remote = { sessions: local.capabilities.remoteSessions, tokens: local.capabilities.remoteTokens };
  readonly #keys: LocalProviderOptions["keys"];
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
      aud: TOKEN_AUDIENCE,
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
