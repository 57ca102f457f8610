// `npm run build`: compiles the server (tsconfig.build.json) and the browser
// client (tsconfig.client.json) into dist/, copies the join page's HTML,
// stylesheet and icon next to the client, and writes dist/.build-stamp, a hash
// of everything the build reads.
//
// `node scripts/build.mjs --if-stale` (npm start, npm run migrate, npm run demo)
// builds only when that hash no longer matches, so starting again without a
// change takes a second instead of the two compilations. A content hash rather
// than modification times: a checkout, a copy or `touch` changes mtimes without
// changing what tsc would produce, and a switch of branch can leave older mtimes.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = fileURLToPath(new URL("..", import.meta.url));
const stampFile = path.join(root, "dist", ".build-stamp");
// What the output depends on: the sources (the generated Prisma client among
// them), the compiler settings, the installed versions and this script.
const INPUTS = ["src", "tsconfig.json", "tsconfig.build.json", "tsconfig.client.json", "package.json", "package-lock.json", "scripts/build.mjs"];

const { values } = parseArgs({ options: { "if-stale": { type: "boolean", default: false } } });

async function filesOf(input) {
  const full = path.join(root, input);
  if (!(await stat(full)).isDirectory()) return [input];
  const entries = await readdir(full, { recursive: true, withFileTypes: true });
  return entries.filter((entry) => entry.isFile()).map((entry) => path.relative(root, path.join(entry.parentPath, entry.name)));
}

async function inputsHash() {
  const files = (await Promise.all(INPUTS.map(filesOf))).flat().sort();
  const hash = createHash("sha256");
  for (const file of files) hash.update(`${file.split(path.sep).join("/")}\0`).update(await readFile(path.join(root, file))).update("\0");
  return hash.digest("hex");
}

// Taken before compiling: a file saved during the build makes the next start build again.
const hash = await inputsHash();
if (values["if-stale"] && (await readFile(stampFile, "utf8").catch(() => "")) === hash) {
  console.log("dist/ is up to date with the sources; `npm run build` rebuilds it anyway");
  process.exit(0);
}

// A build that stops half-way leaves no stamp that would call dist/ up to date.
await rm(stampFile, { force: true });
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
for (const project of ["tsconfig.build.json", "tsconfig.client.json"]) {
  const result = spawnSync(process.execPath, [tsc, "-p", project], { cwd: root, stdio: "inherit" });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

// The service serves these from dist/client beside the compiled client.
const clientSources = path.join(root, "src", "client");
const clientOutput = path.join(root, "dist", "client");
await mkdir(clientOutput, { recursive: true });
for (const name of await readdir(clientSources)) {
  if (/\.(html|css|svg)$/.test(name)) await copyFile(path.join(clientSources, name), path.join(clientOutput, name));
}
await writeFile(stampFile, hash);
