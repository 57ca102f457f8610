// What the fakes of remote services (fake-vonage.ts, fake-genesys.ts,
// fake-jwks.ts) share: a node:http server on 127.0.0.1 that records every
// request, the faults a route can be switched to, and the answers they send.
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface RecordedRequest {
  method: string;
  /** Path and query, as sent (percent-encoding kept). */
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** Date.now() when the request arrived. */
  at: number;
}

export type Fault =
  | { kind: "fail"; status: number; retryAfter?: string | number }
  | { kind: "delay"; ms: number }
  | { kind: "hang" }
  | { kind: "malformed" }
  | { kind: "missingId" };

/** Faults of one route, applied in order to the next requests; `times` defaults to every request until reset(). */
export class RouteFaults {
  #queue: { fault: Fault; times: number }[] = [];

  /** Answer `status` (with a JSON error body and, if given, Retry-After). */
  fail(status: number, options: { times?: number; retryAfter?: string | number } = {}) {
    return this.#add({ kind: "fail", status, retryAfter: options.retryAfter }, options.times);
  }
  /** Answer normally, but only after `ms`. */
  delay(ms: number, options: { times?: number } = {}) {
    return this.#add({ kind: "delay", ms }, options.times);
  }
  /** Never answer (the connection stays open until close()). */
  hang(options: { times?: number } = {}) {
    return this.#add({ kind: "hang" }, options.times);
  }
  /** A 200 whose body is not JSON. */
  malformed(options: { times?: number } = {}) {
    return this.#add({ kind: "malformed" }, options.times);
  }
  /** A 200 whose answer lacks the id (session id, access token or video token). */
  missingId(options: { times?: number } = {}) {
    return this.#add({ kind: "missingId" }, options.times);
  }
  reset() {
    this.#queue = [];
  }
  /** The fault for the request being handled (consumed), if any. */
  take(): Fault | undefined {
    const head = this.#queue[0];
    if (!head) return undefined;
    head.times -= 1;
    if (head.times <= 0) this.#queue.shift();
    return head.fault;
  }
  #add(fault: Fault, times = Infinity) {
    this.#queue.push({ fault, times });
    return this;
  }
}

export type Handler = (request: RecordedRequest, response: ServerResponse) => Promise<void> | void;

export interface FakeServer {
  url: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

/** A node:http server on 127.0.0.1 (random port) that records every request, body included, before handing it over. */
export async function startFakeServer(handle: Handler): Promise<FakeServer> {
  const requests: RecordedRequest[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const at = Date.now();
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const recorded: RecordedRequest = {
        method: req.method ?? "",
        path: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
        at,
      };
      requests.push(recorded);
      Promise.resolve(handle(recorded, res)).catch((error: unknown) => {
        if (!res.headersSent) sendJson(res, 500, { message: String(error) });
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Hanging answers keep their connections open otherwise.
        server.closeAllConnections();
      }),
  };
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  if (res.destroyed) return;
  res.writeHead(status, { "Content-Type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

export function sendMalformed(res: ServerResponse) {
  if (res.destroyed) return;
  res.writeHead(200, { "Content-Type": "application/json" });
  res.end('{"truncated": [');
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

/**
 * Applies the fault that changes how (or whether) a request is answered.
 * Returns "answered" when the request is dealt with, otherwise the fault
 * (malformed / missingId / none) the normal handler must still apply.
 */
export async function applyFault(
  fault: Fault | undefined,
  res: ServerResponse,
  errorBody: (status: number) => unknown,
): Promise<"answered" | Fault | undefined> {
  switch (fault?.kind) {
    case "fail": {
      const headers: Record<string, string> = {};
      if (fault.retryAfter !== undefined) headers["Retry-After"] = String(fault.retryAfter);
      sendJson(res, fault.status, errorBody(fault.status), headers);
      return "answered";
    }
    case "hang":
      return "answered";
    case "delay":
      await sleep(fault.ms);
      return undefined;
    default:
      return fault;
  }
}
