import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import http from "node:http";
import https from "node:https";
import type { LookupFunction } from "node:net";
import { performance } from "node:perf_hooks";
import type { Readable } from "node:stream";
import type { AxiosInstance, AxiosStatic } from "axios";
import { checkTargetUrl, firstForbidden } from "../domain/delivery-targets.js";

/**
 * Posts lifecycle events to subscribers (API.md §9) through axios, the
 * project's outbound HTTP client: one attempt per call (the retry schedule
 * lives in the database, so it survives restarts), a 2xx status within
 * SUBSCRIPTION_TIMEOUT_MS is success (the body is drained, not read), no
 * redirects followed, no proxy from the environment, keep-alive connections
 * per host. axios is loaded with the first delivery: a service nobody
 * subscribes to never pays for it.
 *
 * The SSRF guard works at connection time: the agents resolve names through
 * a lookup that refuses any non-public address and hands the connection the
 * very addresses it checked, so a name that resolves to a public address when
 * checked and to 127.0.0.1 a moment later (DNS rebinding) cannot slip
 * through. A literal address in the URL is checked before the request.
 */

export type AttemptOutcome = number | "timeout" | "network";

export interface AttemptResult {
  /** The answer's HTTP status, or why there was none. */
  outcome: AttemptOutcome;
  durationMs: number;
  /** Why a "network" attempt failed, in our words; never the receiver's answer. */
  error: string | null;
}

export interface WebhookRequest {
  url: string;
  headers: Record<string, string>;
  body: string;
}

export interface WebhookSender {
  send(request: WebhookRequest): Promise<AttemptResult>;
  close(): void;
}

export interface WebhookSenderOptions {
  timeoutMs: number;
  /** SUBSCRIPTIONS_ALLOW_PRIVATE_TARGETS: http and any address. */
  allowPrivateTargets: boolean;
  /** The system resolver unless given. */
  lookup?: LookupFunction;
}

const FORBIDDEN_ADDRESS = "EFORBIDDENADDRESS";

/** A lookup that answers only with public addresses, and fails the connection otherwise. */
function guardedLookup(resolve: LookupFunction = dnsLookup as LookupFunction): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, "", 0);
      const all = addresses as unknown as LookupAddress[];
      const forbidden = firstForbidden(all.map((a) => a.address));
      if (forbidden || all.length === 0) {
        const why = forbidden ? `resolves to ${forbidden.address} (${forbidden.range})` : "resolves to no address";
        const refusal = Object.assign(new Error(`${hostname} ${why}, which is not a public address`), { code: FORBIDDEN_ADDRESS });
        return callback(refusal, "", 0);
      }
      if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, all);
      const [first] = all as [LookupAddress];
      callback(null, first.address, first.family);
    });
  };
}

export function createWebhookSender(options: WebhookSenderOptions): WebhookSender {
  const { timeoutMs, allowPrivateTargets } = options;
  const lookup = allowPrivateTargets ? options.lookup : guardedLookup(options.lookup);
  // No limit of sockets per host: several subscriptions may share one (a gateway with a path each), and a
  // host-wide limit would queue a prompt subscription behind a hanging one. The dispatcher bounds the
  // attempts in flight per subscription and in all, and so the connections.
  const agentOptions = { keepAlive: true, ...(lookup ? { lookup } : {}) };
  const httpAgent = new http.Agent(agentOptions);
  const httpsAgent = new https.Agent(agentOptions);
  let loading: Promise<{ axios: AxiosStatic; client: AxiosInstance }> | undefined;
  const load = () =>
    (loading ??= import("axios").then(({ default: axios }) => ({
      axios,
      client: axios.create({
        httpAgent,
        httpsAgent,
        // HTTP(S)_PROXY would resolve the name itself, past the guard.
        proxy: false,
        maxRedirects: 0,
        responseType: "stream",
        // Every answer is an outcome to record, not an exception.
        validateStatus: () => true,
      }),
    })));

  return {
    async send(request) {
      const started = performance.now();
      const elapsed = () => Math.round(performance.now() - started);
      // The URL was checked at creation; the environment may have changed since (the override turned off).
      const target = checkTargetUrl(request.url, allowPrivateTargets);
      if (!target.ok) return { outcome: "network", durationMs: 0, error: target.problem };
      const { axios, client } = await load();
      const signal = AbortSignal.timeout(timeoutMs);
      for (let attempt = 1; ; attempt++) {
        try {
          const response = await client.post<Readable>(request.url, request.body, {
            headers: { "content-type": "application/json", "user-agent": "joinwindow", ...request.headers },
            signal,
          });
          const durationMs = elapsed();
          // Drained so the connection can be reused; a body still trickling at the deadline is cut with it.
          response.data.on("error", () => {}).resume();
          return { outcome: response.status, durationMs, error: null };
        } catch (error) {
          // A kept-alive connection the receiver closed just as it was reused (Node's server drops idle ones
          // after 5 s): the request never reached it, so it is sent once more at once, as Node's documentation
          // of `request.reusedSocket` advises, within the same deadline.
          if (attempt === 1 && resetOnReuse(axios, error)) continue;
          return { ...failureOf(axios, error), durationMs: elapsed() };
        }
      }
    },
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}

function resetOnReuse(axios: AxiosStatic, error: unknown): boolean {
  if (!axios.isAxiosError(error) || error.code !== "ECONNRESET") return false;
  return (error.request as { reusedSocket?: boolean } | undefined)?.reusedSocket === true;
}

/** Our own words for a failed attempt: an AxiosError carries the request, signature headers included. */
function failureOf(axios: AxiosStatic, error: unknown): Pick<AttemptResult, "outcome" | "error"> {
  const code = axios.isAxiosError(error) ? error.code : undefined;
  if (code === "ECONNABORTED" || code === "ETIMEDOUT" || code === "ERR_CANCELED") return { outcome: "timeout", error: null };
  // Our lookup's refusal, as axios passes it on (its code, or its cause's).
  for (const candidate of [error, (error as { cause?: unknown }).cause]) {
    const { code: refusal, message } = (candidate ?? {}) as { code?: unknown; message?: unknown };
    if (refusal === FORBIDDEN_ADDRESS && typeof message === "string") return { outcome: "network", error: message };
  }
  return { outcome: "network", error: code && /^[A-Z0-9_]+$/.test(code) ? `network error (${code})` : "network error" };
}
