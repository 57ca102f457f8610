/**
 * Tells a database that cannot be reached (refused, stalled, pool exhausted,
 * query timeout) from a query that failed on its own merits, so the HTTP layer
 * can answer 503 `not_ready` for the first and keep the second a bug.
 */
const UNAVAILABLE_MESSAGES = [
  "timeout exceeded when trying to connect",
  "Connection terminated",
  "Query read timeout",
  "connect ECONNREFUSED",
  "ECONNRESET",
  "Can't reach database server",
  "Client has encountered a connection error",
  "Cannot use a pool after calling end",
  "the database system is shutting down",
  "the database system is starting up",
];

// Prisma's codes for "the database is not there" (connection, timeouts, pool).
// P2028: a transaction could not start (no connection within maxWait) or outlived its timeout.
const UNAVAILABLE_PRISMA_CODES = new Set(["P1001", "P1002", "P1008", "P1017", "P2024", "P2028"]);

/**
 * A value Postgres refused to store (SQLSTATE class 22: a NUL byte, a date out
 * of range, …). Validation should have caught it; if it did not, it is still
 * the caller's input, so a 400 rather than a 500.
 */
export function isRejectedValue(error: unknown): boolean {
  for (let current: unknown = error, depth = 0; current && depth < 5; depth++) {
    const candidate = current as { code?: unknown; cause?: unknown; originalCode?: unknown };
    for (const code of [candidate.code, candidate.originalCode]) {
      if (typeof code === "string" && /^22[0-9A-Z]{3}$/.test(code)) return true;
    }
    current = candidate.cause;
  }
  return false;
}

export function isDatabaseUnavailable(error: unknown): boolean {
  for (let current: unknown = error, depth = 0; current && depth < 5; depth++) {
    const candidate = current as { code?: unknown; message?: unknown; cause?: unknown };
    if (typeof candidate.code === "string" && UNAVAILABLE_PRISMA_CODES.has(candidate.code)) return true;
    if (typeof candidate.code === "string" && /^(57P0[1-3]|08\d{3})$/.test(candidate.code)) return true;
    const message = typeof candidate.message === "string" ? candidate.message : "";
    if (UNAVAILABLE_MESSAGES.some((m) => message.includes(m))) return true;
    current = candidate.cause;
  }
  return false;
}
