import { isDatabaseUnavailable } from "../db/errors.js";

export interface BackgroundLoopHandlers {
  /** Passes failing because the database is unreachable, and succeeding again (logged once each way). */
  databaseOutage?: { failed(error: unknown): void; succeeded(): void } | undefined;
  /** Any other failure of a pass. */
  onError?: ((error: unknown) => void) | undefined;
}

/**
 * Runs `pass` every `intervalMs`, never two at once, on every replica (what
 * each pass claims is the database's business: FOR UPDATE SKIP LOCKED and
 * leases). Returns the stop function, which waits for a pass in progress.
 */
export function runEvery(intervalMs: number, pass: () => Promise<unknown>, handlers: BackgroundLoopHandlers): () => Promise<void> {
  let running: Promise<unknown> | undefined;
  const timer = setInterval(() => {
    if (running) return;
    running = pass()
      .then(
        () => handlers.databaseOutage?.succeeded(),
        (error: unknown) => (isDatabaseUnavailable(error) ? handlers.databaseOutage?.failed(error) : handlers.onError?.(error)),
      )
      .finally(() => {
        running = undefined;
      });
  }, intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
