import net from "node:net";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startApp, type TestApp } from "../helpers/app.js";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy.js";

/**
 * HTTP at the edges, over raw sockets: what Node's server or Fastify would
 * answer on their own (a bare 417, a bare 400, a plain-JSON 503 while
 * closing, a body parsed for a route that does not exist) and clients that
 * hold a connection without finishing their request.
 */

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Milliseconds from the first byte sent until the server closed the connection (or the answer was complete). */
  elapsedMs: number;
}

function parseAnswer(raw: string, elapsedMs: number): RawAnswer {
  const [head = "", ...rest] = raw.split("\r\n\r\n");
  const [statusLine = "", ...headerLines] = head.split("\r\n");
  const headers = Object.fromEntries(
    headerLines.map((line) => {
      const colon = line.indexOf(":");
      return [line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()];
    }),
  );
  return { status: Number(statusLine.split(" ")[1]), headers, body: rest.join("\r\n\r\n"), elapsedMs };
}

/**
 * Sends `chunks` on a fresh connection (each after `gapMs`, or when `gate` resolves for the second one),
 * and resolves with the answer once the server closes the connection or sends a complete one.
 */
function rawRequest(url: string, chunks: string[], options: { gapMs?: number; gate?: Promise<unknown> } = {}): Promise<RawAnswer> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const started = Date.now();
    let data = "";
    let timer: NodeJS.Timeout | undefined;
    const socket = net.connect(Number(port), "127.0.0.1", async () => {
      for (const [i, chunk] of chunks.entries()) {
        if (i > 0) {
          if (options.gate && i === 1) await options.gate;
          else await new Promise((r) => (timer = setTimeout(r, options.gapMs ?? 0)));
        }
        if (socket.destroyed) return;
        socket.write(chunk);
      }
    });
    const finish = () => {
      clearTimeout(timer);
      resolve(parseAnswer(data, Date.now() - started));
    };
    socket.on("data", (chunk) => {
      data += chunk;
      const answer = parseAnswer(data, 0);
      const length = Number(answer.headers["content-length"]);
      if (Number.isFinite(length) && Buffer.byteLength(answer.body) >= length) {
        socket.destroy();
        finish();
      }
    });
    socket.on("close", finish);
    socket.on("error", reject);
  });
}

const expectProblem = (answer: RawAnswer, status: number, code: string) => {
  expect(answer.status, answer.body).toBe(status);
  expect(answer.headers["content-type"]).toContain("application/problem+json");
  expect(JSON.parse(answer.body)).toMatchObject({ status, code });
};

describe("HTTP at the edges", () => {
  const REQUEST_TIMEOUT_MS = 1000;
  let t: TestApp;
  let proxy: TcpProxy;
  beforeAll(async () => {
    const direct = new URL(inject("databaseUrl"));
    proxy = await startTcpProxy(direct.hostname, Number(direct.port || 5432));
    t = await startApp({ HTTP_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS), DATABASE_URL: proxy.urlFor(direct.toString()) });
    await t.listen();
  });
  afterAll(async () => {
    await t.close();
    await proxy.close();
  });

  it("answers an Expect it cannot meet with a problem+json 417", async () => {
    const answer = await rawRequest(t.url, ["GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nConnection: close\r\n\r\n"]);
    expectProblem(answer, 417, "expectation_failed");
  });

  it("still serves Expect: 100-continue", async () => {
    const answer = await rawRequest(t.url, ["GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"]);
    expect(answer.body).toContain('"status":"ok"');
  });

  it("answers an HTTP/1.1 request without Host with a problem+json 400", async () => {
    const answer = await rawRequest(t.url, ["GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"]);
    expectProblem(answer, 400, "invalid_request");
    expect(JSON.parse(answer.body).detail).toMatch(/Host/);
  });

  it("answers headers over Node's limit with a problem+json 431", async () => {
    const answer = await rawRequest(t.url, [`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`]);
    expectProblem(answer, 431, "headers_too_large");
  });

  it("answers an unknown route 404 whatever its body, before parsing it", async () => {
    for (const [type, body] of [
      ["application/json", "{not json"],
      ["text/plain", "hello"],
      ["application/json", "x".repeat(70 * 1024)],
    ]) {
      const res = await t.app.inject({ method: "POST", url: "/v1/no-such-route", headers: { "content-type": type }, payload: body });
      expect(res.statusCode, type).toBe(404);
      expect(res.headers["content-type"]).toContain("application/problem+json");
      expect(res.json().code).toBe("not_found");
    }
  });

  it("cuts a client that trickles its body, with a problem+json 408, within the request timeout", async () => {
    const headers = "POST /v1/webhooks/appointments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    const answer = await rawRequest(t.url, [headers, ...Array.from({ length: 40 }, () => " ")], { gapMs: 200 });
    expectProblem(answer, 408, "request_timeout");
    expect(answer.headers.connection).toBe("close");
    // Node checks for overdue requests every second.
    expect(answer.elapsedMs).toBeLessThan(REQUEST_TIMEOUT_MS + 2000);
  });

  it("cuts a connection that never sends a request, within the request timeout", async () => {
    const answer = await rawRequest(t.url, []);
    expect(answer.status).toBe(408);
    expect(answer.elapsedMs).toBeLessThan(REQUEST_TIMEOUT_MS + 2000);
  });

  it("does not cut a request that arrived in time but takes longer than that to answer", async () => {
    // With the database stalled, /readyz answers after its own 2 s bound: time spent answering never counts.
    proxy.stall();
    try {
      const answer = await rawRequest(t.url, ["GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]);
      expectProblem(answer, 503, "not_ready");
      expect(answer.elapsedMs).toBeGreaterThan(REQUEST_TIMEOUT_MS + 500);
    } finally {
      proxy.restore();
    }
  });
});

describe("while shutting down", () => {
  it("answers a request that arrives on an open connection with a problem+json 503 and closes it", async () => {
    const t = await startApp();
    await t.listen();
    let closing: Promise<void> | undefined;
    const gate = new Promise<void>((resolve) => {
      // The request has begun (so the connection is not idle and stays open), and completes once close() is under way.
      setTimeout(() => {
        closing = t.close();
        setTimeout(resolve, 100);
      }, 200);
    });
    const answer = await rawRequest(t.url, ["GET /healthz HTTP/1.1\r\nHost: x\r\n", "\r\n"], { gate });
    await closing;
    expectProblem(answer, 503, "shutting_down");
    expect(answer.headers.connection).toBe("close");
    expect(answer.headers["retry-after"]).toBeDefined();
  });
});
