// Signs a scheduling webhook the way a scheduler does (Standard Webhooks) and
// sends it, for trying the API by hand:
//   npm run dev-webhook -- event.json            (or the JSON on standard input)
//   npm run dev-webhook -- event.json --url http://localhost:3000 --id msg_1   (default: JOINWINDOW_URL, or localhost on PORT)
// The secret is the first of WEBHOOK_SECRET, or the development secret `npm start` keeps in DATA_DIR.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { Webhook } from "standardwebhooks";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: "string", default: process.env.JOINWINDOW_URL || `http://localhost:${process.env.PORT || 3000}` },
    id: { type: "string" },
  },
});

function secret() {
  if (process.env.WEBHOOK_SECRET) return process.env.WEBHOOK_SECRET.split(/\s+/)[0];
  const file = path.resolve(process.env.DATA_DIR || "./.data", "dev-secrets.json");
  try {
    return JSON.parse(readFileSync(file, "utf8")).webhookSecret;
  } catch {
    console.error(`no WEBHOOK_SECRET and no ${file}: run \`npm start\` once first`);
    process.exit(1);
  }
}

const body = readFileSync(positionals[0] ?? 0, "utf8");
const id = values.id ?? `msg_${randomUUID()}`;
const timestamp = new Date();
const response = await fetch(`${values.url}/v1/webhooks/appointments`, {
  method: "POST",
  headers: {
    "content-type": "application/json",
    "webhook-id": id,
    "webhook-timestamp": String(Math.floor(timestamp.getTime() / 1000)),
    "webhook-signature": new Webhook(secret()).sign(id, timestamp, body),
  },
  body,
});
console.log(`HTTP ${response.status}`);
console.log(JSON.stringify(await response.json(), null, 2));
