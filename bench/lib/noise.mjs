// How much of the machine was busy with work that is not this benchmark
// during a leg: total CPU time (/proc/stat) minus the CPU time of the bench
// itself (load generator), the service, the baseline and the Postgres backends
// serving the bench database. Other sessions' test runs on the same machine
// (and the same Postgres) show up here, so a noisy leg can be recognised.
import { readFileSync } from "node:fs";
import os from "node:os";
import pg from "pg";
import { cpuMs } from "./processes.mjs";

const TICK_MS = 10; // /proc/stat counts in USER_HZ = 100

function machineCpuMs() {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = fields[3] + (fields[4] ?? 0);
  const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: (total - idle) * TICK_MS, total: total * TICK_MS };
}

export class NoiseMeter {
  constructor(databaseUrl, databaseName) {
    this.databaseUrl = databaseUrl;
    this.databaseName = databaseName;
  }

  /** The bench database's backends, with the application_name of the process each serves. */
  async backends() {
    // One connection for the whole phase: two lookups per leg, and many short legs.
    if (!this.client) {
      this.client = new pg.Client({ connectionString: this.databaseUrl });
      this.client.on("error", () => {}); // a lookup in flight fails with it; the meter only measures
    }
    this.connected ??= this.client.connect();
    await this.connected;
    const { rows } = await this.client.query(
      "SELECT pid, application_name FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
      [this.databaseName],
    );
    return new Map(rows.map((r) => [r.pid, r.application_name]));
  }

  async close() {
    if (this.client) await this.client.end().catch(() => {});
  }

  /** Call before a leg with the pids of the processes under test. */
  async start(pids) {
    this.pids = pids;
    this.backendsBefore = await this.backends();
    this.ours = this.ownCpu([...this.backendsBefore.keys()]);
    this.machine = machineCpuMs();
    this.self = process.cpuUsage();
    this.wall = performance.now();
  }

  ownCpu(backends) {
    const perPid = new Map();
    for (const pid of [...this.pids, ...backends]) perPid.set(pid, cpuMs(pid));
    return perPid;
  }

  /**
   * After the leg: the share of all CPUs (0–100) used by other work, and the
   * CPU time (ms) the Postgres backends spent per application_name.
   */
  async stop() {
    const machine = machineCpuMs();
    const self = process.cpuUsage(this.self);
    const wallMs = performance.now() - this.wall;
    const backends = new Map([...this.backendsBefore, ...(await this.backends().catch(() => new Map()))]);
    const after = this.ownCpu([...backends.keys()]);
    let ours = (self.user + self.system) / 1000;
    const backendCpuMs = {};
    for (const [pid, ms] of after) {
      if (!Number.isFinite(ms)) continue; // a backend that ended during the leg: its time is lost, and tiny
      const spent = ms - (this.ours.get(pid) ?? 0); // a backend that appeared during the leg started at ~0
      ours += spent;
      const application = backends.get(pid);
      if (application !== undefined) backendCpuMs[application] = (backendCpuMs[application] ?? 0) + spent;
    }
    const foreign = Math.max(0, machine.busy - this.machine.busy - ours);
    return { foreignCpuPct: Math.round((1000 * foreign) / (wallMs * os.cpus().length)) / 10, backendCpuMs };
  }
}

/**
 * Before a round: while more than `thresholdPct` of the CPUs are busy (the
 * bench's own processes are idle between legs, so this is other work), wait
 * in half-second steps, spending at most what is left of `budget.ms` over
 * the whole run. Returns the ms waited.
 */
export async function waitForQuiet(budget, { thresholdPct = 25, onWait } = {}) {
  const started = performance.now();
  let announced = false;
  for (;;) {
    const a = machineCpuMs();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const b = machineCpuMs();
    const busyPct = (100 * (b.busy - a.busy)) / Math.max(1, b.total - a.total);
    const waited = performance.now() - started;
    if (busyPct <= thresholdPct || waited >= budget.ms) {
      budget.ms = Math.max(0, budget.ms - waited);
      return Math.round(waited);
    }
    if (!announced) onWait?.(Math.round(busyPct));
    announced = true;
  }
}
