// How an environment variable is declared and read: config.ts declares the
// service's own, each video provider (src/providers/) its own, in this one
// shape, so that one boot check reads them all.
//
// Each variable has a parser that either returns a typed value or says, in
// one line, what it expected. A set-but-empty variable counts as unset (so
// `FOO=` in a compose file means "use the default"), and values are never
// echoed back for variables that hold secrets.

export type Parser<T> = (raw: string) => { ok: true; value: T } | { ok: false; expected: string };

export interface VariableSpec<T> {
  parse: Parser<T>;
  default?: T;
  /** Never echo the value in an error message. */
  secret?: boolean;
  description: string;
}

export type VariableSpecs = Record<string, VariableSpec<unknown>>;

type ValueOf<S> = S extends { parse: Parser<infer T> } ? (S extends { default: unknown } ? T : T | undefined) : never;
/** The values of `S`'s variables, keyed by their names: the default where there is one, else possibly undefined. */
export type ValuesOf<S extends VariableSpecs> = { [K in keyof S]: ValueOf<S[K]> };

export const ok = <T>(value: T) => ({ ok: true as const, value });
export const fail = (expected: string) => ({ ok: false as const, expected });

export const integer =
  (min: number, max: number): Parser<number> =>
  (raw) =>
    /^-?\d+$/.test(raw) && Number(raw) >= min && Number(raw) <= max
      ? ok(Number(raw))
      : fail(`an integer from ${min} to ${max}`);

export const text: Parser<string> = (raw) => ok(raw);

export const boolean: Parser<boolean> = (raw) =>
  raw === "true" ? ok(true) : raw === "false" ? ok(false) : fail("true or false");

export const oneOf =
  <T extends string>(...values: T[]): Parser<T> =>
  (raw) =>
    (values as string[]).includes(raw) ? ok(raw as T) : fail(`one of ${values.join(", ")}`);

export const httpUrl: Parser<string> = (raw) => {
  try {
    const url = new URL(raw);
    if (url.protocol === "http:" || url.protocol === "https:") return ok(raw.replace(/\/+$/, ""));
  } catch {
    // falls through to the message below
  }
  return fail("an http(s) URL");
};

export const pem: Parser<string> = (raw) => {
  // Keys often arrive through env files with literal "\n" sequences.
  const value = raw.includes("\\n") ? raw.replace(/\\n/g, "\n") : raw;
  return /-----BEGIN [A-Z ]+-----/.test(value) ? ok(value) : fail("a PEM-encoded key");
};

/** Reads every variable of `specs` from `env`; each malformed one adds its line to `problems`. */
export function readVariables<S extends VariableSpecs>(
  specs: S,
  env: Record<string, string | undefined>,
  problems: string[],
): ValuesOf<S> {
  const values: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(specs)) {
    const raw = env[name]?.trim();
    if (raw === undefined || raw === "") {
      values[name] = spec.default;
      continue;
    }
    const result = spec.parse(raw);
    if (result.ok) {
      values[name] = result.value;
    } else {
      const shown = spec.secret ? "" : ` (got ${JSON.stringify(raw.length > 60 ? `${raw.slice(0, 60)}…` : raw)})`;
      problems.push(`${name} must be ${result.expected}${shown}`);
    }
  }
  return values as ValuesOf<S>;
}
