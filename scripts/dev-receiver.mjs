// A subscriber of lifecycle events for trying them by hand (README, "Lifecycle
// events out"): it listens on loopback, verifies each delivery with the
// subscription's secret exactly as a receiver should (the `standardwebhooks`
// library: signature, and a timestamp within 5 minutes), prints it, and
// answers 204 (or 401 when the signature is wrong):
//   npm run dev-receiver -- --secret whsec_… [--port 4000]
// Without --secret it still prints what arrives, marked "not verified".
import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { Webhook } from "standardwebhooks";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "4000" },
    secret: { type: "string" },
  },
});

const webhook = values.secret ? new Webhook(values.secret) : undefined;

const server = createServer((request, response) => {
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    let verified = "not verified (no --secret)";
    if (webhook) {
      try {
        webhook.verify(body, request.headers);
        verified = "signature verified";
      } catch (error) {
        console.log(`${request.headers["webhook-id"] ?? "?"}  REFUSED: ${error.message}`);
        response.writeHead(401).end();
        return;
      }
    }
    let event;
    try {
      event = JSON.parse(body);
    } catch {
      response.writeHead(400).end();
      return;
    }
    const { appointmentId, sequence, at, ...members } = event.data ?? {};
    console.log(`${event.type}  ${appointmentId}  #${sequence}  at ${at}  (${verified}, ${request.headers["webhook-id"]})`);
    const shown = { ...members };
    if (shown.appointment) shown.appointment = `{…${shown.appointment.externalId}}`;
    if (Object.keys(shown).length > 0) console.log(`    ${JSON.stringify(shown)}`);
    response.writeHead(204).end();
  });
});

server.listen(Number(values.port), "127.0.0.1", () => {
  console.log(`dev-receiver: listening on http://127.0.0.1:${values.port}/ (Ctrl-C stops it)`);
});
