// Vonage Video's session-monitoring callbacks (API.md §10): how they are
// authenticated and what they say about presence.
//
// Vonage signs them itself ("Secure callbacks", developer.vonage.com/en/video/guides/secure-callbacks):
// with a signature secret set for the Session Monitoring callback in the
// dashboard, every callback carries a JWT in its Authorization header (Bearer,
// as Vonage's other signed webhooks do; a bare token is accepted too), HS256
// with that secret, whose `payload_hash` claim is the hex SHA-256 of the body.
import { createHash, timingSafeEqual } from "node:crypto";
import { createVerifier } from "fast-jwt";
import { CallbackRejectedError, type PresenceReport, type ProviderCallback } from "../video-provider.js";

/**
 * The connection data a client token carries (claim `connection_data`, the
 * SDK's `data` option). Vonage hands it back, unchanged, as `connection.data`
 * in every callback about that connection, and no client can alter it: it is
 * inside the token we sign.
 */
export function connectionDataFor(tokenId: string): string {
  return new URLSearchParams({ tokenId }).toString();
}

/** Token ids are uuids chosen by the service; anything else in `tokenId` was not written by us. */
const TOKEN_ID = /^[A-Za-z0-9_-]{1,128}$/;

/** The token id in a connection's data, or undefined when the data is absent or not ours. */
export function tokenIdFromConnectionData(data: unknown): string | undefined {
  if (typeof data !== "string" || data.length > 1000) return undefined;
  const tokenId = new URLSearchParams(data).get("tokenId");
  return tokenId !== null && TOKEN_ID.test(tokenId) ? tokenId : undefined;
}

const PRESENCE_EVENTS: Record<string, PresenceReport["state"]> = {
  connectionCreated: "joined",
  connectionDestroyed: "left",
};

const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest();

/**
 * Authenticates session-monitoring callbacks with the signature secret, or
 * refuses every one when there is none: an unauthenticated callback could
 * make anyone "present", or absent, in any appointment.
 */
export function createCallbackReader(signatureSecret: string | undefined) {
  // HS256 only: the algorithm is pinned, never read from the token's header.
  const verify = signatureSecret
    ? createVerifier({ key: signatureSecret, algorithms: ["HS256"], requiredClaims: ["payload_hash"] })
    : undefined;

  function authenticate(callback: ProviderCallback): void {
    if (!verify) throw new CallbackRejectedError("vonage callback: no signature secret is configured");
    const match = /^(?:Bearer\s+)?([\w-]+\.[\w-]+\.[\w-]+)$/i.exec(callback.headers.authorization?.trim() ?? "");
    if (!match?.[1]) throw new CallbackRejectedError("vonage callback: no signed token");
    let claims: { payload_hash?: unknown };
    try {
      claims = verify(match[1]) as { payload_hash?: unknown };
    } catch {
      throw new CallbackRejectedError("vonage callback: the token does not verify with the signature secret");
    }
    // The token has no exp: without this check, one captured token would vouch for any body, forever.
    const hash = claims.payload_hash;
    const claimed = typeof hash === "string" && /^[0-9a-f]{64}$/i.test(hash) ? Buffer.from(hash, "hex") : undefined;
    if (!claimed || !timingSafeEqual(claimed, sha256(callback.rawBody))) {
      throw new CallbackRejectedError("vonage callback: the body does not match the signed payload_hash");
    }
  }

  /**
   * Reads an authentic callback. Replays need no window of their own: a
   * replayed event carries its original timestamp, and the service never
   * lets an older report overwrite a newer one.
   */
  return function readCallback(callback: ProviderCallback): PresenceReport[] {
    authenticate(callback);
    let body: unknown;
    try {
      body = JSON.parse(callback.rawBody);
    } catch {
      return [];
    }
    const { event, sessionId, timestamp, connection } = (body ?? {}) as Record<string, unknown>;
    const state = typeof event === "string" ? PRESENCE_EVENTS[event] : undefined;
    const connectionId = (connection as { id?: unknown } | null | undefined)?.id;
    if (!state || typeof sessionId !== "string" || sessionId === "") return [];
    if (typeof connectionId !== "string" || connectionId === "") return [];
    if (typeof timestamp !== "number" || !Number.isFinite(timestamp) || timestamp <= 0) return [];
    const report: PresenceReport = { sessionId, state, at: new Date(timestamp), connectionId };
    const tokenId = tokenIdFromConnectionData((connection as { data?: unknown }).data);
    if (tokenId) report.tokenId = tokenId;
    return [report];
  };
}
