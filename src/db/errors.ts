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
// What @prisma/adapter-pg calls a socket-level failure, in the driver adapter error it wraps.
const UNAVAILABLE_ADAPTER_KINDS = new Set(["DatabaseNotReachable", "ConnectionClosed", "SocketTimeout", "TooManyConnections"]);
// SQLSTATE: 57P01-57P03 the server is shutting down, terminated this backend or cannot connect now;
// 53300 too many connections; class 08 connection exceptions.
const UNAVAILABLE_SQLSTATE = /^(57P0[1-3]|53300|08[0-9A-Z]{3})$/;

interface ErrorLike {
  code?: unknown;
  originalCode?: unknown;
  kind?: unknown;
  message?: unknown;
  cause?: unknown;
  meta?: { driverAdapterError?: unknown };
}

/**
 * The error and what it wraps: `cause` chains (pg, our own), and the driver
 * adapter error a Prisma error carries in `meta.driverAdapterError` (whose
 * `cause` holds the SQLSTATE as `originalCode`).
 */
function* chain(error: unknown): Generator<ErrorLike> {
  const pending: unknown[] = [error];
  for (let seen = 0; pending.length > 0 && seen < 10; seen++) {
    const current = pending.shift();
    if (!current || typeof current !== "object") continue;
    const candidate = current as ErrorLike;
    yield candidate;
    pending.push(candidate.cause, candidate.meta?.driverAdapterError);
  }
}

const codesOf = (candidate: ErrorLike) =>
  [candidate.code, candidate.originalCode].filter((code): code is string => typeof code === "string");

/**
 * A value Postgres refused to store (SQLSTATE class 22: a NUL byte, a date out
 * of range, …). Validation should have caught it; if it did not, it is still
 * the caller's input, so a 400 rather than a 500.
 */
export function isRejectedValue(error: unknown): boolean {
  for (const candidate of chain(error)) {
    if (codesOf(candidate).some((code) => /^22[0-9A-Z]{3}$/.test(code))) return true;
  }
  return false;
}

/** A row a unique key already holds (SQLSTATE 23505). */
export function isUniqueViolation(error: unknown): boolean {
  for (const candidate of chain(error)) {
    if (codesOf(candidate).includes("23505")) return true;
  }
  return false;
}

export function isDatabaseUnavailable(error: unknown): boolean {
  for (const candidate of chain(error)) {
    if (codesOf(candidate).some((code) => UNAVAILABLE_PRISMA_CODES.has(code) || UNAVAILABLE_SQLSTATE.test(code))) return true;
    if (typeof candidate.kind === "string" && UNAVAILABLE_ADAPTER_KINDS.has(candidate.kind)) return true;
    const message = typeof candidate.message === "string" ? candidate.message : "";
    if (UNAVAILABLE_MESSAGES.some((m) => message.includes(m))) return true;
  }
  return false;
}
