// The three scenarios as autocannon request definitions. Each request is
// built in setupRequest (a random live token, a random participant with that
// user's JWT, a new signed webhook), so every request is different.
import { createHmac, randomBytes } from "node:crypto";
import autocannon from "autocannon";
import { createSigner } from "fast-jwt";

export const CONNECTIONS = 32;

export function makeSecrets() {
  return {
    webhookSecret: `whsec_${randomBytes(32).toString("base64")}`,
    authJwtSecret: randomBytes(36).toString("base64url"),
    keyEncryptionSecret: randomBytes(36).toString("base64url"),
  };
}

/** Standard Webhooks: v1,base64(HMAC-SHA256(base64-decoded secret, "id.timestamp.body")). */
export function webhookSigner(secret) {
  const key = Buffer.from(secret.slice("whsec_".length), "base64");
  return (id, timestamp, body) => `v1,${createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64")}`;
}

/** Identity-provider JWTs (HS256 with AUTH_JWT_SECRET), one per user, made once and reused. */
export class Jwts {
  constructor(secret) {
    this.sign = createSigner({ key: secret, algorithm: "HS256", expiresIn: 6 * 3600_000 });
    this.cache = new Map();
  }
  for(sub) {
    let jwt = this.cache.get(sub);
    if (!jwt) {
      jwt = this.sign({ sub });
      // Bounded: the growth phase has two million users.
      if (this.cache.size < 200_000) this.cache.set(sub, jwt);
    }
    return jwt;
  }
  gateway() {
    this.gatewayJwt ??= this.sign({ sub: "gateway-bench", scope: "tokens:introspect" });
    return this.gatewayJwt;
  }
}

/**
 * Shared state of one run: which appointments' preloaded tokens may have
 * been replaced by a join (their holder made a join request), so that
 * introspection keeps asking about live tokens only.
 */
export class Picker {
  constructor(dataset) {
    this.dataset = dataset;
    this.touched = new Set();
  }
  randomIndex() {
    return Math.floor(Math.random() * this.dataset.size);
  }
  /** A random appointment whose preloaded token is still live. */
  liveTokenIndex() {
    for (let attempt = 0; attempt < 50; attempt++) {
      const i = this.randomIndex();
      if (!this.touched.has(i)) return i;
    }
    return this.randomIndex();
  }
  /** A random participant of a random open appointment. */
  participant() {
    const i = this.randomIndex();
    const asAgent = Math.random() < 0.5;
    if (asAgent === this.dataset.tokenHolderIsAgent(i)) this.touched.add(i);
    return { i, userId: asAgent ? this.dataset.agentId(i) : this.dataset.customerId(i) };
  }
}

let webhookCounter = 0;
const runTag = randomBytes(4).toString("hex");

/** autocannon `requests` for one scenario. */
export function requestsFor(scenario, { dataset, picker, jwts, secrets }) {
  switch (scenario) {
    case "introspect": {
      const authorization = `Bearer ${jwts.gateway()}`;
      return [
        {
          method: "POST",
          path: "/v1/tokens/introspect",
          setupRequest(request) {
            request.headers = { "content-type": "application/json", authorization };
            request.body = JSON.stringify({ token: dataset.token(picker.liveTokenIndex()) });
            return request;
          },
        },
      ];
    }
    case "join":
      return [
        {
          method: "POST",
          setupRequest(request) {
            const { i, userId } = picker.participant();
            request.path = `/v1/appointments/${dataset.externalId(i)}/join-token`;
            request.headers = { "content-type": "application/json", authorization: `Bearer ${jwts.for(userId)}` };
            request.body = "{}";
            return request;
          },
        },
      ];
    case "webhook": {
      const sign = webhookSigner(secrets.webhookSecret);
      return [
        {
          method: "POST",
          path: "/v1/webhooks/appointments",
          setupRequest(request) {
            const n = ++webhookCounter;
            const body = webhookBody(`wh-${runTag}-${n}`);
            const id = `msg_${runTag}_${n}`;
            const timestamp = String(Math.floor(Date.now() / 1000));
            request.headers = {
              "content-type": "application/json",
              "webhook-id": id,
              "webhook-timestamp": timestamp,
              "webhook-signature": sign(id, timestamp, body),
            };
            request.body = body;
            return request;
          },
        },
      ];
    }
    default:
      throw new Error(`unknown scenario ${scenario}`);
  }
}

/** A new appointment tomorrow (its own agent and customer, so it never collides with the join users). */
function webhookBody(externalId) {
  const start = Math.floor(Date.now() / 60_000) * 60_000 + 24 * 3600_000;
  return JSON.stringify({
    type: "appointment.scheduled",
    data: {
      externalId,
      revision: 1,
      startsAt: new Date(start).toISOString(),
      endsAt: new Date(start + 30 * 60_000).toISOString(),
      agent: { id: `wa-${externalId}`, name: "Dr. Bench" },
      customer: { id: `wc-${externalId}`, name: "Pat Bench" },
    },
  });
}

export const EXPECTED_STATUS = { introspect: 200, join: 201, webhook: 200 };

/** One leg: `durationS` seconds of 32 connections against `url`. */
export async function runLeg(url, scenario, context, durationS) {
  const result = await autocannon({
    url,
    connections: CONNECTIONS,
    duration: durationS,
    // autocannon stops at the first sample after `duration`: every 100 ms, so a leg lasts what it says (1 s by default).
    sampleInt: 100,
    timeout: 15,
    requests: requestsFor(scenario, context),
  });
  const ok = result["2xx"];
  const statusCodes = Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([code, s]) => [code, s.count]));
  return {
    rps: ok / result.duration,
    totalRps: result.requests.total / result.duration,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    maxMs: result.latency.max,
    errors: result.non2xx + result.errors + result.timeouts,
    socketErrors: result.errors,
    timeouts: result.timeouts,
    statusCodes,
    requests: result.requests.total,
    durationS: result.duration,
  };
}

/**
 * One request of each scenario, checked for the expected status and shape,
 * before anything is measured: a misconfigured bench must fail loudly, not
 * measure 401s.
 */
export async function sanityCheck(url, scenario, context) {
  const [request] = requestsFor(scenario, context);
  const built = request.setupRequest({ method: request.method, path: request.path, headers: {}, body: "" });
  const response = await fetch(`${url}${built.path}`, { method: built.method, headers: built.headers, body: built.body });
  const text = await response.text();
  const fail = (why) => {
    throw new Error(`sanity check of ${scenario} against ${url} failed (${why}): HTTP ${response.status} ${text.slice(0, 500)}`);
  };
  if (response.status !== EXPECTED_STATUS[scenario]) fail(`expected ${EXPECTED_STATUS[scenario]}`);
  const body = JSON.parse(text);
  if (scenario === "introspect" && body.active !== true) fail("token not active");
  if (scenario === "join" && !(typeof body.token === "string" && body.token.split(".").length === 3)) fail("no token");
  if (scenario === "webhook" && body.applied !== true) fail("not applied");
  return body;
}
