import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";

/**
 * Secrets at rest (the local provider's private keys, subscriptions' signing
 * secrets): AES-256-GCM under a key derived from KEY_ENCRYPTION_SECRET with
 * HKDF, one `info` per use so a ciphertext of one kind never opens as
 * another. Each ciphertext is bound to its row by `aad` (its id), so one moved
 * to another row does not open either. Stored as `v1.<iv>.<tag>.<ciphertext>`
 * (base64url).
 */
export class SecretBox {
  readonly #key: Buffer;

  constructor(secret: string, info: string) {
    this.#key = Buffer.from(hkdfSync("sha256", secret, Buffer.alloc(0), info, 32));
  }

  seal(plaintext: string, aad: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.#key, iv);
    cipher.setAAD(Buffer.from(aad, "utf8"));
    const ciphertext = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    return [FORMAT_VERSION, ...[iv, cipher.getAuthTag(), ciphertext].map((part) => part.toString("base64url"))].join(".");
  }

  /** The plaintext; throws SecretBoxError saying why it cannot (never what it holds). */
  open(sealed: string, aad: string): string {
    const parts = sealed.split(".");
    if (parts.length !== 4 || parts[0] !== FORMAT_VERSION) throw new SecretBoxError("unsupported format");
    const [iv, tag, ciphertext] = parts.slice(1).map((part) => Buffer.from(part, "base64url")) as [Buffer, Buffer, Buffer];
    try {
      const decipher = createDecipheriv("aes-256-gcm", this.#key, iv);
      decipher.setAAD(Buffer.from(aad, "utf8"));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString("utf8");
    } catch {
      // GCM only says "unable to authenticate"; the usual cause is a changed secret
      // (or a ciphertext moved between rows, which the AAD also rejects).
      throw new SecretBoxError("KEY_ENCRYPTION_SECRET differs from the one that encrypted it");
    }
  }
}

export class SecretBoxError extends Error {
  override name = "SecretBoxError";
}

const FORMAT_VERSION = "v1";
