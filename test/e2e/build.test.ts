import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const repo = fileURLToPath(new URL("../..", import.meta.url));
const BUILD_TIMEOUT = 120_000;

/**
 * scripts/build.mjs on a project of a few files laid out like ours (its
 * compilations take a second, not the twenty of the real one): what
 * `npm start` does before starting, and what `npm run build` does.
 */
describe("the build before npm start", () => {
  let project: string;

  const files: Record<string, string> = {
    "package.json": '{ "type": "module" }\n',
    "package-lock.json": '{ "lockfileVersion": 3 }\n',
    "tsconfig.json": JSON.stringify({
      compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, types: [], skipLibCheck: true },
    }),
    "tsconfig.build.json": JSON.stringify({
      extends: "./tsconfig.json",
      compilerOptions: { rootDir: "src", outDir: "dist" },
      include: ["src"],
      exclude: ["src/client"],
    }),
    "tsconfig.client.json": JSON.stringify({
      extends: "./tsconfig.json",
      compilerOptions: { rootDir: "src/client", outDir: "dist/client" },
      include: ["src/client"],
    }),
    "src/server.ts": 'export const greeting: string = "hello";\n',
    "src/domain/rules/window.ts": "export const minutes: number = 5;\n",
    "src/client/join-page.ts": 'export const title: string = "Join";\n',
    "src/client/join.html": "<!doctype html><title>Join</title>\n",
  };

  const write = async (file: string, text: string) => {
    await mkdir(path.dirname(path.join(project, file)), { recursive: true });
    await writeFile(path.join(project, file), text);
  };
  const read = (file: string) => readFile(path.join(project, file), "utf8");
  const modified = async (file: string) => (await stat(path.join(project, file))).mtimeMs;

  function build(...args: string[]) {
    const result = spawnSync(process.execPath, [path.join(project, "scripts/build.mjs"), ...args], { cwd: project, encoding: "utf8" });
    return { status: result.status, output: `${result.stdout}${result.stderr}`, skipped: result.stdout.includes("dist/ is up to date") };
  }

  beforeAll(async () => {
    project = await mkdtemp(path.join(os.tmpdir(), "jw-build-"));
    for (const [file, text] of Object.entries(files)) await write(file, text);
    await mkdir(path.join(project, "scripts"));
    await copyFile(path.join(repo, "scripts/build.mjs"), path.join(project, "scripts/build.mjs"));
    // The script finds tsc as the real project does, in node_modules.
    await symlink(path.join(repo, "node_modules"), path.join(project, "node_modules"), "dir");
  });

  afterAll(async () => {
    await rm(project, { recursive: true, force: true });
  });

  it(
    "builds when dist/ has no stamp, then only when a source, an asset or the lock file changed",
    async () => {
      const first = build("--if-stale");
      expect(first.status, first.output).toBe(0);
      expect(first.skipped).toBe(false);
      expect(await read("dist/server.js")).toContain('"hello"');
      expect(await read("dist/client/join-page.js")).toContain('"Join"');
      expect(await read("dist/client/join.html")).toContain("<title>Join</title>");

      const before = await modified("dist/server.js");
      const again = build("--if-stale");
      expect(again).toMatchObject({ status: 0, skipped: true });
      expect(await modified("dist/server.js")).toBe(before);

      // A file deep in src/ counts as much as one at its top.
      await write("src/domain/rules/window.ts", "export const minutes: number = 10;\n");
      expect(build("--if-stale")).toMatchObject({ status: 0, skipped: false });
      expect(await read("dist/domain/rules/window.js")).toContain("10");
      expect(build("--if-stale").skipped).toBe(true);

      // So do the join page's assets, which are copied, and the lock file, which pins the compiler and the types.
      await write("src/client/join.html", "<!doctype html><title>Join your appointment</title>\n");
      expect(build("--if-stale")).toMatchObject({ status: 0, skipped: false });
      expect(await read("dist/client/join.html")).toContain("Join your appointment");
      await write("package-lock.json", '{ "lockfileVersion": 3, "packages": {} }\n');
      expect(build("--if-stale")).toMatchObject({ status: 0, skipped: false });
    },
    BUILD_TIMEOUT,
  );

  it(
    "leaves no stamp after a failed build, so the next start tries again; without --if-stale it always builds",
    async () => {
      await write("src/server.ts", 'export const greeting: number = "hello";\n');
      const failed = build("--if-stale");
      expect(failed.status).not.toBe(0);
      expect(failed.output).toMatch(/error TS2322/);
      expect(existsSync(path.join(project, "dist/.build-stamp"))).toBe(false);

      await write("src/server.ts", files["src/server.ts"] ?? "");
      expect(build("--if-stale")).toMatchObject({ status: 0, skipped: false });
      expect(build("--if-stale").skipped).toBe(true);

      await rm(path.join(project, "dist/server.js"));
      expect(build()).toMatchObject({ status: 0, skipped: false });
      expect(await read("dist/server.js")).toContain('"hello"');
    },
    BUILD_TIMEOUT,
  );
});
