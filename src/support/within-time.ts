import { setTimeout as sleep } from "node:timers/promises";

/**
 * `work`, or what `onTimeout` gives (or throws) if `work` has not settled
 * within `ms`: the one place a wait is bounded by a timer, so that no caller
 * races a setTimeout of its own. The timer is cancelled as soon as either
 * side settles; `work` itself is not (the caller owns what it started).
 */
export async function withinTime<T>(work: Promise<T>, ms: number, onTimeout: () => T): Promise<T> {
  const timer = new AbortController();
  try {
    return await Promise.race([work, sleep(ms, undefined, { signal: timer.signal }).then(onTimeout)]);
  } finally {
    timer.abort();
  }
}
