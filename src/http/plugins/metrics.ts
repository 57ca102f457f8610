import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export interface DomainMetrics {
  webhooks: Counter<"outcome">;
  tokensIssued: Counter<"role">;
  refusals: Counter<"code">;
  introspections: Counter<"result">;
  providerCalls: Counter<"provider" | "operation" | "outcome">;
  providerCallSeconds: Histogram<"provider" | "operation">;
  eventsEmitted: Counter<"type">;
  deliveryAttempts: Counter<"outcome">;
  deliveriesSettled: Counter<"outcome">;
  deliveryLatencySeconds: Histogram;
  deliveryAttemptSeconds: Histogram;
  presenceReports: Counter<"via" | "result">;
  ejections: Counter<"outcome">;
  /** Reports the ejections waiting for an attempt, read at scrape time. */
  watchEjections(pending: () => Promise<number>): void;
  /** Reports the number of pending provider sessions, read at scrape time. */
  watchPendingSessions(count: () => Promise<number>): void;
  /** Reports the outbox backlog (the oldest event not yet delivered, and the deliveries pending), read at scrape time. */
  watchOutbox(backlog: () => Promise<{ oldest: Date | null; pending: number }>, now: () => Date): void;
}

declare module "fastify" {
  interface FastifyInstance {
    metrics: Registry;
    domainMetrics: DomainMetrics;
  }
}

/**
 * Prometheus metrics with prom-client: request counts and durations per
 * route template (never the raw URL, whose ids would explode the label set)
 * and status code, plus the process's default metrics. One registry per app
 * instance, so tests can build several apps in one process.
 */
export default fp(
  async function metrics(app: FastifyInstance) {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    const labelNames = ["method", "route", "status_code"] as const;
    const requests = new Counter({
      name: "http_requests_total",
      help: "HTTP requests answered, by route template and status code",
      labelNames,
      registers: [registry],
    });
    const duration = new Histogram({
      name: "http_request_duration_seconds",
      help: "Time to answer HTTP requests, by route template and status code",
      labelNames,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15],
      registers: [registry],
    });

    app.decorate("metrics", registry);
    app.decorate("domainMetrics", {
      webhooks: new Counter({
        name: "joinwindow_webhooks_total",
        help: "Scheduling webhooks by outcome (applied, ignored, tombstone, replayed)",
        labelNames: ["outcome"],
        registers: [registry],
      }),
      tokensIssued: new Counter({
        name: "joinwindow_tokens_issued_total",
        help: "Join tokens issued, by role",
        labelNames: ["role"],
        registers: [registry],
      }),
      refusals: new Counter({
        name: "joinwindow_refusals_total",
        help: "Requests answered with a problem, by its code",
        labelNames: ["code"],
        registers: [registry],
      }),
      introspections: new Counter({
        name: "joinwindow_introspections_total",
        help: "Token introspections by result (active or the inactive reason)",
        labelNames: ["result"],
        registers: [registry],
      }),
      providerCalls: new Counter({
        name: "joinwindow_provider_calls_total",
        help: "Calls to the video provider (one per attempt), by operation and outcome",
        labelNames: ["provider", "operation", "outcome"],
        registers: [registry],
      }),
      providerCallSeconds: new Histogram({
        name: "joinwindow_provider_call_duration_seconds",
        help: "Latency of calls to the video provider (one per attempt)",
        labelNames: ["provider", "operation"],
        buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
        registers: [registry],
      }),
      eventsEmitted: new Counter({
        name: "joinwindow_events_emitted_total",
        help: "Lifecycle events emitted (taken from the outbox, once each across replicas), by type",
        labelNames: ["type"],
        registers: [registry],
      }),
      deliveryAttempts: new Counter({
        name: "joinwindow_subscription_delivery_attempts_total",
        help: "Attempts to deliver an event to a subscriber, by outcome (delivered, http_error, timeout, network)",
        labelNames: ["outcome"],
        registers: [registry],
      }),
      deliveriesSettled: new Counter({
        name: "joinwindow_subscription_deliveries_total",
        help: "Deliveries settled for good: delivered, or failed after the last retry",
        labelNames: ["outcome"],
        registers: [registry],
      }),
      deliveryLatencySeconds: new Histogram({
        name: "joinwindow_subscription_delivery_latency_seconds",
        help: "From an event's writing to its successful delivery (retries included)",
        buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 36000],
        registers: [registry],
      }),
      deliveryAttemptSeconds: new Histogram({
        name: "joinwindow_subscription_attempt_duration_seconds",
        help: "Time a subscriber took to answer one delivery attempt",
        buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
        registers: [registry],
      }),
      presenceReports: new Counter({
        name: "joinwindow_presence_reports_total",
        help: "Presence reports (API.md §10) by source (gateway or provider) and result (taken, ignored, rejected, token_inactive)",
        labelNames: ["via", "result"],
        registers: [registry],
      }),
      ejections: new Counter({
        name: "joinwindow_ejections_total",
        help: "Attempts to remove a participant from the provider's room, by outcome (removed, not_present, rejoined, retry, failed)",
        labelNames: ["outcome"],
        registers: [registry],
      }),
      watchEjections(pending) {
        new Gauge({
          name: "joinwindow_ejections_pending",
          help: "Removals from providers' rooms waiting for their next attempt",
          registers: [registry],
          async collect() {
            try {
              this.set(await pending());
            } catch {
              // the next scrape tries again
            }
          },
        });
      },
      watchOutbox(backlog, now) {
        let last: { oldest: Date | null; pending: number } | undefined;
        // One query per scrape for both gauges: the first to be collected reads, the second reuses it.
        let reading: Promise<void> | undefined;
        const read = () => {
          reading ??= backlog()
            .then((value) => {
              last = value;
            })
            .catch(() => {
              // While the database is down the gauges keep their last values.
            })
            .finally(() => setImmediate(() => (reading = undefined)));
          return reading;
        };
        new Gauge({
          name: "joinwindow_outbox_oldest_undelivered_seconds",
          help: "Age of the oldest event not yet delivered to every subscriber that wants it (0 when none is waiting)",
          registers: [registry],
          async collect() {
            await read();
            if (last) this.set(last.oldest ? Math.max(0, (now().getTime() - last.oldest.getTime()) / 1000) : 0);
          },
        });
        new Gauge({
          name: "joinwindow_subscription_deliveries_pending",
          help: "Deliveries waiting for their next attempt",
          registers: [registry],
          async collect() {
            await read();
            if (last) this.set(last.pending);
          },
        });
      },
      watchPendingSessions(count) {
        new Gauge({
          name: "joinwindow_pending_sessions",
          help: "Appointments whose provider session is still to be created",
          registers: [registry],
          async collect() {
            // While the database is down the gauge keeps its last value: the rest of the scrape still answers.
            try {
              this.set(await count());
            } catch {
              // the next scrape tries again
            }
          },
        });
      },
    });
    app.addHook("onResponse", (request, reply, done) => {
      const labels = {
        method: request.method,
        route: request.routeOptions.url ?? "unmatched",
        status_code: String(reply.statusCode),
      };
      requests.inc(labels);
      duration.observe(labels, reply.elapsedTime / 1000);
      done();
    });
  },
  { name: "metrics" },
);
