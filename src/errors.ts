/**
 * The service's one error vocabulary. Services throw AppError with the
 * contract's stable `code` (API.md "Errors"); the HTTP layer maps it once to
 * RFC 9457 problem+json. `extra` holds the contract's additional members
 * (`opensAt`, `otherAppointmentId`, `errors`, …) and must never carry a
 * token or a secret.
 */
export class AppError extends Error {
  override name = "AppError";

  constructor(
    readonly status: number,
    readonly code: string,
    readonly title: string,
    readonly detail: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }
}

export const notFound = (detail = "No such resource.") => new AppError(404, "not_found", "Not Found", detail);

export const invalidRequest = (detail: string, errors?: { path: string; message: string }[]) =>
  new AppError(400, "invalid_request", "Invalid request", detail, errors ? { errors } : {});

export const notReady = (detail = "The database is unreachable; try again shortly.") =>
  new AppError(503, "not_ready", "Service Unavailable", detail, {}, { "retry-after": "5" });

export const shuttingDown = () =>
  new AppError(503, "shutting_down", "Service Unavailable", "This instance is shutting down; try again (another instance answers).", {}, {
    "retry-after": "1",
    connection: "close",
  });
