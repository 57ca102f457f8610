import { randomBytes } from "node:crypto";
import { SecretBox } from "../support/secret-box.js";

/**
 * Subscriptions' signing secrets (API.md §9): `whsec_` + base64 of 32 random
 * bytes (the Standard Webhooks form, as §1's WEBHOOK_SECRET), shown once when
 * made and stored only sealed with KEY_ENCRYPTION_SECRET, bound to their
 * subscription's id.
 */
export class SubscriptionSecrets {
  readonly #box: SecretBox;

  constructor(keyEncryptionSecret: string) {
    this.#box = new SecretBox(keyEncryptionSecret, "joinwindow subscription secret v1");
  }

  generate(): string {
    return `whsec_${randomBytes(32).toString("base64")}`;
  }

  seal(subscriptionId: string, secret: string): string {
    return this.#box.seal(secret, subscriptionId);
  }

  open(subscriptionId: string, sealed: string): string {
    return this.#box.open(sealed, subscriptionId);
  }
}
