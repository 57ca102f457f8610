import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { loadConfig, variables } from "../../src/config.js";
import { providerAdapters, providerConfigProblems } from "../../src/providers/index.js";

const dist = new URL("../../dist/", import.meta.url).href;

// Reports every module resolved from axios, axios-retry or the Vonage SDK.
const HOOK = `export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  if (/node_modules\\/(axios|axios-retry|@vonage)\\//.test(result.url)) process.stdout.write("heavy " + result.url + "\\n");
  return result;
}`;

/** The packages of the remote adapters that a process loads when it builds the app's provider for `env` (from dist/). */
async function heavyPackagesLoaded(env: Record<string, string>): Promise<string[]> {
  const script = `
    import { register } from "node:module";
    register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(HOOK)}`)});
    await import(${JSON.stringify(`${dist}app.js`)});
    const { loadConfig } = await import(${JSON.stringify(`${dist}config.js`)});
    const { createVideoProvider } = await import(${JSON.stringify(`${dist}providers/index.js`)});
    // No query runs before the app starts, so no database is needed.
    await createVideoProvider(loadConfig(${JSON.stringify(env)}), {}, () => new Date());
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script]);
  const packages = [...stdout.matchAll(/node_modules\/((?:@vonage\/)?[^/]+)\//g)].map((match) => match[1] ?? "");
  return [...new Set(packages)].sort();
}

describe("the provider registry", () => {
  it("names each provider once, and VIDEO_PROVIDER takes exactly those names", () => {
    const names = providerAdapters.map((adapter) => adapter.name);
    expect(names).toEqual(["local", "vonage", "genesys", "livekit", "daily"]);
    for (const name of names) expect(loadConfig({ VIDEO_PROVIDER: name }).videoProvider).toBe(name);
  });

  it("declares each variable in one place only", () => {
    const names = [...Object.keys(variables), ...providerAdapters.flatMap((adapter) => Object.keys(adapter.variables))];
    expect(new Set(names).size).toBe(names.length);
  });

  it("checks the configured provider's settings only", () => {
    expect(providerConfigProblems(loadConfig({ VIDEO_PROVIDER: "local" }))).toEqual([]);
    expect(providerConfigProblems(loadConfig({ VIDEO_PROVIDER: "genesys" }))).toHaveLength(4);
  });

  it("loads the remote adapters' packages only when one of them is configured", async () => {
    expect(await heavyPackagesLoaded({ KEY_ENCRYPTION_SECRET: "k".repeat(32) })).toEqual([]);
    const genesys = { GENESYS_LOGIN_BASE: "http://127.0.0.1:9", GENESYS_API_BASE: "http://127.0.0.1:9" };
    expect(
      await heavyPackagesLoaded({ VIDEO_PROVIDER: "genesys", ...genesys, GENESYS_CLIENT_ID: "id", GENESYS_CLIENT_SECRET: "s" }),
    ).toEqual(["axios", "axios-retry"]);
  });
});
