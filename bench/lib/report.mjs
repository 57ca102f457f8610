// Medians, the text table and the targets of issue 5.

export function median(values) {
  const sorted = values.filter((v) => typeof v === "number" && Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * The mean of the middle half of the values (interquartile mean): as robust
 * to a few disturbed rounds as the median, and steadier from run to run.
 */
export function interquartileMean(values) {
  const sorted = values.filter((v) => typeof v === "number" && Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const cut = Math.floor(sorted.length / 4);
  const middle = sorted.slice(cut, sorted.length - cut);
  return middle.reduce((sum, v) => sum + v, 0) / middle.length;
}

export const round = (value, digits = 2) =>
  value === null || value === undefined ? null : Math.round(value * 10 ** digits) / 10 ** digits;

/** Median of each metric over a list of legs (errors are summed). */
export function summariseLegs(legs) {
  return {
    rps: round(median(legs.map((l) => l.rps)), 1),
    p50Ms: round(median(legs.map((l) => l.p50Ms))),
    p99Ms: round(median(legs.map((l) => l.p99Ms))),
    maxMs: round(median(legs.map((l) => l.maxMs))),
    cpuMsPerRequest: round(median(legs.map((l) => l.cpuMsPerRequest)), 3),
    dbCpuMsPerRequest: round(median(legs.map((l) => l.dbCpuMsPerRequest)), 3),
    totalCpuMsPerRequest: round(median(legs.map((l) => l.totalCpuMsPerRequest)), 3),
    errors: legs.reduce((sum, l) => sum + l.errors, 0),
    requests: legs.reduce((sum, l) => sum + l.requests, 0),
    statusCodes: legs.reduce((all, l) => {
      for (const [code, count] of Object.entries(l.statusCodes)) all[code] = (all[code] ?? 0) + count;
      return all;
    }, {}),
  };
}

export const TARGETS = {
  ratio: { introspect: 0.7, join: 0.6, webhook: 0.6 },
  introspectP99Ms: 25,
  growthP99Factor: 1.5,
  rssMb: 200,
};

const pad = (value, width, left = false) => {
  const text = value === null || value === undefined ? "–" : String(value);
  return left ? text.padEnd(width) : text.padStart(width);
};
const mark = (ok) => (ok === null ? "?" : ok ? "ok" : "MISSED");

export function formatReport(report, details) {
  const lines = [];
  lines.push(
    `joinwindow benchmark — ${details.mode} (${details.rounds} rounds × ${details.legSeconds} s per leg, ` +
      `${details.connections} connections, ${details.appointments} appointments preloaded) — ${details.date} — code ${details.code}`,
  );
  lines.push(
    `machine: ${details.machine.cpus} × ${details.machine.cpuModel}, node ${details.machine.node}, ${details.machine.postgres}; ` +
      `${details.machineBusyPctBeforeStart ?? "?"}% busy before the run; load generator, service, baseline and Postgres share these CPUs`,
  );
  lines.push("");
  lines.push(
    [
      pad("scenario", 11, true),
      pad("req/s", 8),
      pad("p50 ms", 8),
      pad("p99 ms", 8),
      pad("max ms", 8),
      pad("errors", 7),
      pad("base req/s", 11),
      pad("base p50", 9),
      pad("base p99", 9),
      pad("ratio", 6),
      pad("target", 7),
      pad("", 6),
      pad("CPU ratio", 9),
      pad("CPU ms/req svc/base (with Postgres)", 35),
    ].join(" "),
  );
  for (const [name, s] of Object.entries(report.scenarios)) {
    const d = details.scenarios[name];
    const target = TARGETS.ratio[name];
    lines.push(
      [
        pad(name, 11, true),
        pad(s.rps, 8),
        pad(s.p50Ms, 8),
        pad(s.p99Ms, 8),
        pad(d.maxMs, 8),
        pad(s.errors, 7),
        pad(s.baselineRps, 11),
        pad(d.baseline.p50Ms, 9),
        pad(d.baseline.p99Ms, 9),
        pad(s.ratio, 6),
        pad(`≥${target}`, 7),
        pad(mark(s.ratio === null ? null : s.ratio >= target), 6, true),
        pad(s.cpuRatio, 9),
        pad(`${d.cpuMsPerRequest} / ${d.baseline.cpuMsPerRequest} (${d.totalCpuMsPerRequest.service} / ${d.totalCpuMsPerRequest.baseline})`, 35),
      ].join(" "),
    );
  }
  lines.push("");
  for (const [name, d] of Object.entries(details.scenarios)) {
    const codes = (c) => Object.entries(c).map(([k, v]) => `${k}×${v}`).join(" ") || "none";
    lines.push(`${pad(name, 11, true)} service statuses: ${codes(d.statusCodes)}; baseline statuses: ${codes(d.baseline.statusCodes)}`);
    if (d.serviceLog.serverErrors || d.serviceLog.errorLines) {
      lines.push(`${pad("", 11)} service log: ${d.serviceLog.serverErrors} 5xx, ${d.serviceLog.errorLines} error lines`);
      for (const sample of d.serviceLog.samples) lines.push(`${pad("", 13)}${sample}`);
    }
  }
  const noise = Object.entries(details.scenarios)
    .map(([name, d]) => `${name} ${d.foreignCpuPct.median}% (max ${d.foreignCpuPct.max}%)`)
    .join(", ");
  lines.push(`other work on the machine during the legs, share of all CPUs (median): ${noise}${/\b([2-9]\d|100)(\.\d)?% \(/.test(noise) ? " — NOISY RUN" : ""}`);
  lines.push("");
  const introspectP99 = report.scenarios.introspect?.p99Ms;
  // An absolute latency depends on how fast the machine is at the time; the baseline's p99 in the same legs says how fast that was.
  const baselineP99 = details.scenarios.introspect?.baseline.p99Ms;
  lines.push(
    `introspect p99: ${introspectP99 ?? "–"} ms (target < ${TARGETS.introspectP99Ms} ms) ${mark(introspectP99 === null || introspectP99 === undefined ? null : introspectP99 < TARGETS.introspectP99Ms)}` +
      (baselineP99 === undefined ? "" : ` — the baseline's p99 in the same rounds: ${baselineP99} ms`),
  );
  lines.push(
    `peak service RSS: ${report.rssMaxMb} MB (target < ${TARGETS.rssMb} MB) ${mark(report.rssMaxMb < TARGETS.rssMb)}` +
      ` — ${details.serviceRssBeforeLoadMb} MB idle after boot; baseline peak ${details.baselineRssMaxMb} MB`,
  );

  const g = report.growth;
  if (g.skipped) {
    lines.push("growth: skipped (--quick)");
  } else {
    lines.push("");
    lines.push(`growth (${g.rounds} rounds × ${g.legSeconds} s per leg, service and baseline alternately; median):`);
    lines.push(
      [
        pad("scenario", 11, true),
        pad("rows", 9),
        pad("load s", 7),
        pad("req/s", 8),
        pad("p50 ms", 8),
        pad("p99 ms", 8),
        pad("errors", 7),
        pad("base req/s", 11),
        pad("base p50", 9),
        pad("base p99", 9),
        pad("other work", 11),
      ].join(" "),
    );
    for (const scenario of ["introspect", "join"]) {
      for (const size of g.sizes) {
        const m = g[scenario][size];
        lines.push(
          [
            pad(scenario, 11, true),
            pad(size, 9),
            pad(g.loadSeconds[size], 7),
            pad(m.rps, 8),
            pad(m.p50Ms, 8),
            pad(m.p99Ms, 8),
            pad(m.errors, 7),
            pad(m.baselineRps, 11),
            pad(m.baselineP50Ms, 9),
            pad(m.baselineP99Ms, 9),
            pad(`${m.foreignCpuPct}%${m.foreignCpuPct >= 20 ? " NOISY" : ""}`, 11),
          ].join(" "),
        );
      }
      const factor = g.p99Factor[scenario];
      lines.push(
        `${pad("", 11)} p99 at ${g.sizes.at(-1)} / p99 at ${g.sizes[0]} = ${factor} (target ≤ ${TARGETS.growthP99Factor}) ` +
          `${mark(factor === null || factor === undefined ? null : factor <= TARGETS.growthP99Factor)}; baseline: ${g.baselineP99Factor[scenario]}`,
      );
    }
    lines.push(`growth service peak RSS: ${g.rssMaxMb} MB`);
  }
  return lines.join("\n");
}
