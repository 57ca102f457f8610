import { isIP } from "node:net";
import ipaddr from "ipaddr.js";

/**
 * Where the service may send lifecycle events (API.md §9): `https` URLs whose
 * host is, and resolves to, a public unicast address only. Loopback,
 * link-local (cloud metadata at 169.254.169.254), private, unique-local,
 * carrier-grade NAT (Alibaba's metadata at 100.100.100.200), multicast,
 * reserved and the IPv6 ranges that embed an IPv4 address (6to4, Teredo,
 * NAT64) are all refused: ipaddr.js classifies them and only `unicast` is
 * allowed. Pure rules; resolving names is the caller's I/O.
 */

export type TargetCheck = { ok: true; url: URL; host: string; literal: boolean } | { ok: false; problem: string };

const MAX_URL_LENGTH = 2048;

/** The class of a non-public address ("loopback", "private", …), or null for a public unicast one. */
export function forbiddenRange(address: string): string | null {
  if (!ipaddr.isValid(address)) return "invalid";
  // An IPv4-mapped IPv6 address (::ffff:127.0.0.1) is judged as the IPv4 address it maps.
  const range = ipaddr.process(address).range();
  return range === "unicast" ? null : range;
}

/**
 * The URL's own rules, before any name is resolved: https, a host, no
 * credentials (they would be stored in clear), and a literal address only if
 * it is public. With `allowPrivateTargets` (SUBSCRIPTIONS_ALLOW_PRIVATE_TARGETS)
 * http and any address are allowed.
 */
export function checkTargetUrl(raw: string, allowPrivateTargets: boolean): TargetCheck {
  if (raw.length > MAX_URL_LENGTH) return { ok: false, problem: `The URL is longer than ${MAX_URL_LENGTH} characters.` };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, problem: "The URL is not a valid absolute URL." };
  }
  const schemes = allowPrivateTargets ? ["https:", "http:"] : ["https:"];
  if (!schemes.includes(url.protocol)) return { ok: false, problem: "The URL must use https." };
  if (url.username !== "" || url.password !== "") return { ok: false, problem: "The URL must not carry credentials." };
  // URL keeps an IPv6 literal in brackets.
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  if (host === "") return { ok: false, problem: "The URL has no host." };
  const literal = isIP(host) !== 0;
  if (literal && !allowPrivateTargets) {
    const range = forbiddenRange(host);
    if (range) return { ok: false, problem: `The URL's address ${host} is not a public address (${range}).` };
  }
  return { ok: true, url, host, literal };
}

/** The first resolved address that may not be called, with its class; null when all are public. */
export function firstForbidden(addresses: readonly string[]): { address: string; range: string } | null {
  for (const address of addresses) {
    const range = forbiddenRange(address);
    if (range) return { address, range };
  }
  return null;
}
