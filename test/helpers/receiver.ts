// A subscriber of lifecycle events (API.md §9), as a receiver implements one:
// a real HTTP server on 127.0.0.1 that verifies every delivery with the
// `standardwebhooks` library and the subscription's secret, records it, and
// answers 2xx unless switched to a fault (5xx, a hang, or being down).
import { Webhook } from "standardwebhooks";
import { type FakeServer, type RecordedRequest, RouteFaults, applyFault, sendJson, startFakeServer } from "./fake-server.js";

export interface ReceivedEvent {
  webhookId: string;
  type: string;
  timestamp: string;
  data: Record<string, unknown> & { appointmentId: string; sequence: number; at: string };
  /** The signatures of the webhook-signature header (one, or two during a rotation). */
  signatures: string[];
  /** Verified with the receiver's secret(s). */
  verified: boolean;
  request: RecordedRequest;
}

export interface Receiver {
  url: string;
  /** Every request that arrived (also those answered with a fault). */
  requests: RecordedRequest[];
  faults: RouteFaults;
  /** Secrets to verify with; a delivery is `verified` when one of them accepts it. */
  secrets: string[];
  /** Deliveries answered 2xx, in arrival order. */
  received: ReceivedEvent[];
  /** Deliveries answered 2xx concerning one appointment. */
  of(appointmentId: string): ReceivedEvent[];
  /** Resolves once `predicate` holds of the received events (polling every 20 ms), or rejects after `timeoutMs`. */
  waitFor(predicate: (events: ReceivedEvent[]) => boolean, timeoutMs?: number): Promise<ReceivedEvent[]>;
  close(): Promise<void>;
}

export function parseDelivery(request: RecordedRequest, secrets: readonly string[]): ReceivedEvent {
  const headers = {
    "webhook-id": String(request.headers["webhook-id"] ?? ""),
    "webhook-timestamp": String(request.headers["webhook-timestamp"] ?? ""),
    "webhook-signature": String(request.headers["webhook-signature"] ?? ""),
  };
  const verified = secrets.some((secret) => {
    try {
      new Webhook(secret).verify(request.body, headers);
      return true;
    } catch {
      return false;
    }
  });
  const body = JSON.parse(request.body) as { type: string; timestamp: string; data: ReceivedEvent["data"] };
  return {
    webhookId: headers["webhook-id"],
    type: body.type,
    timestamp: body.timestamp,
    data: body.data,
    signatures: headers["webhook-signature"].split(" "),
    verified,
    request,
  };
}

export async function startReceiver(secrets: string[] = []): Promise<Receiver> {
  const faults = new RouteFaults();
  const received: ReceivedEvent[] = [];
  const receiver: Receiver = {
    url: "",
    requests: [],
    faults,
    secrets,
    received,
    of: (appointmentId) => received.filter((event) => event.data.appointmentId === appointmentId),
    async waitFor(predicate, timeoutMs = 10_000) {
      const giveUpAt = Date.now() + timeoutMs;
      while (!predicate(received)) {
        if (Date.now() > giveUpAt) {
          throw new Error(`the receiver did not get what was expected within ${timeoutMs} ms; it got: ${JSON.stringify(received.map((e) => [e.type, e.data.appointmentId]))}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return received;
    },
    close: async () => {},
  };
  const server: FakeServer = await startFakeServer(async (request, response) => {
    if ((await applyFault(faults.take(), response, (status) => ({ error: status }))) === "answered") return;
    received.push(parseDelivery(request, receiver.secrets));
    sendJson(response, 200, { ok: true });
  });
  receiver.url = server.url;
  receiver.requests = server.requests;
  receiver.close = () => server.close();
  return receiver;
}
