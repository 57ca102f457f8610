// Where the service's time goes: runs it under `node --cpu-prof` (same
// production configuration as the benchmark), drives each scenario for a
// while at 32 connections, stops it and summarises self time per function and
// per package for each scenario's load window.
//
//   npm run build && node bench/profile.mjs [--duration=8] [--only=introspect,join,webhook] [--top=15] [--target=baseline]
//
// The raw profile stays in bench/results/*.cpuprofile (git-ignored); open it
// in Chrome DevTools or speedscope for flame graphs.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createDatabase, Dataset, dropAllCreated, dropDatabase } from "./lib/db.mjs";
import { inclusiveAreas, summarise } from "./lib/cpuprofile.mjs";
import { repoRoot, startBaseline, startService, stopAll } from "./lib/processes.mjs";
import { Jwts, makeSecrets, Picker, runLeg, sanityCheck } from "./lib/scenarios.mjs";

const args = Object.fromEntries(
  process.argv.slice(2).map((arg) => {
    const [key, value] = arg.replace(/^--/, "").split("=");
    return [key, value ?? true];
  }),
);
const durationS = Number(args.duration ?? 8);
const top = Number(args.top ?? 15);
const scenarios = (args.only ?? "introspect,join,webhook").split(",");
// --target=baseline profiles bench/baseline.mjs instead, for comparison.
const target = args.target === "baseline" ? "baseline" : "service";
const resultsDir = path.join(repoRoot, "bench", "results");
const profileDir = path.join(resultsDir, `profile-${Date.now()}`);
const workDir = mkdtempSync(path.join(os.tmpdir(), "jw-profile-"));
const log = (line) => process.stderr.write(`profile: ${line}\n`);
const nowUs = () => Number(process.hrtime.bigint() / 1000n);

async function cleanup() {
  stopAll("SIGKILL");
  await dropAllCreated();
  rmSync(workDir, { recursive: true, force: true });
}
process.once("SIGINT", async () => {
  await cleanup();
  process.exit(130);
});

async function main() {
  mkdirSync(profileDir, { recursive: true });
  const db = await createDatabase();
  const secrets = makeSecrets();
  const profiled = { databaseUrl: db.url, secrets, nodeArgs: ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] };
  const service = await startService({ ...(target === "service" ? profiled : { databaseUrl: db.url, secrets }), logFile: path.join(workDir, "service.log") });
  const now = Date.now();
  const dataset = new Dataset({ startsAt: new Date(now), endsAt: new Date(now + 2 * 3600_000) });
  await dataset.growTo(db.url, 10_000);
  let profiledProcess = service;
  if (target === "baseline") {
    // The service only created the tables (migrations); the baseline is measured alone.
    await service.stop();
    profiledProcess = await startBaseline({ ...profiled, logFile: path.join(workDir, "baseline.log") });
  }
  const context = { dataset, picker: new Picker(dataset), jwts: new Jwts(secrets.authJwtSecret), secrets };
  const windows = {};
  const legs = {};
  for (const scenario of scenarios) {
    await sanityCheck(profiledProcess.url, scenario, context);
    await runLeg(profiledProcess.url, scenario, context, 5);
    const from = nowUs();
    const cpuBefore = profiledProcess.cpuMs();
    legs[scenario] = await runLeg(profiledProcess.url, scenario, context, durationS);
    legs[scenario].cpuMsPerRequest = (profiledProcess.cpuMs() - cpuBefore) / legs[scenario].requests;
    windows[scenario] = [{ from, to: nowUs() }];
    log(`${scenario}: ${legs[scenario].rps.toFixed(0)} req/s under the profiler, p99 ${legs[scenario].p99Ms} ms`);
    profiledProcess.drainLog();
  }
  const code = await profiledProcess.stop("SIGTERM");
  await dropDatabase(db.name);
  if (code !== 0) log(`${target} exited with ${code}`);

  const file = readdirSync(profileDir).find((name) => name.endsWith(".cpuprofile"));
  if (!file) throw new Error(`no .cpuprofile written in ${profileDir}`);
  const profile = JSON.parse(readFileSync(path.join(profileDir, file), "utf8"));
  const summary = { target, profile: path.relative(repoRoot, path.join(profileDir, file)), durationS, scenarios: {} };
  for (const scenario of scenarios) {
    const s = summarise(profile, windows[scenario]);
    const areas = inclusiveAreas(profile, windows[scenario]);
    summary.scenarios[scenario] = {
      rps: Math.round(legs[scenario].rps),
      ...s,
      areas,
      functions: s.functions.slice(0, 40),
      categories: s.categories.slice(0, 25),
    };
    const lines = [
      `\n== ${scenario}: ${Math.round(legs[scenario].rps)} req/s under the profiler, ${legs[scenario].cpuMsPerRequest.toFixed(2)} ms CPU per request; ` +
        `main thread busy ${s.busyMs} of ${s.wallMs} ms (idle ${s.idlePct}%)`,
      "   inclusive time by area (% of busy; areas overlap):",
      ...areas.map((a) => `     ${String(a.pctOfBusy).padStart(5)}%  ${a.name}`),
      "   self time by package (% of busy):",
      ...s.categories.slice(0, 12).map((c) => `     ${String(c.pctOfBusy).padStart(5)}%  ${c.name}`),
      "   hottest functions (self time, % of busy):",
      ...s.functions.slice(0, top).map((f) => `     ${String(f.pctOfBusy).padStart(5)}%  ${f.name}`),
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
  }
  writeFileSync(path.join(resultsDir, `profile-summary${target === "baseline" ? "-baseline" : ""}.json`), `${JSON.stringify(summary, null, 2)}\n`);
  log(`raw profile: ${summary.profile}; summary in bench/results/`);
}

try {
  await main();
  await cleanup();
} catch (error) {
  log(`failed: ${error.stack ?? error.message}`);
  await cleanup();
  process.exit(1);
}
