// Child processes under test: the service (node dist/server.js, production
// configuration) and the baseline (bench/baseline.mjs). Their output goes to a
// file (as a production log would), which the bench scans for 5xx and errors.
import { spawn } from "node:child_process";
import { closeSync, openSync, readFileSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
const serverEntry = fileURLToPath(new URL("../../dist/server.js", import.meta.url));
const baselineEntry = fileURLToPath(new URL("../baseline.mjs", import.meta.url));

/** Every child still running, so that a failure or Ctrl-C can stop them. */
const running = new Set();

export function stopAll(signal = "SIGKILL") {
  for (const child of running) child.kill(signal);
}

/** Reads VmRSS from /proc every `intervalMs`, keeping the peak (in MB). */
export class RssSampler {
  constructor(pid, intervalMs = 200) {
    this.pid = pid;
    this.maxMb = 0;
    this.lastMb = 0;
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }
  sample() {
    try {
      const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.pid}/status`, "utf8"));
      if (match) {
        this.lastMb = Number(match[1]) / 1024;
        if (this.lastMb > this.maxMb) this.maxMb = this.lastMb;
      }
    } catch {
      // The process has exited.
    }
  }
  stop() {
    clearInterval(this.timer);
  }
}

const CLOCK_TICKS_PER_SECOND = 100; // getconf CLK_TCK on Linux

/** User + system CPU time of a process so far, in ms (all its threads). */
export function cpuMs(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14 and 15 of stat(5) (utime, stime) are at 11 and 12 after the command name.
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return Number.NaN;
  }
}

/**
 * Starts `node <args>` with exactly `env` (plus PATH), output appended to
 * `logFile`, and waits for "listening on http://…:<port>" in it.
 */
async function startProcess({ name, args, env, logFile, timeoutMs = 30_000 }) {
  // Emptied first (a stale "listening on" must not be read), then opened for appending.
  writeFileSync(logFile, "");
  const fd = openSync(logFile, "a");
  const child = spawn(process.execPath, args, {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", fd, fd],
  });
  closeSync(fd);
  running.add(child);
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve(code ?? signal)));
  exited.then(() => running.delete(child));

  const started = Date.now();
  let port;
  for (;;) {
    const text = readFileSync(logFile, "utf8");
    const match = /listening on http:\/\/(?:localhost|127\.0\.0\.1):(\d+)/.exec(text);
    if (match) {
      port = Number(match[1]);
      break;
    }
    const code = await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve(undefined), 50))]);
    if (code !== undefined) throw new Error(`${name} exited (${code}) before listening:\n${text.slice(-4000)}`);
    if (Date.now() - started > timeoutMs) {
      child.kill("SIGKILL");
      throw new Error(`${name} did not start within ${timeoutMs} ms:\n${text.slice(-4000)}`);
    }
  }
  const rss = new RssSampler(child.pid);
  return {
    name,
    child,
    pid: child.pid,
    url: `http://127.0.0.1:${port}`,
    rss,
    logFile,
    bootMs: Date.now() - started,
    cpuMs: () => cpuMs(child.pid),
    /** 5xx answers and error-level lines logged since the last call; empties the log. */
    drainLog() {
      return scanLog(logFile);
    },
    async stop(signal = "SIGTERM", graceMs = 15_000) {
      rss.stop();
      rss.sample();
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/**
 * Each process connects with its own application_name, so that the bench can
 * tell its Postgres backends (and their CPU time) from the other's.
 */
export const APPLICATION_NAMES = { service: "jw-bench-service", baseline: "jw-bench-baseline" };

function withApplicationName(databaseUrl, name) {
  const url = new URL(databaseUrl);
  url.searchParams.set("application_name", name);
  return url.toString();
}

/**
 * The service exactly as deployed: production mode, default log level and
 * metrics; only the two rate limits are off (a load test from one address
 * and a few thousand users would otherwise measure the limiter's 429s).
 */
export function startService({ databaseUrl, secrets, logFile, nodeArgs = [], env = {} }) {
  return startProcess({
    name: "service",
    args: [...nodeArgs, serverEntry],
    logFile,
    env: {
      NODE_ENV: "production",
      HOST: "127.0.0.1",
      PORT: "0",
      DATABASE_URL: withApplicationName(databaseUrl, APPLICATION_NAMES.service),
      WEBHOOK_SECRET: secrets.webhookSecret,
      AUTH_JWT_SECRET: secrets.authJwtSecret,
      KEY_ENCRYPTION_SECRET: secrets.keyEncryptionSecret,
      RATE_LIMIT_PER_MINUTE: "0",
      RATE_LIMIT_JOIN_PER_MINUTE: "0",
      ...env,
    },
  });
}

export function startBaseline({ databaseUrl, secrets, logFile, nodeArgs = [] }) {
  return startProcess({
    name: "baseline",
    args: [...nodeArgs, baselineEntry],
    logFile,
    env: {
      NODE_ENV: "production",
      HOST: "127.0.0.1",
      PORT: "0",
      DATABASE_URL: withApplicationName(databaseUrl, APPLICATION_NAMES.baseline),
      WEBHOOK_SECRET: secrets.webhookSecret,
      AUTH_JWT_SECRET: secrets.authJwtSecret,
    },
  });
}

/** Counts 5xx "request completed" lines and error/fatal lines (pino levels 50/60), keeping a few samples. */
function scanLog(logFile) {
  const result = { bytes: 0, serverErrors: 0, errorLines: 0, samples: [] };
  try {
    result.bytes = statSync(logFile).size;
  } catch {
    return result;
  }
  const text = readFileSync(logFile, "utf8");
  // The child appends (O_APPEND), so truncating here is safe while it runs.
  truncateSync(logFile, 0);
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf("\n", start);
    if (end === -1) end = text.length;
    const line = text.slice(start, end);
    start = end + 1;
    const is5xx = /"statusCode":5\d\d/.test(line);
    const isError = /"level":(50|60)\b/.test(line);
    if (is5xx) result.serverErrors++;
    if (isError) result.errorLines++;
    if ((is5xx || isError) && result.samples.length < 5) result.samples.push(summariseLine(line));
  }
  return result;
}

function summariseLine(line) {
  try {
    const entry = JSON.parse(line);
    const parts = [entry.msg];
    if (entry.res?.statusCode) parts.push(`status ${entry.res.statusCode}`);
    if (entry.req?.url) parts.push(`${entry.req.method} ${entry.req.url}`);
    if (entry.err) parts.push(`${entry.err.type ?? "Error"}: ${entry.err.message}`);
    if (entry.code) parts.push(`code ${entry.code}`);
    return parts.filter(Boolean).join(" | ").slice(0, 400);
  } catch {
    return line.slice(0, 400);
  }
}
