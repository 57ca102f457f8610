import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

/**
 * The layers of src/ (README, Architecture): no import runs back up them.
 * Read from the sources themselves, so a new file is checked as soon as it
 * exists.
 */
const SRC = fileURLToPath(new URL("../../src/", import.meta.url));

/** For each layer, the layers of ours it must not import. */
const FORBIDDEN: Record<string, string[]> = {
  support: ["domain", "db", "providers", "services", "http", "schemas", "webhook-sources", "client"],
  domain: ["db", "providers", "services", "http", "schemas", "webhook-sources", "client"],
  schemas: ["db", "providers", "services", "http", "webhook-sources"],
  db: ["providers", "services", "http", "webhook-sources"],
  providers: ["services", "http", "webhook-sources"],
  "webhook-sources": ["db", "providers", "services", "http"],
  services: ["http", "webhook-sources"],
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === "generated" ? [] : sourceFiles(full);
    return entry.name.endsWith(".ts") ? [full] : [];
  });
}

/** The layer a file of src/ belongs to: its top folder ("" for src/ itself). */
const layerOf = (file: string) => path.relative(SRC, file).split(path.sep).slice(0, -1)[0] ?? "";

function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/^(?:import|export)\s[^;]*?from\s+"(\.[^"]+)"/gms)].map((match) => match[1] ?? "");
}

describe("the layers of src/", () => {
  const files = sourceFiles(SRC);

  it("finds the sources (the check below is not vacuous)", () => {
    for (const layer of Object.keys(FORBIDDEN)) expect(files.some((file) => layerOf(file) === layer), layer).toBe(true);
  });

  it("have no import that runs back up", () => {
    const violations: string[] = [];
    for (const file of files) {
      const forbidden = FORBIDDEN[layerOf(file)] ?? [];
      for (const specifier of importsOf(file)) {
        const target = layerOf(path.resolve(path.dirname(file), specifier));
        if (forbidden.includes(target)) violations.push(`${path.relative(SRC, file)} imports ${specifier}`);
      }
    }
    expect(violations).toEqual([]);
  });

  it("nothing outside src/providers/ branches on a provider's name", () => {
    const names = ["local", "vonage", "genesys", "livekit", "daily"];
    const branching = new RegExp(`(?:===|!==|case)\\s*"(?:${names.join("|")})"`);
    const offenders = files.filter((file) => layerOf(file) !== "providers" && branching.test(readFileSync(file, "utf8")));
    expect(offenders.map((file) => path.relative(SRC, file))).toEqual([]);
  });
});
