import { type TSchema, Type } from "typebox";
import { type ErrorCode, statusOf } from "../domain/errors.js";

/** How every error of this service is answered (RFC 9457). */
export const PROBLEM_CONTENT_TYPE = "application/problem+json";

const Instant = Type.String({ format: "date-time", description: "UTC, millisecond precision, `Z` suffix" });

const ValidationErrors = Type.Array(
  Type.Object({
    path: Type.String({ description: "JSON Pointer to the offending value, e.g. /data/startsAt" }),
    message: Type.String(),
  }),
  { description: "What is wrong, where (validation errors only)" },
);

/**
 * Response headers as @fastify/swagger takes them (a JSON Schema per name).
 * `required` is the OpenAPI Header Object's, which the plugin would leave
 * inside the schema: openapi.ts moves it out.
 */
interface HeaderSpec {
  type: "integer" | "string";
  minimum?: number;
  description: string;
  required?: boolean;
}

const RETRY_AFTER: Record<string, HeaderSpec> = {
  "Retry-After": { type: "integer", minimum: 0, description: "Seconds to wait before trying again", required: true },
};
const BEARER_CHALLENGE: Record<string, HeaderSpec> = {
  "WWW-Authenticate": { type: "string", description: "RFC 6750 Bearer challenge", required: true },
};

interface CodeSpec {
  /** When the service answers it (API.md "Errors"). */
  when: string;
  /** Members besides type, title, status, detail and code. */
  members?: Record<string, TSchema>;
  headers?: Record<string, HeaderSpec>;
}

/** What the document says of every problem `code` the service sends (their statuses are the catalogue's, domain/errors.ts). */
const CODES = {
  invalid_request: {
    when: "the body is not JSON, the request does not match the schema, or the HTTP request is malformed (an HTTP/1.1 request without Host)",
    members: { errors: Type.Optional(ValidationErrors) },
  },
  invalid_signature: { when: "the webhook signature or timestamp is missing or wrong" },
  unauthenticated: {
    when: "the bearer JWT is missing, malformed, expired, not yet valid, or signed with another key or algorithm",
    headers: BEARER_CHALLENGE,
  },
  insufficient_scope: { when: "the JWT lacks the scope the operation needs", headers: BEARER_CHALLENGE },
  access_blocked: { when: "an operator's kill switch blocks the appointment" },
  not_found: { when: "unknown appointment, or the caller is not its agent or customer" },
  appointment_cancelled: { when: "the appointment was cancelled" },
  active_elsewhere: {
    when: "the caller holds a live token for another appointment (send supersede: true to leave it)",
    members: { otherAppointmentId: Type.String({ description: "The other appointment's externalId" }) },
  },
  participant_limit: { when: "another participant would exceed maxParticipants" },
  token_inactive: {
    when: "a presence report of `joined` for a token that is not active: the gateway must not admit that participant",
    members: {
      reason: Type.Union([Type.Literal("unknown"), Type.Literal("revoked"), Type.Literal("expired"), Type.Literal("not_yet_valid")]),
    },
  },
  join_window_closed: {
    when: "the join window has closed",
    members: { closedAt: Instant },
  },
  request_timeout: {
    when: "the request (headers and body) did not arrive within HTTP_REQUEST_TIMEOUT_MS; the connection is closed",
  },
  payload_too_large: { when: "the body is larger than 64 KiB" },
  unsupported_media_type: { when: "the body is not JSON (or, where accepted, a form)" },
  missing_time_zone: {
    when: "a local time without an offset, and no timeZone",
    members: { errors: Type.Optional(ValidationErrors) },
  },
  invalid_time_zone: {
    when: "timeZone is not an IANA time zone",
    members: { errors: Type.Optional(ValidationErrors) },
  },
  nonexistent_local_time: {
    when: "a local time skipped by a daylight-saving change",
    members: { errors: Type.Optional(ValidationErrors) },
  },
  expectation_failed: { when: "an Expect header other than 100-continue" },
  invalid_time_range: { when: "endsAt is not after startsAt, or the appointment lasts over 24 h" },
  invalid_subscription_url: {
    when: "the subscription URL is not https, carries credentials, or is (or resolves to) a loopback, link-local, private or unique-local address",
  },
  too_early: {
    when: "before the caller's opening time",
    members: { opensAt: Instant },
    headers: RETRY_AFTER,
  },
  waiting_for_host: {
    when: "the caller is the customer, the waiting room is on and the agent holds no live token yet (ask again after Retry-After, at most 10 s)",
    headers: RETRY_AFTER,
  },
  headers_too_large: { when: "the request's headers are larger than the server accepts" },
  rate_limited: { when: "too many requests from this address (or join-token requests from this user)", headers: RETRY_AFTER },
  provider_unavailable: {
    when: "the video provider cannot give a session or token now",
    headers: RETRY_AFTER,
  },
  not_ready: { when: "the database is unreachable", headers: RETRY_AFTER },
  shutting_down: {
    when: "this instance is shutting down (the connection is closed; another instance answers)",
    headers: RETRY_AFTER,
  },
} satisfies Record<Exclude<ErrorCode, "internal_error">, CodeSpec>;

export type ProblemCode = keyof typeof CODES;

/**
 * What any request may be answered before its route runs, added to every
 * route's problems: HTTP the server refuses, a request that arrived too
 * slowly, an Expect it cannot meet, the instance shutting down.
 */
const EVERY_REQUEST = [
  "invalid_request",
  "request_timeout",
  "expectation_failed",
  "headers_too_large",
  "shutting_down",
] as const satisfies ProblemCode[];

/** A route that takes a body: besides INPUT, Fastify's body limit and content-type parsers answer. */
export const BODY = ["invalid_request", "payload_too_large", "unsupported_media_type"] as const satisfies ProblemCode[];
/** A route behind `app.authenticate`. */
export const AUTHENTICATED = ["unauthenticated"] as const satisfies ProblemCode[];
/** A route behind `app.authenticate` and `requireScope`. */
export const SCOPED = ["unauthenticated", "insufficient_scope"] as const satisfies ProblemCode[];
/** Every route without `config: { rateLimit: false }`: the per-address limit runs before anything else. */
export const RATE_LIMITED = ["rate_limited"] as const satisfies ProblemCode[];
/** A route that reads or writes the database. */
export const DATABASE = ["not_ready"] as const satisfies ProblemCode[];

function problemSchema(code: ProblemCode) {
  const spec: CodeSpec = CODES[code];
  return Type.Object(
    {
      type: Type.Literal(`urn:joinwindow:problem:${code}`),
      title: Type.String(),
      status: Type.Literal(statusOf(code)),
      detail: Type.String(),
      code: Type.Literal(code),
      ...spec.members,
    },
    { title: code },
  );
}

/**
 * The error answers of a route, for its `schema.response`: one entry per
 * status, with each code of that status, the members it adds and the headers
 * it sends. Fastify compiles no serializer that matters here (problems are
 * sent already stringified); the entries are for the OpenAPI document and
 * the tests that check answers against it.
 */
export function problems(...codes: ProblemCode[]) {
  const byStatus = new Map<number, ProblemCode[]>();
  for (const code of new Set<ProblemCode>([...codes, ...EVERY_REQUEST])) {
    const status = statusOf(code);
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return Object.fromEntries(
    [...byStatus].map(([status, group]) => {
      const specs: CodeSpec[] = group.map((code) => CODES[code]);
      const headers: Record<string, HeaderSpec> = {};
      for (const spec of specs) {
        for (const [name, header] of Object.entries(spec.headers ?? {})) {
          // Required only where every code of the status sends it.
          headers[name] = { ...header, required: specs.every((other) => other.headers?.[name] !== undefined) };
        }
      }
      const variants = group.map(problemSchema);
      return [
        status,
        {
          description: group.map((code) => `\`${code}\`: ${CODES[code].when}`).join("; "),
          ...(Object.keys(headers).length > 0 ? { headers } : {}),
          content: { [PROBLEM_CONTENT_TYPE]: { schema: variants.length === 1 ? variants[0] : Type.Union(variants) } },
        },
      ];
    }),
  );
}
