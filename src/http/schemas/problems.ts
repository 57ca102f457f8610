import { type TSchema, Type } from "typebox";
import { PROBLEM_CONTENT_TYPE } from "../plugins/problem-details.js";

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
  status: number;
  /** When the service answers it (API.md "Errors"). */
  when: string;
  /** Members besides type, title, status, detail and code. */
  members?: Record<string, TSchema>;
  headers?: Record<string, HeaderSpec>;
}

/** Every problem `code` the service sends, with its status: API.md's table of errors. */
const CODES = {
  invalid_request: {
    status: 400,
    when: "the body is not JSON, the request does not match the schema, or the HTTP request is malformed (an HTTP/1.1 request without Host)",
    members: { errors: Type.Optional(ValidationErrors) },
  },
  invalid_signature: { status: 401, when: "the webhook signature or timestamp is missing or wrong" },
  unauthenticated: {
    status: 401,
    when: "the bearer JWT is missing, malformed, expired, not yet valid, or signed with another key or algorithm",
    headers: BEARER_CHALLENGE,
  },
  insufficient_scope: { status: 403, when: "the JWT lacks the scope the operation needs", headers: BEARER_CHALLENGE },
  access_blocked: { status: 403, when: "an operator's kill switch blocks the appointment" },
  not_found: { status: 404, when: "unknown appointment, or the caller is not its agent or customer" },
  appointment_cancelled: { status: 409, when: "the appointment was cancelled" },
  active_elsewhere: {
    status: 409,
    when: "the caller holds a live token for another appointment (send supersede: true to leave it)",
    members: { otherAppointmentId: Type.String({ description: "The other appointment's externalId" }) },
  },
  participant_limit: { status: 409, when: "another participant would exceed maxParticipants" },
  join_window_closed: {
    status: 410,
    when: "the join window has closed",
    members: { closedAt: Instant },
  },
  request_timeout: {
    status: 408,
    when: "the request (headers and body) did not arrive within HTTP_REQUEST_TIMEOUT_MS; the connection is closed",
  },
  payload_too_large: { status: 413, when: "the body is larger than 64 KiB" },
  unsupported_media_type: { status: 415, when: "the body is not JSON (or, where accepted, a form)" },
  missing_time_zone: {
    status: 422,
    when: "a local time without an offset, and no timeZone",
    members: { errors: Type.Optional(ValidationErrors) },
  },
  invalid_time_zone: {
    status: 422,
    when: "timeZone is not an IANA time zone",
    members: { errors: Type.Optional(ValidationErrors) },
  },
  nonexistent_local_time: {
    status: 422,
    when: "a local time skipped by a daylight-saving change",
    members: { errors: Type.Optional(ValidationErrors) },
  },
  expectation_failed: { status: 417, when: "an Expect header other than 100-continue" },
  invalid_time_range: { status: 422, when: "endsAt is not after startsAt, or the appointment lasts over 24 h" },
  too_early: {
    status: 425,
    when: "before the caller's opening time",
    members: { opensAt: Instant },
    headers: RETRY_AFTER,
  },
  headers_too_large: { status: 431, when: "the request's headers are larger than the server accepts" },
  rate_limited: { status: 429, when: "too many requests from this address (or join-token requests from this user)", headers: RETRY_AFTER },
  provider_unavailable: {
    status: 503,
    when: "the video provider cannot give a session or token now",
    headers: RETRY_AFTER,
  },
  not_ready: { status: 503, when: "the database is unreachable", headers: RETRY_AFTER },
  shutting_down: {
    status: 503,
    when: "this instance is shutting down (the connection is closed; another instance answers)",
    headers: RETRY_AFTER,
  },
} satisfies Record<string, CodeSpec>;

export type ProblemCode = keyof typeof CODES;

/**
 * What any request may be answered before its route runs, added to every
 * route's problems: HTTP the server refuses, a request that arrived too
 * slowly, an Expect it cannot meet, the instance shutting down.
 */
export const EVERY_REQUEST = [
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
      status: Type.Literal(spec.status),
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
    const { status } = CODES[code];
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
