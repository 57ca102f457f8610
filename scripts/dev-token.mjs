// Prints a development user JWT (HS256) for trying the API by hand:
//   npm run dev-token -- --sub agent-7
//   npm run dev-token -- --sub ops-1 --scope "appointments:read tokens:introspect tokens:revoke"
// The secret is AUTH_JWT_SECRET, or the development secret `npm start` keeps in DATA_DIR.
import { readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { createSigner } from "fast-jwt";

const { values } = parseArgs({
  options: {
    sub: { type: "string" },
    scope: { type: "string" },
    minutes: { type: "string", default: "60" },
    iss: { type: "string" },
    aud: { type: "string" },
  },
});
if (!values.sub) {
  console.error('usage: npm run dev-token -- --sub <user id> [--scope "<scopes>"] [--minutes 60] [--iss …] [--aud …]');
  process.exit(2);
}

function secret() {
  if (process.env.AUTH_JWT_SECRET) return process.env.AUTH_JWT_SECRET;
  const file = path.resolve(process.env.DATA_DIR || "./.data", "dev-secrets.json");
  try {
    return JSON.parse(readFileSync(file, "utf8")).authJwtSecret;
  } catch {
    console.error(`no AUTH_JWT_SECRET and no ${file}: run \`npm start\` once first`);
    process.exit(1);
  }
}

const now = Math.floor(Date.now() / 1000);
const iss = values.iss ?? process.env.AUTH_JWT_ISSUER;
const aud = values.aud ?? process.env.AUTH_JWT_AUDIENCE;
const sign = createSigner({ algorithm: "HS256", key: secret() });
console.log(
  sign({
    sub: values.sub,
    iat: now,
    exp: now + Number(values.minutes) * 60,
    ...(values.scope ? { scope: values.scope } : {}),
    ...(iss ? { iss } : {}),
    ...(aud ? { aud } : {}),
  }),
);
