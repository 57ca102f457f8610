// Summarises a V8 .cpuprofile (node --cpu-prof): self time per function and
// per package, optionally only for samples inside given time windows
// (microseconds on the monotonic clock, the clock of process.hrtime and of
// the profile's own timestamps on Linux).

/** Where a frame's code lives: a package, the service's own code, node internals, or a V8 pseudo-frame. */
export function categoryOf(frame) {
  const { url, functionName } = frame;
  if (!url) {
    if (/^\((garbage collector|idle|program|root)\)$/.test(functionName)) return functionName;
    if (/^wasm-function|^\$/.test(functionName)) return "(wasm)";
    return "(native)";
  }
  if (url.startsWith("node:")) return "node internals";
  if (/\.wasm\b|wasm:\/\//.test(url)) return "(wasm)";
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1];
  const own = /\/(dist|src|bench)\/(.*)$/.exec(url);
  if (own) return `${own[1]}/${own[2].split("/")[0]}`;
  return url;
}

/**
 * @param profile parsed .cpuprofile
 * @param windows [{ from, to }] in µs, or undefined for the whole profile
 */
export function summarise(profile, windows) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map();
  let t = profile.startTime;
  let total = 0;
  let idle = 0;
  const inWindow = (time) => !windows || windows.some((w) => time >= w.from && time <= w.to);
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    const next = profile.timeDeltas[i + 1] ?? 0;
    if (!inWindow(t)) continue;
    const node = byId.get(profile.samples[i]);
    const weight = Math.max(next, 0);
    total += weight;
    if (node.callFrame.functionName === "(idle)") idle += weight;
    selfUs.set(node.id, (selfUs.get(node.id) ?? 0) + weight);
  }
  const functions = new Map();
  const categories = new Map();
  for (const [id, us] of selfUs) {
    const { callFrame } = byId.get(id);
    const where = callFrame.url ? `${callFrame.url.replace(/^file:\/\/.*?node_modules\//, "").replace(/^file:\/\/.*\/(dist|bench)\//, "$1/")}:${callFrame.lineNumber + 1}` : "";
    const key = `${callFrame.functionName || "(anonymous)"} ${where}`.trim();
    functions.set(key, (functions.get(key) ?? 0) + us);
    const category = categoryOf(callFrame);
    categories.set(category, (categories.get(category) ?? 0) + us);
  }
  const busy = total - idle;
  const rank = (map) =>
    [...map]
      .filter(([name]) => name !== "(idle)")
      .sort((a, b) => b[1] - a[1])
      .map(([name, us]) => ({ name, ms: Math.round(us / 1000), pctOfBusy: Math.round((1000 * us) / busy) / 10 }));
  return {
    wallMs: Math.round(total / 1000),
    busyMs: Math.round(busy / 1000),
    idlePct: total ? Math.round((1000 * idle) / total) / 10 : 0,
    functions: rank(functions),
    categories: rank(categories),
  };
}

/** Areas worth knowing the inclusive cost of (a sample counts once if any frame on its stack matches). */
export const AREAS = [
  ["Prisma query compiler (WebAssembly compile per query)", (f) => f.functionName === "compile" && /query_compiler/.test(f.url)],
  ["Prisma client runtime, excluding the compiler and the pg driver", null],
  ["pg driver + socket I/O (pg, pg-protocol, writev)", (f) => /node_modules\/(pg|pg-protocol|pg-pool)\//.test(f.url)],
  ["socket writes (writev, all)", (f) => f.functionName === "writev"],
  ["logging (pino)", (f) => /node_modules\/(pino|sonic-boom|fast-redact|@pinojs)/.test(f.url)],
  ["metrics (prom-client)", (f) => /node_modules\/prom-client\//.test(f.url)],
  // Verification only: fast-jwt's signer (the local provider's ES256 tokens) is counted below.
  ["caller JWT verification (@fastify/jwt, fast-jwt verifier)", (f) => /node_modules\/(@fastify\/jwt\/|fast-jwt\/src\/(verifier|decoder)\.js)/.test(f.url)],
  ["token signing (fast-jwt signer, crypto sign)", (f) => /node_modules\/fast-jwt\/src\/signer\.js/.test(f.url) || f.functionName === "signOneShot"],
  ["request validation (ajv)", (f) => /node_modules\/(ajv|@fastify\/ajv-compiler)\//.test(f.url)],
  ["response serialisation (fast-json-stringify)", (f) => /node_modules\/fast-json-stringify\//.test(f.url)],
  // helmet calls the next hook synchronously, so the rest of the request runs inside its frames: only
  // what helmet itself calls counts (the walk from the sample up stops at the first frame of Fastify's).
  ["security headers (helmet)", (f) => /node_modules\/helmet\//.test(f.url), (f) => /node_modules\/fastify\//.test(f.url)],
  ["garbage collector", (f) => f.functionName === "(garbage collector)"],
];

/** Whether a frame of the stack (leaf first) matches, looking no further up than the first `stopAt` frame. */
function matches(stack, match, stopAt) {
  for (const frame of stack) {
    if (match(frame)) return true;
    if (stopAt?.(frame)) return false;
  }
  return false;
}

/** Inclusive share of busy time per AREAS entry (the Prisma runtime line is Prisma frames minus compiler and driver). */
export function inclusiveAreas(profile, windows) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const inWindow = (time) => !windows || windows.some((w) => time >= w.from && time <= w.to);
  const totals = new Map(AREAS.map(([name]) => [name, 0]));
  let busy = 0;
  let t = profile.startTime;
  const prismaName = AREAS[1][0];
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    if (!inWindow(t)) continue;
    const weight = Math.max(profile.timeDeltas[i + 1] ?? 0, 0);
    const leaf = byId.get(profile.samples[i]);
    if (leaf.callFrame.functionName === "(idle)") continue;
    busy += weight;
    const stack = [];
    for (let id = leaf.id; id !== undefined; id = parent.get(id)) stack.push(byId.get(id).callFrame);
    const hits = new Set();
    for (const [name, match, stopAt] of AREAS) if (match && matches(stack, match, stopAt)) hits.add(name);
    const inPrisma = stack.some((f) => /node_modules\/@prisma\//.test(f.url));
    if (inPrisma && !hits.has(AREAS[0][0]) && !hits.has(AREAS[2][0])) hits.add(prismaName);
    for (const name of hits) totals.set(name, totals.get(name) + weight);
  }
  return AREAS.map(([name]) => ({ name, pctOfBusy: busy ? Math.round((1000 * totals.get(name)) / busy) / 10 : 0 }));
}
