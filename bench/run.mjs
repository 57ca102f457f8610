// npm run bench [-- --quick] — see bench/README.md.
//
// Progress goes to stderr; stdout holds the table and, on its last line, the
// JSON result (also written to bench/results/latest.json).
import { execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { adminUrl, checkpoint, createDatabase, Dataset, dropAllCreated, dropDatabase, tableCounts } from "./lib/db.mjs";
import { APPLICATION_NAMES, repoRoot, startBaseline, startService, stopAll } from "./lib/processes.mjs";
import { NoiseMeter, waitForQuiet } from "./lib/noise.mjs";
import { formatReport, interquartileMean, median, round, summariseLegs, TARGETS } from "./lib/report.mjs";
import { CONNECTIONS, Jwts, makeSecrets, Picker, runLeg, sanityCheck } from "./lib/scenarios.mjs";

const SCENARIOS = ["introspect", "join", "webhook"];
const GROWTH_SCENARIOS = ["introspect", "join"];

function parseArgs(argv) {
  const options = { quick: false, growth: undefined, rounds: undefined, legSeconds: undefined, only: SCENARIOS, appointments: 10_000, subscribe: false };
  for (const arg of argv) {
    const [key, value] = arg.split("=");
    if (key === "--quick") options.quick = true;
    else if (key === "--no-growth") options.growth = false;
    else if (key === "--growth") options.growth = true;
    else if (key === "--rounds") options.rounds = Number(value);
    else if (key === "--duration") options.legSeconds = Number(value);
    else if (key === "--only") options.only = value.split(",");
    else if (key === "--appointments") options.appointments = Number(value);
    else if (key === "--growth-sizes") options.growthSizes = value.split(",").map(Number);
    else if (key === "--subscribe") options.subscribe = true;
    else {
      console.error(
        `unknown option ${arg}\nusage: npm run bench -- [--quick] [--no-growth|--growth] [--rounds=N] [--duration=S] [--only=introspect,join,webhook] [--appointments=N] [--growth-sizes=10000,100000,1000000] [--subscribe]`,
      );
      process.exit(2);
    }
  }
  // Many short rounds rather than a few long ones: each round's service leg is compared with the baseline
  // leg next to it, so the machine's drift (20-40 % over minutes here) cancels out within a round.
  options.rounds ??= options.quick ? 14 : 30;
  options.legSeconds ??= 1;
  // Not measured. The service's JIT needs several seconds per scenario before its cost per request settles.
  options.warmSeconds = { service: options.quick ? 3 : 5, baseline: options.quick ? 1 : 2 };
  options.growth ??= !options.quick;
  options.growthSizes ??= [10_000, 100_000, 1_000_000];
  options.growthRounds = 3;
  options.growthLegSeconds = 4;
  // Other sessions share this machine: before each round the bench waits (at most this long over the whole run) for it to be quiet.
  options.quietBudget = { ms: options.quick ? 5_000 : 45_000 };
  return options;
}

const options = parseArgs(process.argv.slice(2));
const log = (line) => process.stderr.write(`bench: ${line}\n`);
const workDir = mkdtempSync(path.join(os.tmpdir(), "jw-bench-"));
const resultsDir = path.join(repoRoot, "bench", "results");

let cleaning;
function cleanup() {
  cleaning ??= (async () => {
    stopAll("SIGKILL");
    await dropAllCreated();
    rmSync(workDir, { recursive: true, force: true });
  })();
  return cleaning;
}
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, async () => {
    log(`${signal}: stopping the processes and dropping the bench databases`);
    await cleanup();
    process.exit(130);
  });
}

/** Which code was measured: the commit and whether src/ had uncommitted changes. */
function codeVersion() {
  try {
    const git = (...args) => execFileSync("git", args, { cwd: repoRoot, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    const commit = git("rev-parse", "--short", "HEAD");
    const dirty = git("status", "--porcelain", "--", "src", "prisma").length > 0;
    return `${commit}${dirty ? " + uncommitted changes in src/" : ""}`;
  } catch {
    return "unknown";
  }
}

async function machineInfo() {
  let postgres = "postgres ?";
  try {
    const client = new pg.Client({ connectionString: adminUrl() });
    await client.connect();
    postgres = `PostgreSQL ${(await client.query("SHOW server_version")).rows[0].server_version}`;
    await client.end();
  } catch {
    // reported as unknown
  }
  return { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model?.trim() ?? "?", memGb: round(os.totalmem() / 2 ** 30, 1), node: process.version, postgres };
}

let waitedForQuietMs = 0;

/** Share of all CPUs busy over one second (from /proc/stat), so that a run on a busy machine can be recognised. */
async function machineBusyPct() {
  const read = () => {
    const [, ...fields] = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).map(Number);
    const idle = fields[3] + (fields[4] ?? 0);
    return { idle, total: fields.reduce((a, b) => a + b, 0) };
  };
  try {
    const a = read();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const b = read();
    return round(100 * (1 - (b.idle - a.idle) / (b.total - a.total)), 0);
  } catch {
    return null;
  }
}

/** Service and baseline alternately (ABBA…), same duration, `rounds` times, after a warm-up of each. */
async function compare(scenario, service, baseline, context, { rounds = options.rounds, legSeconds = options.legSeconds, label = scenario } = {}) {
  await checkpoint(context.databaseUrl);
  await sanityCheck(service.url, scenario, context);
  await sanityCheck(baseline.url, scenario, context);
  for (const target of [service, baseline]) await runLeg(target.url, scenario, context, options.warmSeconds[target.name]);
  service.drainLog();
  baseline.drainLog();
  const legs = { service: [], baseline: [] };
  const serviceLog = { bytes: 0, serverErrors: 0, errorLines: 0, samples: [] };
  for (let r = 0; r < rounds; r++) {
    // Looking for quiet takes half a second: before every fifth round is enough to skip a busy stretch.
    if (r % 5 === 0) {
      waitedForQuietMs += await waitForQuiet(options.quietBudget, {
        onWait: (pct) => log(`the machine is ${pct}% busy with other work; waiting for it to calm down (budget left ${(options.quietBudget.ms / 1000).toFixed(0)} s)`),
      });
    }
    const order = r % 2 === 0 ? [service, baseline] : [baseline, service];
    for (const target of order) {
      const cpuBefore = target.cpuMs();
      await context.noise.start([service.pid, baseline.pid]);
      const leg = await runLeg(target.url, scenario, context, legSeconds);
      const { foreignCpuPct, backendCpuMs } = await context.noise.stop();
      const ownCpuMs = target.cpuMs() - cpuBefore;
      leg.foreignCpuPct = foreignCpuPct;
      leg.cpuMsPerRequest = leg.requests ? round(ownCpuMs / leg.requests, 3) : null;
      // The process and the Postgres backends serving it: the whole cost of its requests on this machine.
      leg.dbCpuMsPerRequest = leg.requests ? round((backendCpuMs[APPLICATION_NAMES[target.name]] ?? 0) / leg.requests, 3) : null;
      leg.totalCpuMsPerRequest = leg.requests ? round(leg.cpuMsPerRequest + leg.dbCpuMsPerRequest, 3) : null;
      const scanned = target.drainLog();
      if (target === service) {
        serviceLog.bytes += scanned.bytes;
        serviceLog.serverErrors += scanned.serverErrors;
        serviceLog.errorLines += scanned.errorLines;
        serviceLog.samples.push(...scanned.samples.slice(0, 5 - serviceLog.samples.length));
        leg.logBytesPerRequest = leg.requests ? round(scanned.bytes / leg.requests, 0) : null;
      }
      leg.rssMb = round(target.rss.lastMb, 1);
      legs[target.name].push(leg);
    }
    const s = legs.service.at(-1);
    const b = legs.baseline.at(-1);
    if (rounds > 8 && r % 5 !== 4 && r !== rounds - 1) continue;
    log(
      `${label} round ${r + 1}/${rounds}: service ${s.rps.toFixed(0)} req/s p99 ${s.p99Ms} ms (${s.errors} errors), ` +
        `baseline ${b.rps.toFixed(0)} req/s p99 ${b.p99Ms} ms (${b.errors} errors), ratio ${(s.rps / b.rps).toFixed(2)}, ` +
        `CPU ratio ${(b.totalCpuMsPerRequest / s.totalCpuMsPerRequest).toFixed(2)}, ` +
        `service RSS ${service.rss.lastMb.toFixed(0)} MB, other work on the machine ${s.foreignCpuPct}% / ${b.foreignCpuPct}%`,
    );
  }
  return { legs, serviceLog };
}

async function mainPhase(details) {
  const db = await createDatabase();
  log(`database ${db.name}`);
  const secrets = makeSecrets();
  const service = await startService({
    databaseUrl: db.url,
    secrets,
    logFile: path.join(workDir, "service.log"),
    ...(options.subscribe ? { env: { SUBSCRIPTIONS_ALLOW_PRIVATE_TARGETS: "true" } } : {}),
  });
  log(`service up at ${service.url} (pid ${service.pid}, boot incl. migrations ${service.bootMs} ms)`);
  const subscriber = options.subscribe ? await subscribe(service.url, secrets) : undefined;
  const now = Date.now();
  const dataset = new Dataset({ startsAt: new Date(now), endsAt: new Date(now + 2 * 3600_000) });
  const loadS = await dataset.growTo(db.url, options.appointments);
  log(`preloaded ${options.appointments} appointments and ${options.appointments} live tokens in ${loadS.toFixed(1)} s`);
  const baseline = await startBaseline({ databaseUrl: db.url, secrets, logFile: path.join(workDir, "baseline.log") });
  log(`baseline up at ${baseline.url} (pid ${baseline.pid})`);
  service.drainLog();
  service.rss.sample();
  details.serviceRssBeforeLoadMb = round(service.rss.lastMb, 1);

  const jwts = new Jwts(secrets.authJwtSecret);
  for (let i = 0; i < dataset.size; i++) {
    jwts.for(dataset.agentId(i));
    jwts.for(dataset.customerId(i));
  }
  const context = { dataset, picker: new Picker(dataset), jwts, secrets, databaseUrl: db.url, noise: new NoiseMeter(db.url, db.name) };

  const results = {};
  try {
    for (const scenario of options.only) results[scenario] = await compare(scenario, service, baseline, context);
    details.counts = await tableCounts(db.url);
    if (subscriber) {
      details.subscriber = { received: subscriber.received(), pendingAtEnd: await pendingDeliveries(db.url) };
      log(`the subscriber received ${details.subscriber.received} deliveries; ${details.subscriber.pendingAtEnd} were still pending at the end`);
    }
  } finally {
    await subscriber?.close();
    await baseline.stop();
    const code = await service.stop();
    const tail = service.drainLog();
    if (code !== 0) log(`service exited with ${code} on SIGTERM`);
    details.serviceExit = { code, ...tail };
    await context.noise.close();
    await dropDatabase(db.name);
  }
  details.preloadSeconds = round(loadS, 1);
  details.baselineRssMaxMb = round(baseline.rss.maxMb, 1);
  details.serviceBootMs = service.bootMs;
  return { results, rssMaxMb: service.rss.maxMb };
}

/**
 * --subscribe: one subscription to every event type, to a receiver on loopback (in this process) that
 * answers 204 at once, so the legs pay for writing, fanning out and delivering every event as a deployment
 * with one subscriber does. Without it nobody subscribes, and the service writes no event at all.
 */
async function subscribe(serviceUrl, secrets) {
  let received = 0;
  const server = createServer((request, response) => {
    request.resume();
    request.on("end", () => {
      received += 1;
      response.writeHead(204).end();
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const manager = new Jwts(secrets.authJwtSecret).sign({ sub: "bench-ops", scope: "subscriptions:manage" });
  const answer = await fetch(`${serviceUrl}/v1/subscriptions`, {
    method: "POST",
    headers: { authorization: `Bearer ${manager}`, "content-type": "application/json" },
    body: JSON.stringify({ url: `http://127.0.0.1:${server.address().port}/events` }),
  });
  if (answer.status !== 201) throw new Error(`creating the subscription answered ${answer.status}: ${await answer.text()}`);
  log(`subscribed a receiver on loopback to every event`);
  return {
    received: () => received,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

async function pendingDeliveries(databaseUrl) {
  const client = new pg.Client(databaseUrl);
  await client.connect();
  try {
    const { rows } = await client.query(
      `SELECT (SELECT count(*) FROM subscription_deliveries WHERE status = 'pending') + (SELECT count(*) FROM outbox_events) AS n`,
    );
    return Number(rows[0].n);
  } finally {
    await client.end();
  }
}

async function growthPhase() {
  const db = await createDatabase();
  log(`growth: database ${db.name}`);
  const secrets = makeSecrets();
  const service = await startService({ databaseUrl: db.url, secrets, logFile: path.join(workDir, "service-growth.log") });
  const baseline = await startBaseline({ databaseUrl: db.url, secrets, logFile: path.join(workDir, "baseline-growth.log") });
  const now = Date.now();
  const dataset = new Dataset({ startsAt: new Date(now), endsAt: new Date(now + 2 * 3600_000) });
  const context = {
    dataset,
    picker: new Picker(dataset),
    jwts: new Jwts(secrets.authJwtSecret),
    secrets,
    databaseUrl: db.url,
    noise: new NoiseMeter(db.url, db.name),
  };
  const growth = {
    sizes: options.growthSizes,
    rounds: options.growthRounds,
    legSeconds: options.growthLegSeconds,
    loadSeconds: {},
    introspect: {},
    join: {},
    p99Factor: {},
    baselineP99Factor: {},
    rssMaxMb: 0,
  };
  try {
    for (const size of options.growthSizes) {
      const loadS = await dataset.growTo(db.url, size, {
        onProgress: (n) => process.stderr.write(`\rbench: growth: loading… ${n} rows`),
      });
      process.stderr.write("\n");
      growth.loadSeconds[size] = round(loadS, 1);
      log(`growth: ${size} appointments and tokens (loaded in ${loadS.toFixed(1)} s)`);
      for (const scenario of GROWTH_SCENARIOS) {
        const { legs, serviceLog } = await compare(scenario, service, baseline, context, {
          rounds: options.growthRounds,
          legSeconds: options.growthLegSeconds,
          label: `growth ${size} ${scenario}`,
        });
        const s = summariseLegs(legs.service);
        const b = summariseLegs(legs.baseline);
        growth[scenario][size] = {
          rps: s.rps,
          p50Ms: s.p50Ms,
          p99Ms: s.p99Ms,
          errors: s.errors,
          serverErrors: serviceLog.serverErrors,
          baselineRps: b.rps,
          baselineP50Ms: b.p50Ms,
          baselineP99Ms: b.p99Ms,
          foreignCpuPct: round(median([...legs.service, ...legs.baseline].map((l) => l.foreignCpuPct)), 1),
        };
      }
    }
  } finally {
    await baseline.stop();
    await service.stop();
    await context.noise.close();
    await dropDatabase(db.name);
  }
  const first = options.growthSizes[0];
  const last = options.growthSizes.at(-1);
  const factor = (a, b) => (a && b ? round(b / a) : null);
  for (const scenario of GROWTH_SCENARIOS) {
    growth.p99Factor[scenario] = factor(growth[scenario][first]?.p99Ms, growth[scenario][last]?.p99Ms);
    growth.baselineP99Factor[scenario] = factor(growth[scenario][first]?.baselineP99Ms, growth[scenario][last]?.baselineP99Ms);
  }
  growth.rssMaxMb = round(service.rss.maxMb, 1);
  return growth;
}

async function main() {
  const started = Date.now();
  const details = {
    date: new Date().toISOString(),
    mode: options.quick ? "--quick" : "full",
    code: codeVersion(),
    rounds: options.rounds,
    legSeconds: options.legSeconds,
    warmSeconds: options.warmSeconds,
    connections: CONNECTIONS,
    appointments: options.appointments,
    machine: await machineInfo(),
    targets: TARGETS,
    scenarios: {},
  };

  details.machineBusyPctBeforeStart = await machineBusyPct();
  if (details.machineBusyPctBeforeStart > 20) {
    log(`note: the machine was ${details.machineBusyPctBeforeStart}% busy before the run started; other work here skews every number`);
  }
  const main = await mainPhase(details);
  const scenarios = {};
  for (const [name, { legs, serviceLog }] of Object.entries(main.results)) {
    const s = summariseLegs(legs.service);
    const b = summariseLegs(legs.baseline);
    scenarios[name] = {
      rps: s.rps,
      p50Ms: s.p50Ms,
      p99Ms: s.p99Ms,
      errors: s.errors,
      baselineRps: b.rps,
      // Throughput ratio: service req/s ÷ the baseline's in the same round, averaged over the middle half of
      // the rounds (interquartile mean).
      ratio: round(interquartileMean(legs.service.map((l, i) => l.rps / legs.baseline[i].rps))),
      // CPU ratio: baseline ÷ service CPU time per request, each process with its Postgres backends (the same
      // average). It is what the throughput ratio would be if both were bound by the same CPUs, and the load
      // generator's and other work's share of the CPUs does not move it.
      cpuRatio: round(interquartileMean(legs.service.map((l, i) => legs.baseline[i].totalCpuMsPerRequest / l.totalCpuMsPerRequest))),
    };
    details.scenarios[name] = {
      maxMs: s.maxMs,
      cpuMsPerRequest: round(median(legs.service.map((l) => l.cpuMsPerRequest)), 3),
      // Share of the CPUs busy with work other than this benchmark during the legs (median, max).
      foreignCpuPct: {
        median: round(median([...legs.service, ...legs.baseline].map((l) => l.foreignCpuPct)), 1),
        max: Math.max(...[...legs.service, ...legs.baseline].map((l) => l.foreignCpuPct)),
      },
      statusCodes: s.statusCodes,
      requests: s.requests,
      // The ratio of the medians (the figure reported before the per-round ratio) and the median of the
      // per-round ratios, as a check on drift.
      ratioOfMedians: s.rps && b.rps ? round(s.rps / b.rps) : null,
      medianRoundRatio: round(median(legs.service.map((l, i) => l.rps / legs.baseline[i].rps))),
      // CPU ms per request, service with its backends and baseline with its backends (medians).
      totalCpuMsPerRequest: { service: s.totalCpuMsPerRequest, baseline: b.totalCpuMsPerRequest },
      dbCpuMsPerRequest: { service: s.dbCpuMsPerRequest, baseline: b.dbCpuMsPerRequest },
      serviceLog,
      baseline: b,
      legs,
    };
  }

  let growth = { skipped: true };
  let rssMaxMb = main.rssMaxMb;
  if (options.growth) {
    growth = await growthPhase();
    rssMaxMb = Math.max(rssMaxMb, growth.rssMaxMb);
  }
  details.totalSeconds = round((Date.now() - started) / 1000, 1);
  details.waitedForQuietSeconds = round(waitedForQuietMs / 1000, 1);

  const report = { scenarios, rssMaxMb: round(rssMaxMb, 1), growth };
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(path.join(resultsDir, "latest.json"), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(path.join(resultsDir, "latest-details.json"), `${JSON.stringify(details, null, 2)}\n`);
  log(`done in ${details.totalSeconds} s; per-leg numbers in bench/results/latest-details.json`);
  process.stdout.write(`${formatReport(report, details)}\n\n${JSON.stringify(report)}\n`);
}

try {
  await main();
  await cleanup();
} catch (error) {
  log(`failed: ${error.stack ?? error.message}`);
  await cleanup();
  process.exit(1);
}
