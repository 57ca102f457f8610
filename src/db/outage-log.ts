import type { FastifyBaseLogger } from "fastify";

/**
 * Background work (the session reconciler) meets a database outage on every
 * pass. One warn line when the outage begins and one when it ends say all
 * there is to say, without a stack: an error with a stack every few seconds
 * would bury the rest of the log while the database is down.
 */
export class DatabaseOutageLog {
  #since: number | null = null;

  constructor(
    private readonly log: Pick<FastifyBaseLogger, "warn">,
    private readonly now: () => number = Date.now,
  ) {}

  failed(error: unknown): void {
    if (this.#since !== null) return;
    this.#since = this.now();
    const reason = error instanceof Error ? error.message : String(error);
    this.log.warn({ reason: reason.slice(0, 200) }, "database unreachable: background work waits until it is back");
  }

  succeeded(): void {
    if (this.#since === null) return;
    this.log.warn({ downForMs: this.now() - this.#since }, "database reachable again: background work resumed");
    this.#since = null;
  }
}
