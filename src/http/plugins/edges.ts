import { type IncomingMessage, type ServerResponse, STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { AppError, type ErrorCode, invalidRequest, notFound, shuttingDown } from "../../domain/errors.js";
import { PROBLEM_CONTENT_TYPE } from "../../schemas/problems.js";
import { problemBody, sendProblem } from "./problem-details.js";

/**
 * A problem+json answer written straight to the socket or the raw response,
 * for what never reaches Fastify's handlers: HTTP that Node's parser rejects,
 * a request that took too long to arrive, an `Expect` we cannot meet.
 */
function rawProblem(code: ErrorCode, detail: string) {
  const error = new AppError(code, detail);
  const body = JSON.stringify(problemBody(error));
  const headers = { "content-type": `${PROBLEM_CONTENT_TYPE}; charset=utf-8`, "content-length": String(Buffer.byteLength(body)) };
  return { status: error.status, body, headers };
}

const CLIENT_ERRORS: Record<string, [code: ErrorCode, detail: string]> = {
  HPE_HEADER_OVERFLOW: ["headers_too_large", "The HTTP request has headers that are too large."],
  ERR_HTTP_REQUEST_TIMEOUT: ["request_timeout", "The request did not arrive in time."],
};
const MALFORMED: [ErrorCode, string] = ["invalid_request", "The HTTP request is malformed."];

/** Requests Node's HTTP server refuses (malformed, too slow) never reach Fastify's handlers; they get the same problem+json. */
export function answerClientError(error: Error & { code?: string }, socket: Duplex) {
  if (!socket.writable) return socket.destroy();
  const { status, body, headers } = rawProblem(...(CLIENT_ERRORS[error.code ?? ""] ?? MALFORMED));
  const head = Object.entries({ ...headers, connection: "close" }).map(([name, value]) => `${name}: ${value}\r\n`);
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${head.join("")}\r\n${body}`);
}

/** RFC 9110 §10.1.1: only `100-continue` is an expectation this server can meet; Node would answer any other with a bare 417. */
function answerUnmetExpectation(_request: IncomingMessage, response: ServerResponse) {
  const { status, body, headers } = rawProblem("expectation_failed", "Only 'Expect: 100-continue' is supported.");
  response.writeHead(status, headers).end(body);
}

/**
 * What Node and Fastify would otherwise answer on their own, in another
 * format: an unmet `Expect`, an HTTP/1.1 request without `Host`, a request
 * arriving while the service shuts down, a body sent to a route that does
 * not exist. Registered after the security headers and the per-address limit,
 * so its hook runs after theirs and before any body is read.
 */
export default fp(
  async function edges(app: FastifyInstance) {
    app.server.on("checkExpectation", answerUnmetExpectation);

    // While shutting down, answers to requests still in flight close their keep-alive connection, so the
    // server can finish instead of waiting for idle clients to time out; new requests get a 503.
    let closing = false;
    app.addHook("preClose", async () => {
      closing = true;
    });
    app.addHook("onSend", (_request, reply, payload, done) => {
      if (closing) reply.header("connection", "close");
      done(null, payload);
    });
    // Hooks that run on every request take a callback rather than returning a promise: one allocation
    // and one microtask fewer each, on every answer.
    app.addHook("onRequest", (request, reply, done) => {
      if (closing) return void sendProblem(reply, shuttingDown());
      if (request.raw.httpVersion === "1.1" && request.headers.host === undefined) {
        return void sendProblem(reply, invalidRequest("An HTTP/1.1 request needs a Host header."));
      }
      // A route that does not exist is a 404 whatever its body: matching the route wins over parsing the body.
      if (request.is404) return void sendProblem(reply, notFound("No such route."));
      done();
    });
  },
  { name: "edges", dependencies: ["problem-details", "security"] },
);
