import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, inject, it } from "vitest";
import { TEST_JWT_SECRET, TEST_KEY_ENCRYPTION_SECRET, TEST_WEBHOOK_SECRET } from "./helpers/app.js";
import { runServer, startServer } from "./helpers/server-process.js";
import { startTcpProxy } from "./helpers/tcp-proxy.js";

const temporary: string[] = [];
afterEach(async () => {
  await Promise.all(temporary.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});
async function tempDataDir() {
  const dir = await mkdtemp(path.join(os.tmpdir(), "jw-server-"));
  temporary.push(dir);
  return dir;
}

describe("the server process", () => {
  it("stops at boot with one line naming a malformed variable, and no stack trace", async () => {
    const { exited, output } = runServer({ PORT: "abc" });
    expect(await exited).toBe(1);
    expect(output().trim().split("\n")).toEqual(['joinwindow: PORT must be an integer from 0 to 65535 (got "abc")']);
  });

  it("refuses to start in production without its secrets, one line each", async () => {
    const { exited, output } = runServer({ NODE_ENV: "production", DATA_DIR: await tempDataDir() });
    expect(await exited).toBe(1);
    expect(output().trim().split("\n")).toEqual([
      "joinwindow: WEBHOOK_SECRET is required in production",
      "joinwindow: one of AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY or AUTH_JWKS_URL is required in production",
      "joinwindow: KEY_ENCRYPTION_SECRET is required in production (it encrypts subscriptions' secrets and the local provider's keys)",
    ]);
  });

  it("names each variable a remote provider is missing, one line each", async () => {
    const genesys = runServer({ VIDEO_PROVIDER: "genesys", GENESYS_CLIENT_ID: "id", DATA_DIR: await tempDataDir() });
    expect(await genesys.exited).toBe(1);
    expect(genesys.output().trim().split("\n")).toEqual([
      "joinwindow: GENESYS_LOGIN_BASE is required with VIDEO_PROVIDER=genesys",
      "joinwindow: GENESYS_API_BASE is required with VIDEO_PROVIDER=genesys",
      "joinwindow: GENESYS_CLIENT_SECRET is required with VIDEO_PROVIDER=genesys",
    ]);
    const vonage = runServer({ VIDEO_PROVIDER: "vonage", DATA_DIR: await tempDataDir() });
    expect(await vonage.exited).toBe(1);
    const lines = vonage.output().trim().split("\n");
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(lines).toEqual([
      "joinwindow: VONAGE_APPLICATION_ID is required with VIDEO_PROVIDER=vonage",
      expect.stringMatching(/^joinwindow: one of VONAGE_PRIVATE_KEY or VONAGE_PRIVATE_KEY_PATH is required/),
    ]);
  });

  it("runs with nothing configured on the embedded database, with development secrets it never prints", async () => {
    const dataDir = await tempDataDir();
    const first = await startServer({ DATA_DIR: dataDir });
    try {
      const ready = await fetch(`${first.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(first.output()).toContain("applied migration");
      expect(first.output()).toContain("embedded (PGlite");
    } finally {
      expect(await first.stop()).toBe(0);
    }
    const secretsFile = path.join(dataDir, "dev-secrets.json");
    expect((await stat(secretsFile)).mode & 0o777).toBe(0o600);
    const secrets = JSON.parse(await readFile(secretsFile, "utf8")) as Record<string, string>;
    expect(secrets.webhookSecret).toMatch(/^whsec_/);
    for (const value of Object.values(secrets)) expect(first.output()).not.toContain(value);

    // A restart finds its data and secrets again and has nothing left to migrate.
    const second = await startServer({ DATA_DIR: dataDir });
    try {
      expect((await fetch(`${second.url}/readyz`)).status).toBe(200);
      expect(second.output()).not.toContain("applied migration");
      expect(JSON.parse(await readFile(secretsFile, "utf8"))).toEqual(secrets);
    } finally {
      expect(await second.stop("SIGINT")).toBe(0);
    }
  });

  it("on SIGTERM finishes the requests in flight, then exits cleanly", async () => {
    const direct = new URL(inject("databaseUrl"));
    const proxy = await startTcpProxy(direct.hostname, Number(direct.port || 5432));
    const server = await startServer({
      DATABASE_URL: proxy.urlFor(direct.toString()),
      WEBHOOK_SECRET: TEST_WEBHOOK_SECRET,
      AUTH_JWT_SECRET: TEST_JWT_SECRET,
      KEY_ENCRYPTION_SECRET: TEST_KEY_ENCRYPTION_SECRET,
      DATABASE_ACQUIRE_TIMEOUT_MS: "1500",
    });
    try {
      // A stalled database keeps /readyz busy for a while: a request in flight.
      proxy.stall();
      const inFlight = fetch(`${server.url}/readyz`);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const exit = server.stop("SIGTERM");
      const answer = await inFlight;
      expect(answer.status).toBe(503);
      expect(((await answer.json()) as { code: string }).code).toBe("not_ready");
      expect(await exit).toBe(0);
      expect(server.output()).toContain("shutting down");
      await expect(fetch(`${server.url}/healthz`)).rejects.toThrow();
    } finally {
      server.child.kill("SIGKILL");
      await proxy.close();
    }
  });
});
