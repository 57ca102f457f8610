// A fake identity provider's JWKS endpoint on 127.0.0.1: a key set the test
// can change, the caching headers it answers with, and its faults (an error
// status, or no answer at all). `requests` counts its fetches.
import type { KeyObject } from "node:crypto";
import { type FakeServer, sendJson, startFakeServer } from "./fake-server.js";

export type Jwk = Record<string, unknown>;

export interface FakeJwks extends FakeServer {
  /** A path and query of its own, so a test can see that exactly AUTH_JWKS_URL is fetched. */
  jwksUrl: string;
  keys: Jwk[];
  /** Extra response headers, e.g. Cache-Control and Age. */
  headers: Record<string, string>;
  /** Answered instead of the key set when not 200. */
  status: number;
  /** Accept the request and never answer. */
  hang: boolean;
}

export const JWKS_PATH = "/oauth2/v1/keys?tenant=t1";

/** The public JWK of `key` as identity providers publish it. */
export function publicJwk(key: KeyObject, kid: string, extra: Jwk = {}): Jwk {
  return { ...key.export({ format: "jwk" }), kid, use: "sig", ...extra };
}

export async function startFakeJwks(keys: Jwk[]): Promise<FakeJwks> {
  const server = await startFakeServer((_request, res) => {
    if (fake.hang) return;
    if (fake.status !== 200) return sendJson(res, fake.status, { error: "unavailable" });
    sendJson(res, 200, { keys: fake.keys }, fake.headers);
  });
  const fake: FakeJwks = {
    ...server,
    jwksUrl: `${server.url}${JWKS_PATH}`,
    keys,
    headers: {},
    status: 200,
    hang: false,
  };
  return fake;
}
