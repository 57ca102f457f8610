// `npm run demo`: builds when dist/ is out of date, starts the service
// (embedded database in DATA_DIR, built-in local video provider, development
// secrets), books two sample appointments for the same customer through a
// signed webhook — one open now, one whose customer window opens in about two
// minutes — and prints join links with development sign-in tokens in the URL
// fragment. The waiting room is on (the default): a customer's join waits until
// the agent has joined. Ctrl-C stops it.
//
//   npm run demo                 (PORT=3001 npm run demo for another port)
//   node scripts/demo.mjs --no-build   skips even the check that dist/ is up to date
import { spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createSigner } from "fast-jwt";
import { Webhook } from "standardwebhooks";

const root = fileURLToPath(new URL("..", import.meta.url));
const { values } = parseArgs({ options: { "no-build": { type: "boolean", default: false } } });
const MINUTE = 60_000;
const TOKEN_HOURS = 4;

const env = (name, fallback) => (process.env[name] ? process.env[name] : fallback);
const dataDir = path.resolve(root, env("DATA_DIR", ".data"));
const showHost = env("HOST", "localhost") === "0.0.0.0" ? "localhost" : env("HOST", "localhost");
const customerEarlyMinutes = Number(env("EARLY_JOIN_MINUTES_CUSTOMER", "5"));

function fail(message) {
  console.error(`demo: ${message}`);
  process.exit(1);
}

if (!values["no-build"]) {
  const build = spawnSync(process.execPath, [path.join(root, "scripts/build.mjs"), "--if-stale"], { stdio: "inherit" });
  if (build.status !== 0) fail("the build failed (see above)");
}

// The demo is self-contained: embedded database, local provider and the
// development secrets it can read back to sign webhooks and sign-in tokens.
const userLogLevel = process.env.LOG_LEVEL;
const child = spawn(process.execPath, [path.join(root, "dist/server.js")], {
  cwd: root,
  env: {
    ...process.env,
    NODE_ENV: "development",
    DATA_DIR: dataDir,
    PORT: env("PORT", "3000"),
    LOG_LEVEL: userLogLevel || "info",
    DATABASE_URL: "",
    VIDEO_PROVIDER: "local",
    WEBHOOK_SECRET: "",
    AUTH_JWT_SECRET: "",
    AUTH_JWT_PUBLIC_KEY: "",
    AUTH_JWKS_URL: "",
    AUTH_JWT_ISSUER: "",
    AUTH_JWT_AUDIENCE: "",
  },
  stdio: ["ignore", "pipe", "inherit"],
  // Its own process group: Ctrl-C reaches only this script, which asks the
  // service once to stop gracefully (a second signal would make it exit at once).
  detached: true,
});
const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve(code ?? (signal ? 0 : 1))));
let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    child.kill(stopping ? "SIGKILL" : "SIGTERM");
    stopping = true;
  });
}
process.on("exit", () => {
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});

// The server logs JSON lines; unless LOG_LEVEL was asked for, only warnings and errors are shown.
const listening = new Promise((resolve) => {
  let buffered = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk) => {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      let entry;
      try {
        entry = JSON.parse(line);
      } catch {
        entry = null;
      }
      const match = entry && /listening on http:\/\/localhost:(\d+)/.exec(entry.msg ?? "");
      if (match) resolve(Number(match[1]));
      if (userLogLevel || !entry || entry.level >= 40) console.log(line);
    }
  });
});

let ready = false;
exited.then((code) => {
  if (!ready) fail(`the service stopped (exit code ${code}) before it was ready; is the port in use? Try PORT=3001 npm run demo`);
});
const port = await listening;
ready = true;
const base = `http://${showHost}:${port}`;
const local = `http://127.0.0.1:${port}`;

const secrets = JSON.parse(await readFile(path.join(dataDir, "dev-secrets.json"), "utf8"));
const webhook = new Webhook(secrets.webhookSecret);
const signJwt = createSigner({ algorithm: "HS256", key: secrets.authJwtSecret });
const devToken = (sub) => {
  const now = Math.floor(Date.now() / 1000);
  return signJwt({ sub, iat: now, exp: now + TOKEN_HOURS * 3600 });
};

async function schedule(data) {
  const id = `msg_${randomUUID()}`;
  const timestamp = new Date();
  const body = JSON.stringify({ type: "appointment.scheduled", data });
  const response = await fetch(`${local}/v1/webhooks/appointments`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "webhook-id": id,
      "webhook-timestamp": String(Math.floor(timestamp.getTime() / 1000)),
      "webhook-signature": webhook.sign(id, timestamp, body),
    },
    body,
  });
  const answer = await response.json();
  if (!response.ok) fail(`scheduling ${data.externalId} failed: HTTP ${response.status} ${JSON.stringify(answer)}`);
  return answer.appointment;
}

const run = Date.now().toString(36);
const now = Date.now();
const customer = { id: `pat-${run}`, name: "Pat Doe" };
const soonStart = now + 2 * MINUTE + customerEarlyMinutes * MINUTE;
const appointments = [
  {
    label: "open now",
    appointment: await schedule({
      externalId: `demo-${run}-now`,
      startsAt: new Date(now + MINUTE).toISOString(),
      endsAt: new Date(now + 31 * MINUTE).toISOString(),
      timeZone: "America/New_York",
      agent: { id: `lee-${run}`, name: "Dr. Lee" },
      customer,
    }),
  },
  {
    label: "opens for the customer in about two minutes",
    appointment: await schedule({
      externalId: `demo-${run}-soon`,
      startsAt: new Date(soonStart).toISOString(),
      endsAt: new Date(soonStart + 30 * MINUTE).toISOString(),
      timeZone: "Asia/Tokyo",
      agent: { id: `okafor-${run}`, name: "Dr. Okafor" },
      customer,
    }),
  },
];

const relativeDataDir = path.relative(process.cwd(), dataDir);
const shownDataDir = relativeDataDir && !relativeDataDir.startsWith("..") ? relativeDataDir : dataDir;
// Every time with its zone: this machine's (UTC on most servers), and the appointment's own for its start.
const localZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
const shownZone = /^(Etc\/)?(UTC|GMT|Universal|Zulu)$/.test(localZone) ? "UTC" : localZone;
const clock = (iso, timeZone = shownZone) =>
  `${new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZone }).format(new Date(iso))} ${timeZone}`;
console.log(`
joinwindow demo: the service is at ${base} (embedded database in ${shownDataDir}, local video provider, API docs at ${base}/docs)
`);
for (const [index, { label, appointment }] of appointments.entries()) {
  const link = (userId) => `${base}/join/${encodeURIComponent(appointment.externalId)}#token=${devToken(userId)}`;
  console.log(`${index + 1}. ${appointment.externalId}: ${appointment.agent.name} with ${appointment.customer.name}, ${label}`);
  console.log(`   starts ${clock(appointment.startsAt)} (${clock(appointment.startsAt, appointment.timeZone)}, the appointment's zone)`);
  console.log(`   the room opens for the agent at ${clock(appointment.join.agentOpensAt)}, for the customer at ${clock(appointment.join.customerOpensAt)}`);
  console.log(`   agent:    ${link(appointment.agent.id)}`);
  console.log(`   customer: ${link(appointment.customer.id)}\n`);
}
console.log(`Try it: open the customer's link of appointment 1 and join: the page says it is waiting for the
host (the service answers 425 waiting_for_host until the agent holds a token). Open the agent's link of
appointment 1 in another window and join: the customer's page joins by itself within seconds.
Then join appointment 2 as its agent, and open its customer's link: it counts down, and once the room
opens, joining asks whether to leave appointment 1.
The links carry development sign-in tokens (valid ${TOKEN_HOURS} h) in the URL fragment, which the page
reads and removes from the address bar. Ctrl-C stops the service.
`);

process.exitCode = await exited;
