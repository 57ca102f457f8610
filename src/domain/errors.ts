/**
 * The service's one error vocabulary (API.md "Errors"): every code the
 * contract names, with its status and title, in one place. Everything that
 * refuses a request throws an AppError made here; the HTTP layer turns it into
 * RFC 9457 problem+json, and the OpenAPI document reads its statuses from here.
 * `extra` holds the contract's additional members (`opensAt`,
 * `otherAppointmentId`, `errors`, …) and never carries a token or a secret.
 */
const CATALOGUE = {
  invalid_request: { status: 400, title: "Invalid request" },
  invalid_signature: { status: 401, title: "Unauthorized" },
  unauthenticated: { status: 401, title: "Unauthorized" },
  insufficient_scope: { status: 403, title: "Forbidden" },
  access_blocked: { status: 403, title: "Forbidden" },
  not_found: { status: 404, title: "Not Found" },
  request_timeout: { status: 408, title: "Request Timeout" },
  appointment_cancelled: { status: 409, title: "Conflict" },
  active_elsewhere: { status: 409, title: "Conflict" },
  participant_limit: { status: 409, title: "Conflict" },
  token_inactive: { status: 409, title: "Conflict" },
  join_window_closed: { status: 410, title: "Gone" },
  payload_too_large: { status: 413, title: "Payload Too Large" },
  unsupported_media_type: { status: 415, title: "Unsupported Media Type" },
  expectation_failed: { status: 417, title: "Expectation Failed" },
  missing_time_zone: { status: 422, title: "Unprocessable Content" },
  invalid_time_zone: { status: 422, title: "Unprocessable Content" },
  nonexistent_local_time: { status: 422, title: "Unprocessable Content" },
  invalid_time_range: { status: 422, title: "Unprocessable Content" },
  invalid_subscription_url: { status: 422, title: "Unprocessable Content" },
  too_early: { status: 425, title: "Too Early" },
  waiting_for_host: { status: 425, title: "Too Early" },
  headers_too_large: { status: 431, title: "Request Header Fields Too Large" },
  rate_limited: { status: 429, title: "Too Many Requests" },
  internal_error: { status: 500, title: "Internal Server Error" },
  provider_unavailable: { status: 503, title: "Service Unavailable" },
  not_ready: { status: 503, title: "Service Unavailable" },
  shutting_down: { status: 503, title: "Service Unavailable" },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof CATALOGUE;

export const statusOf = (code: ErrorCode): number => CATALOGUE[code].status;

export interface ValidationIssue {
  path: string;
  message: string;
}

export class AppError extends Error {
  override name = "AppError";
  readonly status: number;
  readonly title: string;

  constructor(
    readonly code: ErrorCode,
    readonly detail: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
    this.status = CATALOGUE[code].status;
    this.title = CATALOGUE[code].title;
  }
}

const retryAfter = (seconds: number) => ({ "retry-after": String(seconds) });

export const invalidRequest = (detail: string, errors?: ValidationIssue[]) =>
  new AppError("invalid_request", detail, errors ? { errors } : {});

export const notFound = (detail = "No such resource.") => new AppError("not_found", detail);

export const notReady = () => new AppError("not_ready", "The database is unreachable; try again shortly.", {}, retryAfter(5));

export const shuttingDown = () =>
  new AppError("shutting_down", "This instance is shutting down; try again (another instance answers).", {}, {
    ...retryAfter(1),
    connection: "close",
  });

export const providerUnavailable = (detail: string, retryAfterSeconds = 5) =>
  new AppError("provider_unavailable", detail, {}, retryAfter(retryAfterSeconds));

export const rateLimited = (retryAfterSeconds: number) =>
  new AppError("rate_limited", `Too many requests; try again in ${retryAfterSeconds} s.`, {}, retryAfter(retryAfterSeconds));

/** 422 with the path of the offending field, as schema errors report theirs. */
export const unprocessable = (code: ErrorCode, detail: string, issue?: ValidationIssue) =>
  new AppError(code, detail, issue ? { errors: [issue] } : {});
