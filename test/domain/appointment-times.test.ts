import { formatInTimeZone } from "date-fns-tz";
import { afterEach, describe, expect, it } from "vitest";
import {
  MAX_APPOINTMENT_MS,
  isValidTimeZone,
  offsetMinutesAt,
  resolveAppointmentTimes,
  resolveInstant,
  type AppointmentTimesInput,
} from "../../src/domain/appointment-times.js";
import { AppError } from "../../src/domain/errors.js";

const START = "/data/startsAt";
const END = "/data/endsAt";
const ZONE = "/data/timeZone";

function appErrorOf(fn: () => unknown): AppError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
    return error as AppError;
  }
  throw new Error("expected an AppError, but nothing was thrown");
}

function errorPaths(error: AppError): string[] {
  return (error.extra.errors as { path: string }[] | undefined)?.map((e) => e.path) ?? [];
}

function expectError(fn: () => unknown, status: number, code: string, path?: string): AppError {
  const error = appErrorOf(fn);
  expect({ status: error.status, code: error.code }).toEqual({ status, code });
  if (path !== undefined) expect(errorPaths(error)[0]).toBe(path);
  return error;
}

const iso = (value: string, timeZone?: string | null) => resolveInstant(value, timeZone, START).toISOString();

describe("UTC offsets (Intl) agree with date-fns-tz", () => {
  const fromDateFnsTz = (instantMs: number, zone: string) => {
    const m = /^([+-])(\d{2}):(\d{2})$/.exec(formatInTimeZone(new Date(instantMs), zone, "xxx"));
    if (!m) throw new Error("unexpected date-fns-tz offset");
    const minutes = Number(m[2]) * 60 + Number(m[3]);
    return m[1] === "-" ? -minutes : minutes;
  };
  const zones = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Chatham", "America/St_Johns", "Asia/Kathmandu", "UTC"];
  it.each(zones)("%s, every 30 minutes of 2026 and each January 1st from 1900 to 2100", (zone) => {
    const instants: number[] = [];
    for (let t = Date.UTC(2026, 0, 1); t < Date.UTC(2027, 0, 1); t += 30 * 60_000) instants.push(t);
    for (let year = 1900; year <= 2100; year++) instants.push(Date.UTC(year, 0, 1, 12));
    const disagreements = instants.filter((t) => offsetMinutesAt(t, zone) !== fromDateFnsTz(t, zone));
    expect(disagreements.map((t) => new Date(t).toISOString()).slice(0, 5)).toEqual([]);
    // Offsets really do change where they should (the scan is not comparing constants).
    const distinct = new Set(instants.map((t) => offsetMinutesAt(t, zone)));
    expect(distinct.size).toBeGreaterThan(zone === "UTC" ? 0 : 1);
  });
});

// Transition instants verified with date-fns-tz (ICU 78.2, tzdata 2025c) by scanning 2026 in 15-minute steps.
describe("local wall-clock times around DST changes", () => {
  const ok: [zone: string, local: string, utc: string, why: string][] = [
    // America/New_York: gap 2026-03-08 02:00–03:00 (07:00Z), fold 2026-11-01 01:00–02:00 (06:00Z).
    ["America/New_York", "2026-11-23T09:00:00", "2026-11-23T14:00:00.000Z", "API.md example (EST)"],
    ["America/New_York", "2026-07-01T12:00", "2026-07-01T16:00:00.000Z", "summer, EDT"],
    ["America/New_York", "2026-01-15T12:00", "2026-01-15T17:00:00.000Z", "winter, EST"],
    ["America/New_York", "2026-03-08T01:59:59", "2026-03-08T06:59:59.000Z", "last second before the gap"],
    ["America/New_York", "2026-03-08T01:59:59.999", "2026-03-08T06:59:59.999Z", "last ms before the gap"],
    ["America/New_York", "2026-03-08T03:00", "2026-03-08T07:00:00.000Z", "first minute after the gap"],
    ["America/New_York", "2026-03-08T03:00:00", "2026-03-08T07:00:00.000Z", "same with seconds"],
    ["America/New_York", "2026-11-01T00:59:59", "2026-11-01T04:59:59.000Z", "just before the fold"],
    ["America/New_York", "2026-11-01T01:00", "2026-11-01T05:00:00.000Z", "fold start → EDT"],
    ["America/New_York", "2026-11-01T01:30", "2026-11-01T05:30:00.000Z", "fold → EDT (earlier)"],
    ["America/New_York", "2026-11-01T01:59:59.999", "2026-11-01T05:59:59.999Z", "fold end → EDT"],
    ["America/New_York", "2026-11-01T02:00", "2026-11-01T07:00:00.000Z", "after the fold, EST"],
    // Europe/London: gap 2026-03-29 01:00–02:00 (01:00Z), fold 2026-10-25 01:00–02:00 (01:00Z).
    ["Europe/London", "2026-03-29T00:59:59", "2026-03-29T00:59:59.000Z", "before the gap, GMT"],
    ["Europe/London", "2026-03-29T02:00", "2026-03-29T01:00:00.000Z", "after the gap, BST"],
    ["Europe/London", "2026-10-24T23:59", "2026-10-24T22:59:00.000Z", "day before the fold, BST"],
    ["Europe/London", "2026-10-25T00:59", "2026-10-24T23:59:00.000Z", "just before the fold"],
    ["Europe/London", "2026-10-25T01:00", "2026-10-25T00:00:00.000Z", "fold start → BST"],
    ["Europe/London", "2026-10-25T01:30", "2026-10-25T00:30:00.000Z", "fold → BST (earlier)"],
    ["Europe/London", "2026-10-25T02:00", "2026-10-25T02:00:00.000Z", "after the fold, GMT"],
    // Australia/Lord_Howe (+10:30 / +11:00): fold 2026-04-05 01:30–02:00 (15:00Z on 04-04), gap 2026-10-04 02:00–02:30 (15:30Z on 10-03).
    ["Australia/Lord_Howe", "2026-07-01T12:00", "2026-07-01T01:30:00.000Z", "winter, +10:30"],
    ["Australia/Lord_Howe", "2026-12-01T12:00", "2026-12-01T01:00:00.000Z", "summer, +11:00"],
    ["Australia/Lord_Howe", "2026-04-05T01:29:59", "2026-04-04T14:29:59.000Z", "before the fold, +11:00"],
    ["Australia/Lord_Howe", "2026-04-05T01:30", "2026-04-04T14:30:00.000Z", "fold start → +11:00"],
    ["Australia/Lord_Howe", "2026-04-05T01:45", "2026-04-04T14:45:00.000Z", "fold → +11:00 (fromZonedTime says 15:15Z)"],
    ["Australia/Lord_Howe", "2026-04-05T02:00", "2026-04-04T15:30:00.000Z", "after the fold, +10:30"],
    ["Australia/Lord_Howe", "2026-10-04T01:59:59", "2026-10-03T15:29:59.000Z", "before the gap, +10:30"],
    ["Australia/Lord_Howe", "2026-10-04T02:30", "2026-10-03T15:30:00.000Z", "after the gap, +11:00"],
    // Asia/Kolkata: +05:30 all year.
    ["Asia/Kolkata", "2026-11-23T09:00:00", "2026-11-23T03:30:00.000Z", "ordinary"],
    ["Asia/Kolkata", "2026-03-08T02:30", "2026-03-07T21:00:00.000Z", "New York's gap means nothing here"],
    ["Asia/Kolkata", "2026-01-01T05:29:59.999", "2025-12-31T23:59:59.999Z", "crosses the UTC year boundary"],
    ["Asia/Calcutta", "2026-11-23T09:00:00", "2026-11-23T03:30:00.000Z", "alias of Asia/Kolkata"],
    // Pacific/Chatham (+12:45 / +13:45): fold 2026-04-05 02:45–03:45 (14:00Z on 04-04), gap 2026-09-27 02:45–03:45 (14:00Z on 09-26).
    ["Pacific/Chatham", "2026-04-05T02:15", "2026-04-04T12:30:00.000Z", "before the fold, +13:45"],
    ["Pacific/Chatham", "2026-04-05T02:45", "2026-04-04T13:00:00.000Z", "fold start → +13:45"],
    ["Pacific/Chatham", "2026-04-05T03:00", "2026-04-04T13:15:00.000Z", "fold → +13:45 (earlier)"],
    ["Pacific/Chatham", "2026-04-05T03:44:59", "2026-04-04T13:59:59.000Z", "fold end → +13:45"],
    ["Pacific/Chatham", "2026-04-05T03:45", "2026-04-04T15:00:00.000Z", "after the fold, +12:45"],
    ["Pacific/Chatham", "2026-09-27T02:44:59", "2026-09-26T13:59:59.000Z", "before the gap, +12:45"],
    ["Pacific/Chatham", "2026-09-27T03:45", "2026-09-26T14:00:00.000Z", "after the gap, +13:45"],
    // Fixed zones.
    ["UTC", "2026-03-08T02:30", "2026-03-08T02:30:00.000Z", "UTC"],
    ["Etc/UTC", "2026-03-08T02:30", "2026-03-08T02:30:00.000Z", "Etc/UTC"],
    ["Etc/GMT+5", "2026-07-01T12:00", "2026-07-01T17:00:00.000Z", "POSIX sign: Etc/GMT+5 is UTC-05:00"],
    ["America/New_York", "2028-02-29T09:00", "2028-02-29T14:00:00.000Z", "leap day"],
  ];

  it.each(ok)("%s %s → %s (%s)", (zone, local, utc) => {
    expect(iso(local, zone)).toBe(utc);
  });

  const gaps: [zone: string, local: string][] = [
    ["America/New_York", "2026-03-08T02:00"],
    ["America/New_York", "2026-03-08T02:30"],
    ["America/New_York", "2026-03-08T02:59:59.999"],
    ["Europe/London", "2026-03-29T01:00"],
    ["Europe/London", "2026-03-29T01:30"],
    ["Europe/London", "2026-03-29T01:59:59"],
    ["Australia/Lord_Howe", "2026-10-04T02:00"],
    ["Australia/Lord_Howe", "2026-10-04T02:15"],
    ["Australia/Lord_Howe", "2026-10-04T02:29:59.999"],
    ["Pacific/Chatham", "2026-09-27T02:45"],
    ["Pacific/Chatham", "2026-09-27T03:00"],
    ["Pacific/Chatham", "2026-09-27T03:44:59.999"],
  ];

  it.each(gaps)("%s %s is in a spring-forward gap → 422 nonexistent_local_time", (zone, local) => {
    const error = expectError(() => resolveInstant(local, zone, END), 422, "nonexistent_local_time", END);
    expect(error.title).toBe("Unprocessable Content");
    expect(error.detail).toContain(zone);
    expect(error.detail).toContain(local);
  });

  describe("does not depend on the host's TZ", () => {
    const original = process.env.TZ;
    afterEach(() => {
      if (original === undefined) delete process.env.TZ;
      else process.env.TZ = original;
    });

    // fromZonedTime gives different fold answers (and gap shifts) under these host zones.
    it.each(["America/New_York", "Europe/London", "Australia/Sydney", "Pacific/Chatham"])("host TZ=%s", (host) => {
      process.env.TZ = host;
      // Proves the switch took effect in this worker.
      expect(new Date("2026-07-01T00:00:00Z").getTimezoneOffset()).not.toBe(0);
      for (const [zone, local, utc] of ok) expect(iso(local, zone), `${zone} ${local}`).toBe(utc);
      for (const [zone, local] of gaps) expectError(() => iso(local, zone), 422, "nonexistent_local_time", START);
    });
  });
});

describe("values with Z or an offset are taken as given", () => {
  const cases: [value: string, timeZone: string | null | undefined, utc: string][] = [
    ["2026-11-23T09:00:00Z", undefined, "2026-11-23T09:00:00.000Z"],
    ["2026-11-23T09:00:00Z", null, "2026-11-23T09:00:00.000Z"],
    ["2026-11-23T09:00:00Z", "", "2026-11-23T09:00:00.000Z"],
    ["2026-11-23T09:00Z", undefined, "2026-11-23T09:00:00.000Z"],
    ["2026-11-23T09:00:00Z", "Asia/Tokyo", "2026-11-23T09:00:00.000Z"],
    ["2026-03-08T02:30:00Z", "America/New_York", "2026-03-08T02:30:00.000Z"],
    // The wall-clock part sits in New York's gap; the offset makes it a real instant anyway.
    ["2026-03-08T02:30:00-05:00", "America/New_York", "2026-03-08T07:30:00.000Z"],
    // An explicit offset picks the fold's second pass, which a bare local time would not.
    ["2026-11-01T01:30:00-05:00", "America/New_York", "2026-11-01T06:30:00.000Z"],
    ["2026-11-01T01:30:00-04:00", "America/New_York", "2026-11-01T05:30:00.000Z"],
    // An offset that disagrees with the zone still wins.
    ["2026-07-01T12:00:00+02:00", "America/New_York", "2026-07-01T10:00:00.000Z"],
    ["2026-11-23T09:00:00+05:30", undefined, "2026-11-23T03:30:00.000Z"],
    ["2026-11-23T09:00:00+05:45", undefined, "2026-11-23T03:15:00.000Z"],
    ["2026-11-23T09:00:00+12:45", "Pacific/Chatham", "2026-11-22T20:15:00.000Z"],
    ["2026-11-23T09:00:00+13:45", undefined, "2026-11-22T19:15:00.000Z"],
    ["2026-11-23T09:00:00-09:30", undefined, "2026-11-23T18:30:00.000Z"],
    ["2026-11-23T09:00:00-03:30", undefined, "2026-11-23T12:30:00.000Z"],
    ["2026-11-23T09:00:00+14:00", undefined, "2026-11-22T19:00:00.000Z"],
    ["2026-11-23T09:00:00-14:00", undefined, "2026-11-23T23:00:00.000Z"],
    ["2026-11-23T09:00:00-12:00", undefined, "2026-11-23T21:00:00.000Z"],
    ["2026-11-23T09:00:00+00:00", undefined, "2026-11-23T09:00:00.000Z"],
    ["2026-11-23T09:00:00-00:00", undefined, "2026-11-23T09:00:00.000Z"],
    ["2027-01-01T00:30:00+01:00", undefined, "2026-12-31T23:30:00.000Z"],
    ["2026-12-31T23:30:00-01:00", undefined, "2027-01-01T00:30:00.000Z"],
    ["2028-02-29T23:00:00-05:00", undefined, "2028-03-01T04:00:00.000Z"],
  ];

  it.each(cases)("%s (timeZone %j) → %s", (value, timeZone, utc) => {
    expect(iso(value, timeZone)).toBe(utc);
  });
});

describe("milliseconds", () => {
  it.each([
    ["2026-11-23T09:00:00.123Z", "2026-11-23T09:00:00.123Z"],
    ["2026-11-23T09:00:00.5Z", "2026-11-23T09:00:00.500Z"],
    ["2026-11-23T09:00:00.05Z", "2026-11-23T09:00:00.050Z"],
    ["2026-11-23T09:00:00.007Z", "2026-11-23T09:00:00.007Z"],
    ["2026-11-23T09:00:00.000Z", "2026-11-23T09:00:00.000Z"],
    ["2026-11-23T09:00:00.999+05:30", "2026-11-23T03:30:00.999Z"],
  ])("%s → %s", (value, utc) => {
    expect(iso(value)).toBe(utc);
  });

  it("keeps seconds and milliseconds of local times", () => {
    expect(iso("2026-11-23T09:00:07.042", "America/New_York")).toBe("2026-11-23T14:00:07.042Z");
    expect(iso("2026-11-01T01:30:15.5", "America/New_York")).toBe("2026-11-01T05:30:15.500Z");
  });
});

describe("calendar and range validation", () => {
  it.each([
    ["2028-02-29T09:00:00Z", "2028-02-29T09:00:00.000Z"],
    ["2000-02-29T09:00:00Z", "2000-02-29T09:00:00.000Z"],
    ["2026-02-28T09:00:00Z", "2026-02-28T09:00:00.000Z"],
    ["2026-04-30T09:00:00Z", "2026-04-30T09:00:00.000Z"],
    ["2026-01-31T09:00:00Z", "2026-01-31T09:00:00.000Z"],
    ["2026-12-31T23:59:59.999Z", "2026-12-31T23:59:59.999Z"],
    ["2026-11-23T00:00:00Z", "2026-11-23T00:00:00.000Z"],
    ["1900-01-01T00:00:00Z", "1900-01-01T00:00:00.000Z"],
    ["9998-12-31T23:59:59.999Z", "9998-12-31T23:59:59.999Z"],
    // Forms schedulers send: lower-case z, offsets without a colon or minutes, more fractional digits (.NET).
    ["2026-11-23T09:00:00z", "2026-11-23T09:00:00.000Z"],
    ["2026-11-23T09:00:00+0530", "2026-11-23T03:30:00.000Z"],
    ["2026-11-23T09:00:00+05", "2026-11-23T04:00:00.000Z"],
    ["2026-11-23T09:00:00.1234567Z", "2026-11-23T09:00:00.123Z"],
    ["2026-11-23T09:00:00.999999999-01:00", "2026-11-23T10:00:00.999Z"],
  ])("accepts %s", (value, utc) => {
    expect(iso(value)).toBe(utc);
  });

  it.each([
    "2027-02-29T09:00:00Z",
    "2027-02-29T09:00:00",
    "2100-02-29T09:00:00Z",
    "2026-02-30T09:00:00Z",
    "2028-02-30T09:00:00Z",
    "2026-02-31T09:00:00Z",
    "2026-04-31T09:00:00Z",
    "2026-06-31T09:00:00",
    "2026-09-31T09:00:00Z",
    "2026-11-31T09:00:00Z",
    "2026-01-32T09:00:00Z",
    "2026-11-00T09:00:00Z",
    "2026-13-01T09:00:00Z",
    "2026-00-10T09:00:00Z",
    "0000-01-01T00:00:00Z",
    "0001-01-01T00:05:00Z",
    "1899-12-31T23:59:59Z",
    "9999-12-31T23:00:00Z",
    "2026-11-23T24:00:00Z",
    "2026-11-23T24:00:00",
    "2026-11-23T25:00:00Z",
    "2026-11-23T09:60:00Z",
    "2026-11-23T09:60",
    "2026-11-23T09:00:60Z",
    "2026-11-23T09:00:00+14:01",
    "2026-11-23T09:00:00+14:30",
    "2026-11-23T09:00:00-14:30",
    "2026-11-23T09:00:00+15:00",
    "2026-11-23T09:00:00+24:00",
    "2026-11-23T09:00:00+05:60",
  ])("rejects %s → 400 invalid_request", (value) => {
    // Impossible dates are rejected even when a zone is given, before any zone lookup.
    const error = expectError(() => resolveInstant(value, "America/New_York", START), 400, "invalid_request", START);
    expect(error.title).toBe("Invalid request");
    expect(error.extra.errors).toEqual([{ path: START, message: expect.any(String) }]);
  });

  it("does not let V8 roll Feb 30 over into March", () => {
    expect(new Date("2027-02-30T10:00:00Z").toISOString()).toBe("2027-03-02T10:00:00.000Z");
    expectError(() => resolveInstant("2027-02-30T10:00:00Z", null, START), 400, "invalid_request", START);
  });
});

describe("malformed strings", () => {
  it.each([
    "",
    " ",
    "garbage",
    "2026-11-23",
    "2026-11",
    "2026-11-23T",
    "2026-11-23T09",
    "2026-11-23T0900",
    "2026-11-23T9:00:00",
    "2026-11-23T09:0:00",
    "2026-1-23T09:00:00",
    "26-11-23T09:00:00",
    "+002026-11-23T09:00:00Z",
    "2026-11-23 09:00:00",
    "2026-11-23t09:00:00",
    "2026-11-23T09:00:00 Z",
    " 2026-11-23T09:00:00Z",
    "2026-11-23T09:00:00Z ",
    "2026-11-23T09:00:00+5:30",
    "2026-11-23T09:00:00UTC",
    "2026-11-23T09:00:00GMT+1",
    "2026-11-23T09:00:00+05:30[Asia/Kolkata]",
    "2026-11-23T09:00:00.",
    "2026-11-23T09:00:00,5Z",
    "2026-11-23T09:00:00.1234567890Z",
    "2026-11-23T09:00:00+053",
    "2026-11-23T09:00.5",
    "2026-11-23T09:00:00ZZ",
    "2026-11-23T09:00:00Z+01:00",
    "20261123T090000Z",
    "2026-W48-1T09:00:00Z",
    "2026-327T09:00:00Z",
    "1763888400",
    "Mon, 23 Nov 2026 09:00:00 GMT",
    "٢٠٢٦-١١-٢٣T09:00:00Z",
    "2026-11-23T09:00:00\n",
  ])("%j → 400 invalid_request", (value) => {
    expectError(() => resolveInstant(value, "America/New_York", END), 400, "invalid_request", END);
  });

  it.each([123, null, undefined, {}])("non-string %j → 400", (value) => {
    expectError(() => resolveInstant(value as unknown as string, "UTC", START), 400, "invalid_request", START);
  });
});

describe("time zones", () => {
  it.each(["UTC", "Etc/UTC", "utc", "GMT", "Etc/GMT+5", "Etc/GMT-14", "Asia/Calcutta", "Asia/Kolkata", "America/New_York", "US/Eastern", "Australia/Lord_Howe", "Pacific/Chatham"])(
    "isValidTimeZone(%j) is true",
    (name) => {
      expect(isValidTimeZone(name)).toBe(true);
    },
  );

  it.each(["", " ", "Mars/Olympus", "America/New York", " UTC", "Z", "+05:30", "-05:00", "+00:00", "Europe", "Local", "x".repeat(300)])(
    "isValidTimeZone(%j) is false",
    (name) => {
      expect(isValidTimeZone(name)).toBe(false);
    },
  );

  it.each([undefined, null, ""])("local time with timeZone %j → 422 missing_time_zone", (timeZone) => {
    const error = expectError(() => resolveInstant("2026-11-23T09:00:00", timeZone, END), 422, "missing_time_zone", END);
    expect(error.title).toBe("Unprocessable Content");
  });

  it.each(["Mars/Olympus", "+05:30", "America/New York", " ", "EST5EDT-ish"])("unknown zone %j → 422 invalid_time_zone", (timeZone) => {
    for (const value of ["2026-11-23T09:00:00", "2026-11-23T09:00:00Z", "2026-11-23T09:00:00+05:30"]) {
      const error = expectError(() => resolveInstant(value, timeZone, START), 422, "invalid_time_zone", ZONE);
      expect(error.title).toBe("Unprocessable Content");
    }
  });

  it("keeps an absurdly long zone name out of the detail", () => {
    const error = expectError(() => resolveInstant("2026-11-23T09:00:00", "A/".repeat(5000), START), 422, "invalid_time_zone", ZONE);
    expect(error.detail.length).toBeLessThan(200);
  });

  it("resolves zone names case-insensitively, as ICU does", () => {
    expect(iso("2026-11-01T01:30", "america/new_york")).toBe("2026-11-01T05:30:00.000Z");
  });
});

describe("resolveAppointmentTimes", () => {
  const resolve = (input: AppointmentTimesInput) => {
    const { startsAt, endsAt } = resolveAppointmentTimes(input);
    return { startsAt: startsAt.toISOString(), endsAt: endsAt.toISOString(), ms: endsAt.getTime() - startsAt.getTime() };
  };
  const H = 60 * 60 * 1000;

  it("exports a 24 h maximum", () => {
    expect(MAX_APPOINTMENT_MS).toBe(86_400_000);
  });

  it.each<[string, AppointmentTimesInput, string, string, number]>([
    ["API.md example", { startsAt: "2026-11-23T09:00:00", endsAt: "2026-11-23T09:30:00", timeZone: "America/New_York" }, "2026-11-23T14:00:00.000Z", "2026-11-23T14:30:00.000Z", 30 * 60_000],
    ["offsets, no zone", { startsAt: "2026-11-23T09:00:00+05:30", endsAt: "2026-11-23T09:45:00+05:30" }, "2026-11-23T03:30:00.000Z", "2026-11-23T04:15:00.000Z", 45 * 60_000],
    ["Z with a valid zone", { startsAt: "2026-11-23T09:00:00Z", endsAt: "2026-11-23T10:00:00Z", timeZone: "Asia/Tokyo" }, "2026-11-23T09:00:00.000Z", "2026-11-23T10:00:00.000Z", H],
    ["mixed offset and local", { startsAt: "2026-11-23T14:00:00Z", endsAt: "2026-11-23T09:30", timeZone: "America/New_York" }, "2026-11-23T14:00:00.000Z", "2026-11-23T14:30:00.000Z", 30 * 60_000],
    ["fall-back: 00:30 → 02:30 local is 3 h", { startsAt: "2026-11-01T00:30", endsAt: "2026-11-01T02:30", timeZone: "America/New_York" }, "2026-11-01T04:30:00.000Z", "2026-11-01T07:30:00.000Z", 3 * H],
    ["spring-forward: 01:30 → 03:30 local is 1 h", { startsAt: "2026-03-08T01:30", endsAt: "2026-03-08T03:30", timeZone: "America/New_York" }, "2026-03-08T06:30:00.000Z", "2026-03-08T07:30:00.000Z", H],
    ["Lord Howe fall-back: 01:15 → 02:15 local is 1 h 30 min", { startsAt: "2026-04-05T01:15", endsAt: "2026-04-05T02:15", timeZone: "Australia/Lord_Howe" }, "2026-04-04T14:15:00.000Z", "2026-04-04T15:45:00.000Z", 1.5 * H],
    ["Chatham spring-forward: 02:00 → 04:00 local is 1 h", { startsAt: "2026-09-27T02:00", endsAt: "2026-09-27T04:00", timeZone: "Pacific/Chatham" }, "2026-09-26T13:15:00.000Z", "2026-09-26T14:15:00.000Z", H],
    ["exactly 24 h", { startsAt: "2026-11-23T09:00:00Z", endsAt: "2026-11-24T09:00:00Z" }, "2026-11-23T09:00:00.000Z", "2026-11-24T09:00:00.000Z", 24 * H],
    ["1 ms", { startsAt: "2026-11-23T09:00:00.000Z", endsAt: "2026-11-23T09:00:00.001Z" }, "2026-11-23T09:00:00.000Z", "2026-11-23T09:00:00.001Z", 1],
    ["23 wall-clock hours across spring-forward is 22 h", { startsAt: "2026-03-07T12:00", endsAt: "2026-03-08T11:00", timeZone: "America/New_York" }, "2026-03-07T17:00:00.000Z", "2026-03-08T15:00:00.000Z", 22 * H],
    ["25 wall-clock hours across spring-forward is 24 h", { startsAt: "2026-03-07T12:00", endsAt: "2026-03-08T13:00", timeZone: "America/New_York" }, "2026-03-07T17:00:00.000Z", "2026-03-08T17:00:00.000Z", 24 * H],
    ["milliseconds kept", { startsAt: "2026-11-23T09:00:00.123", endsAt: "2026-11-23T09:30:00.456", timeZone: "Europe/London" }, "2026-11-23T09:00:00.123Z", "2026-11-23T09:30:00.456Z", 30 * 60_000 + 333],
  ])("%s", (_name, input, startsAt, endsAt, ms) => {
    expect(resolve(input)).toEqual({ startsAt, endsAt, ms });
  });

  it.each<[string, AppointmentTimesInput]>([
    ["end == start", { startsAt: "2026-11-23T09:00:00Z", endsAt: "2026-11-23T09:00:00Z" }],
    ["end == start written differently", { startsAt: "2026-11-23T09:00:00-05:00", endsAt: "2026-11-23T14:00:00.000Z" }],
    ["end before start", { startsAt: "2026-11-23T09:30:00Z", endsAt: "2026-11-23T09:00:00Z" }],
    ["end 1 ms before start", { startsAt: "2026-11-23T09:00:00.001Z", endsAt: "2026-11-23T09:00:00Z" }],
    ["24 h + 1 ms", { startsAt: "2026-11-23T09:00:00Z", endsAt: "2026-11-24T09:00:00.001Z" }],
    ["a week", { startsAt: "2026-11-23T09:00:00Z", endsAt: "2026-11-30T09:00:00Z" }],
    ["24 wall-clock hours across fall-back is 25 h", { startsAt: "2026-10-31T12:00", endsAt: "2026-11-01T12:00", timeZone: "America/New_York" }],
    // 01:45 local resolves to EDT (05:45Z), before the explicit EST start (06:30Z).
    ["fold: local end resolves to the earlier pass", { startsAt: "2026-11-01T01:30:00-05:00", endsAt: "2026-11-01T01:45", timeZone: "America/New_York" }],
  ])("%s → 422 invalid_time_range", (_name, input) => {
    const error = expectError(() => resolveAppointmentTimes(input), 422, "invalid_time_range");
    expect(error.title).toBe("Unprocessable Content");
  });

  it("reports a malformed startsAt or endsAt with its path", () => {
    expectError(() => resolveAppointmentTimes({ startsAt: "nope", endsAt: "2026-11-23T09:30:00Z" }), 400, "invalid_request", START);
    expectError(() => resolveAppointmentTimes({ startsAt: "2026-11-23T09:00:00Z", endsAt: "2026-02-30T09:30:00Z" }), 400, "invalid_request", END);
  });

  it("reports both malformed values at once", () => {
    const error = expectError(() => resolveAppointmentTimes({ startsAt: "nope", endsAt: "2026-11-23T25:00" }), 400, "invalid_request");
    expect(errorPaths(error)).toEqual([START, END]);
  });

  it("puts a malformed value (400) before an unknown zone (422)", () => {
    expectError(
      () => resolveAppointmentTimes({ startsAt: "2026-11-23T09:00:00", endsAt: "2026-11-23 09:30", timeZone: "Mars/Olympus" }),
      400,
      "invalid_request",
      END,
    );
  });

  it("rejects an unknown zone even when both values carry offsets", () => {
    expectError(
      () => resolveAppointmentTimes({ startsAt: "2026-11-23T09:00:00Z", endsAt: "2026-11-23T09:30:00+01:00", timeZone: "Mars/Olympus" }),
      422,
      "invalid_time_zone",
      ZONE,
    );
  });

  it("puts an unknown zone before a bad range", () => {
    expectError(
      () => resolveAppointmentTimes({ startsAt: "2026-11-23T10:00:00Z", endsAt: "2026-11-23T09:00:00Z", timeZone: "Mars/Olympus" }),
      422,
      "invalid_time_zone",
      ZONE,
    );
  });

  it.each([undefined, null, ""])("needs a zone for a local endsAt (timeZone %j)", (timeZone) => {
    expectError(
      () => resolveAppointmentTimes({ startsAt: "2026-11-23T09:00:00Z", endsAt: "2026-11-23T09:30:00", timeZone }),
      422,
      "missing_time_zone",
      END,
    );
  });

  it("needs a zone for a local startsAt", () => {
    expectError(() => resolveAppointmentTimes({ startsAt: "2026-11-23T09:00:00", endsAt: "2026-11-23T09:30:00" }), 422, "missing_time_zone", START);
  });

  it("reports a nonexistent startsAt or endsAt with its path and zone", () => {
    const start = expectError(
      () => resolveAppointmentTimes({ startsAt: "2026-03-08T02:30", endsAt: "2026-03-08T04:00", timeZone: "America/New_York" }),
      422,
      "nonexistent_local_time",
      START,
    );
    expect(start.detail).toContain("America/New_York");
    const end = expectError(
      () => resolveAppointmentTimes({ startsAt: "2026-03-29T00:30", endsAt: "2026-03-29T01:30", timeZone: "Europe/London" }),
      422,
      "nonexistent_local_time",
      END,
    );
    expect(end.detail).toContain("Europe/London");
  });
});
