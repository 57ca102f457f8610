import { AppError, invalidRequest, unprocessable } from "./errors.js";

/**
 * The scheduler's startsAt / endsAt / timeZone (API.md §1) turned into UTC
 * instants. Pure: no I/O, no clock, and no dependence on the process's own
 * time zone. The only time-zone primitive is the platform's ICU (Intl): the
 * UTC offset of a zone at an instant. date-fns-tz is a thin layer over the same
 * Intl calls, but its wall-clock helpers read the host's local fields (wrong in
 * DST gaps and folds), and its offset lookup, formatInTimeZone(…, "xxx"), costs
 * 34 µs a call against 7 µs and loads date-fns's formatter (~18 MB of memory).
 * The tests check this module's offsets against date-fns-tz.
 */

export interface AppointmentTimesInput {
  startsAt: string;
  endsAt: string;
  timeZone?: string | null;
}

export interface AppointmentTimes {
  startsAt: Date;
  endsAt: Date;
}

export const MAX_APPOINTMENT_MS = 24 * 60 * 60 * 1000;

const TIME_ZONE_PATH = "/data/timeZone";
const MINUTE_MS = 60_000;
const DAY_MS = 24 * 60 * MINUTE_MS;
const MAX_OFFSET_MINUTES = 14 * 60;

// RFC 3339 / ISO 8601 extended format as schedulers send it: up to 9 fractional
// digits (.NET writes 7; kept to the millisecond), Z or z, offsets ±HH:mm, ±HHmm or ±HH.
const ISO_DATE_TIME =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?$/;

const FORMAT_MESSAGE =
  "must be an ISO 8601 date-time: YYYY-MM-DDTHH:mm[:ss[.fraction]], optionally followed by Z or ±HH:mm";

/** Years whose derived instants (join window ± a day) stay valid everywhere: Postgres, Date, toISOString. */
const MIN_YEAR = 1900;
const MAX_YEAR = 9998;

interface Issue {
  path: string;
  message: string;
}

interface ParsedDateTime {
  text: string;
  /** The written fields read as if they were UTC: the wall-clock time for local values. */
  wallMs: number;
  /** Minutes east of UTC; null for a local wall-clock time. */
  offsetMinutes: number | null;
}

type ParseResult = { ok: true; value: ParsedDateTime } | { ok: false; issue: Issue };

export function isValidTimeZone(name: string): boolean {
  return canonicalTimeZone(name) !== null;
}

export function resolveInstant(value: string, timeZone: string | null | undefined, path: string): Date {
  const parsed = parseDateTime(value, path);
  if (!parsed.ok) throw badSyntax([parsed.issue]);
  return resolveParsed(parsed.value, checkedTimeZone(timeZone), path);
}

export function resolveAppointmentTimes(input: AppointmentTimesInput): AppointmentTimes {
  const start = parseDateTime(input.startsAt, "/data/startsAt");
  const end = parseDateTime(input.endsAt, "/data/endsAt");
  // Report every malformed field at once; syntax (400) outranks the 422s.
  const issues = [start, end].flatMap((r) => (r.ok ? [] : [r.issue]));
  if (!start.ok || !end.ok) throw badSyntax(issues);

  const zone = checkedTimeZone(input.timeZone);
  const startsAt = resolveParsed(start.value, zone, "/data/startsAt");
  const endsAt = resolveParsed(end.value, zone, "/data/endsAt");

  const duration = endsAt.getTime() - startsAt.getTime();
  if (duration <= 0) {
    throw new AppError("invalid_time_range", `endsAt (${endsAt.toISOString()}) must be after startsAt (${startsAt.toISOString()}).`);
  }
  if (duration > MAX_APPOINTMENT_MS) {
    throw new AppError(
      "invalid_time_range",
      `An appointment may last at most 24 hours; ${startsAt.toISOString()} to ${endsAt.toISOString()} is longer.`,
    );
  }
  return { startsAt, endsAt };
}

function badSyntax(issues: Issue[]): AppError {
  const detail = issues.map((i) => `${i.path} ${i.message}.`).join(" ");
  return invalidRequest(detail, issues);
}

function parseDateTime(value: string, path: string): ParseResult {
  const fail = (message: string): ParseResult => ({ ok: false, issue: { path, message } });
  if (typeof value !== "string") return fail(FORMAT_MESSAGE);
  const m = ISO_DATE_TIME.exec(value);
  if (!m) return fail(FORMAT_MESSAGE);

  const [, y, mo, d, h, mi, s = "0", frac = "", z, sign, oh, om = "00"] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(mi);
  const second = Number(s);
  const ms = Number(frac.slice(0, 3).padEnd(3, "0"));

  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) {
    return fail(`is not a calendar date (${y}-${mo}-${d})`);
  }
  if (year < MIN_YEAR || year > MAX_YEAR) return fail(`is outside the supported years ${MIN_YEAR}–${MAX_YEAR}`);
  if (hour > 23 || minute > 59 || second > 59) {
    return fail("has a time of day out of range (hours 00–23, minutes and seconds 00–59)");
  }

  let offsetMinutes: number | null = null;
  if (z) {
    offsetMinutes = 0;
  } else if (sign && oh) {
    const magnitude = Number(oh) * 60 + Number(om);
    if (Number(om) > 59 || magnitude > MAX_OFFSET_MINUTES) {
      return fail("has a UTC offset out of range (at most ±14:00)");
    }
    offsetMinutes = sign === "-" ? -magnitude : magnitude;
  }

  // Date.UTC maps years 0–99 to 19xx; setUTCFullYear does not.
  const wall = new Date(0);
  wall.setUTCFullYear(year, month - 1, day);
  wall.setUTCHours(hour, minute, second, ms);
  return { ok: true, value: { text: value, wallMs: wall.getTime(), offsetMinutes } };
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** null when no zone was given; throws invalid_time_zone for an unknown one. */
function checkedTimeZone(timeZone: string | null | undefined): string | null {
  if (timeZone === undefined || timeZone === null || timeZone === "") return null;
  const canonical = canonicalTimeZone(timeZone);
  if (canonical === null) {
    const shown = JSON.stringify(String(timeZone).slice(0, 100));
    throw unprocessable("invalid_time_zone", `timeZone ${shown} is not a known IANA time zone.`, {
      path: TIME_ZONE_PATH,
      message: "must be an IANA time zone name, e.g. America/New_York",
    });
  }
  return canonical;
}

/**
 * Building an Intl.DateTimeFormat costs tens of microseconds, and a name
 * always resolves the same way. Intl accepts any casing of a name, so the
 * number of accepted spellings is unbounded: only the first ones are kept.
 */
const canonicalNames = new Map<string, string>();
const MAX_REMEMBERED_NAMES = 2048;

/**
 * ICU's spelling of the zone, or null if unknown. Canonical casing keeps
 * the per-zone formatters bounded whatever casing a caller sends, and is what
 * the service stores and returns.
 */
export function canonicalTimeZone(name: string): string | null {
  if (typeof name !== "string" || name === "") return null;
  // Newer V8 accepts offset strings such as "+05:30" as zones; they are not IANA names.
  if (name.startsWith("+") || name.startsWith("-")) return null;
  const known = canonicalNames.get(name);
  if (known) return known;
  try {
    const canonical = new Intl.DateTimeFormat("en-US", { timeZone: name }).resolvedOptions().timeZone;
    if (canonicalNames.size < MAX_REMEMBERED_NAMES) canonicalNames.set(name, canonical);
    return canonical;
  } catch {
    return null;
  }
}

function resolveParsed(parsed: ParsedDateTime, zone: string | null, path: string): Date {
  if (parsed.offsetMinutes !== null) return new Date(parsed.wallMs - parsed.offsetMinutes * MINUTE_MS);
  if (zone === null) {
    throw unprocessable("missing_time_zone", `${path} is a local time without an offset, so timeZone (an IANA name) is required.`, {
      path,
      message: "has no offset and no timeZone was given",
    });
  }
  return resolveLocal(parsed, zone, path);
}

/**
 * Wall-clock time in `zone` → instant. fromZonedTime is not used: it shifts
 * times in a gap silently, and which instant it picks in a fold depends on the
 * zone and on the host's TZ. Instead, like Temporal: take the offsets a day
 * either side, keep those that map back to the same wall-clock time, and pick
 * the earliest (the fold's first pass); none means the time is in a gap.
 */
function resolveLocal(parsed: ParsedDateTime, zone: string, path: string): Date {
  const { wallMs } = parsed;
  const before = offsetMinutesAt(wallMs - DAY_MS, zone);
  const after = offsetMinutesAt(wallMs + DAY_MS, zone);
  const candidates = [...new Set([before, after])]
    .map((offset) => wallMs - offset * MINUTE_MS)
    .filter((instant) => instant + offsetMinutesAt(instant, zone) * MINUTE_MS === wallMs);
  if (candidates.length === 0) {
    throw unprocessable(
      "nonexistent_local_time",
      `${path} ${parsed.text} does not exist in ${zone}: clocks skip from UTC${formatOffset(before)} to UTC${formatOffset(after)} around then.`,
      { path, message: `is a local time skipped by a daylight-saving change in ${zone}` },
    );
  }
  return new Date(Math.min(...candidates));
}

/** One formatter per zone; zones are canonical names here, so the map is bounded by the tz database. */
const offsetFormats = new Map<string, Intl.DateTimeFormat>();
// "GMT-05:00", "GMT+05:45"; "GMT" alone for a zero offset in some ICU versions; seconds for historic local mean time.
const LONG_OFFSET = /^GMT(?:([+-])(\d{2}):(\d{2})(?::\d{2})?)?$/;

/** UTC offset of `zone` at an instant, in minutes (sub-minute historic LMT offsets are truncated). */
export function offsetMinutesAt(instantMs: number, zone: string): number {
  let format = offsetFormats.get(zone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-US", { timeZone: zone, timeZoneName: "longOffset" });
    offsetFormats.set(zone, format);
  }
  const name = format.formatToParts(instantMs).find((part) => part.type === "timeZoneName")?.value ?? "";
  const m = LONG_OFFSET.exec(name);
  if (!m) throw new Error(`Unexpected UTC offset ${JSON.stringify(name)} for ${zone}`);
  if (m[1] === undefined) return 0;
  const minutes = Number(m[2]) * 60 + Number(m[3]);
  return m[1] === "-" ? -minutes : minutes;
}

function formatOffset(minutes: number): string {
  const abs = Math.abs(minutes);
  const hh = String(Math.floor(abs / 60)).padStart(2, "0");
  const mm = String(abs % 60).padStart(2, "0");
  return `${minutes < 0 ? "-" : "+"}${hh}:${mm}`;
}
