// Outbound HTTP for the remote video providers (API.md §8): per-attempt
// timeouts, at most 3 attempts for transient failures, backoff with jitter,
// Retry-After, and the caller's answer-time budget above all of it.
import { performance } from "node:perf_hooks";
import axios, { type AxiosError, type AxiosResponse } from "axios";
import axiosRetry from "axios-retry";
import {
  type CallBudget,
  type ProviderCall,
  type ProviderCallObserver,
  ProviderUnavailableError,
} from "./video-provider.js";

export interface ProviderHttpOptions {
  provider: ProviderCall["provider"];
  /** PROVIDER_TIMEOUT_MS: the longest one attempt may take. */
  timeoutMs: number;
  observe?: ProviderCallObserver;
  /** Attempts per call, the first included (API.md §8: 3). */
  maxAttempts?: number;
  /** First backoff step; it doubles per retry, ±20 % jitter. */
  baseDelayMs?: number;
  /** A retry is only made if at least this much budget is left once its wait is over. */
  minAttemptMs?: number;
}

export interface ProviderRequest {
  method: "GET" | "POST" | "DELETE";
  url: string;
  headers?: Record<string, string>;
  /** Already serialised (JSON text or a form-urlencoded string), so a retry resends it as is. */
  body?: string;
}

export interface ProviderHttp {
  /**
   * Sends `request` within `budget` and returns `parse(answer JSON)`; an
   * empty answer (204 No Content) is parsed as undefined; a non-JSON answer
   * or `parse` returning undefined is an "invalid answer".
   * Every failure is a ProviderHttpError (a ProviderUnavailableError).
   */
  request<T>(
    request: ProviderRequest,
    budget: CallBudget,
    operation: string,
    parse: (body: unknown) => T | undefined,
  ): Promise<T>;
}

/** A failed provider call. The message is built here and never includes headers, bodies or secrets. */
export class ProviderHttpError extends ProviderUnavailableError {
  constructor(
    message: string,
    /** The ProviderCall outcome of the last attempt ("http_503", "timeout", …). */
    readonly outcome: string,
    /** The HTTP status of the last answer, when there was one. */
    readonly status?: number,
    retryAfterSeconds?: number,
  ) {
    super(message, retryAfterSeconds);
  }
}

/** Milliseconds a Retry-After header (delay-seconds or HTTP-date) asks for; undefined when absent or unreadable. */
export function parseRetryAfter(value: unknown, nowMs = Date.now()): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) && value >= 0 ? value * 1000 : undefined;
  if (typeof value !== "string") return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // An HTTP-date names its day and month; Date.parse alone would take "-5" for a year.
  if (!/[a-z]/i.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

const TIMEOUT_CODES = new Set(["ECONNABORTED", "ETIMEDOUT"]);
const MAX_ANSWER_BYTES = 1024 * 1024;

/** Per-call state, shared by the interceptors of every attempt of one call. */
class Call {
  attempts = 0;
  inAttempt = false;
  attemptStartedAt = 0;
  attemptTimeoutMs = 0;
  /** The attempt's timeout was cut to what was left of the budget. */
  attemptCutByBudget = false;
  nextDelayMs = 0;
  /** A retry wait that was not made because it would not fit in the budget. */
  skippedWaitMs: number | undefined;
  constructor(
    readonly operation: string,
    readonly deadline: number,
    readonly budgetMs: number,
    readonly singleAttempt: boolean,
  ) {}
}

export function createProviderHttp(options: ProviderHttpOptions): ProviderHttp {
  const { provider, timeoutMs, observe } = options;
  const maxAttempts = options.maxAttempts ?? 3;
  const baseDelayMs = options.baseDelayMs ?? 200;
  const minAttemptMs = options.minAttemptMs ?? 100;
  // Keyed by the call's AbortSignal: axios clones plain config objects between retries, but keeps the signal.
  const calls = new WeakMap<object, Call>();
  const callOf = (config: { signal?: object } | undefined) => (config?.signal ? calls.get(config.signal) : undefined);

  const emit = (operation: string, outcome: string, durationMs: number) => {
    try {
      observe?.({ provider, operation, outcome, durationMs: Math.round(durationMs) });
    } catch {
      // Metrics must never break a provider call.
    }
  };

  const instance = axios.create({
    // Parsed by us: axios would silently hand a malformed JSON answer over as a string.
    responseType: "text",
    transformResponse: [(data: unknown) => data],
    // With redirects off axios adds a wall-clock timer up to the answer's headers; otherwise its
    // timeout is only socket inactivity. A body that trickles in is still cut by the deadline.
    maxRedirects: 0,
    maxContentLength: MAX_ANSWER_BYTES,
    maxBodyLength: MAX_ANSWER_BYTES,
    headers: { "User-Agent": "joinwindow" },
  });

  // Registered before axios-retry's, so it sees each attempt once, before any retry is decided.
  instance.interceptors.response.use(undefined, (error: unknown) => {
    const call = callOf((error as AxiosError | undefined)?.config);
    if (call?.inAttempt) {
      call.inAttempt = false;
      emit(call.operation, outcomeOf(error, call), performance.now() - call.attemptStartedAt);
    }
    return Promise.reject(error);
  });

  axiosRetry(instance, {
    retries: maxAttempts - 1,
    // Each attempt's timeout is set by the request interceptor below.
    shouldResetTimeout: true,
    retryCondition: (error) => {
      const call = callOf(error.config);
      if (!call || call.singleAttempt || error.config?.signal?.aborted || !isTransient(error)) return false;
      const status = error.response?.status;
      const retryAfterMs =
        status === 429 || status === 503 ? parseRetryAfter(error.response?.headers["retry-after"]) : undefined;
      const waitMs = retryAfterMs ?? Math.round(baseDelayMs * 2 ** (call.attempts - 1) * (0.8 + Math.random() * 0.4));
      if (Date.now() + waitMs + minAttemptMs > call.deadline) {
        call.skippedWaitMs = waitMs;
        return false;
      }
      call.nextDelayMs = waitMs;
      return true;
    },
    retryDelay: (_retry, error) => callOf(error.config)?.nextDelayMs ?? 0,
  });

  // Registered last, so it runs first on every attempt, retries included.
  instance.interceptors.request.use((config) => {
    const call = callOf(config);
    // An aborted call (deadline passed during a retry wait) is refused by axios before sending: not an attempt.
    if (!call || config.signal?.aborted) return config;
    const remaining = call.deadline - Date.now();
    call.attempts += 1;
    call.inAttempt = true;
    call.attemptStartedAt = performance.now();
    call.attemptTimeoutMs = Math.max(1, Math.min(timeoutMs, remaining));
    call.attemptCutByBudget = remaining < timeoutMs;
    config.timeout = call.attemptTimeoutMs;
    return config;
  });

  return {
    async request<T>(
      request: ProviderRequest,
      budget: CallBudget,
      operation: string,
      parse: (body: unknown) => T | undefined,
    ): Promise<T> {
      const label = `${provider} ${operation.replace(/_/g, " ")}`;
      const startedAt = Date.now();
      const budgetMs = budget.deadline - startedAt;
      if (budgetMs < minAttemptMs) {
        emit(operation, "budget_exhausted", 0);
        throw new ProviderHttpError(`${label}: no time left in the budget`, "budget_exhausted");
      }
      // The deadline abandons an attempt in flight and a pending retry wait alike.
      const controller = new AbortController();
      const call = new Call(operation, budget.deadline, budgetMs, budget.singleAttempt === true);
      calls.set(controller.signal, call);
      const timer = setTimeout(() => controller.abort(), budgetMs);
      let response: AxiosResponse<string>;
      try {
        response = await instance.request<string>({
          method: request.method,
          url: request.url,
          headers: request.headers,
          data: request.body,
          signal: controller.signal,
        });
      } catch (error) {
        throw toProviderError(error, call, label);
      } finally {
        clearTimeout(timer);
      }
      const durationMs = performance.now() - call.attemptStartedAt;
      let value: T | undefined;
      try {
        value = parse(response.data === "" ? undefined : JSON.parse(response.data));
      } catch {
        value = undefined;
      }
      if (value === undefined) {
        emit(operation, "invalid_answer", durationMs);
        throw new ProviderHttpError(`${label}: invalid answer`, "invalid_answer", response.status);
      }
      emit(operation, "ok", durationMs);
      return value;
    },
  };
}

function isTransient(error: AxiosError): boolean {
  const status = error.response?.status;
  if (status !== undefined) return status === 429 || status >= 500;
  if (error.code === "ERR_CANCELED") return false;
  return TIMEOUT_CODES.has(error.code ?? "") || axiosRetry.isNetworkError(error);
}

function outcomeOf(error: unknown, call: Call): string {
  if (axios.isAxiosError(error)) {
    if (error.response) return `http_${error.response.status}`;
    if (error.code === "ERR_CANCELED") return "budget_exhausted";
    if (TIMEOUT_CODES.has(error.code ?? "")) return call.attemptCutByBudget ? "budget_exhausted" : "timeout";
  }
  return "network";
}

// Own messages only: an AxiosError carries the request config, Authorization header included.
function toProviderError(error: unknown, call: Call, label: string): ProviderUnavailableError {
  if (error instanceof ProviderUnavailableError) return error;
  const after = call.attempts > 1 ? ` after ${call.attempts} attempts` : "";
  const outcome = outcomeOf(error, call);
  if (axios.isAxiosError(error) && error.response) {
    const status = error.response.status;
    const retryAfterMs =
      status === 429 || status === 503 ? parseRetryAfter(error.response.headers["retry-after"]) : undefined;
    const retryAfterSeconds = retryAfterMs === undefined ? undefined : Math.ceil(retryAfterMs / 1000);
    const skipped =
      call.skippedWaitMs === undefined
        ? ""
        : `; not retried: a ${call.skippedWaitMs} ms wait does not fit in the ${call.budgetMs} ms budget`;
    return new ProviderHttpError(`${label}: HTTP ${status}${after}${skipped}`, outcome, status, retryAfterSeconds);
  }
  switch (outcome) {
    case "budget_exhausted":
      return new ProviderHttpError(`${label}: no answer within the ${call.budgetMs} ms budget${after}`, outcome);
    case "timeout":
      return new ProviderHttpError(`${label}: timed out after ${call.attemptTimeoutMs} ms${after}`, outcome);
    default: {
      const code = axios.isAxiosError(error) && /^[A-Z0-9_]+$/.test(error.code ?? "") ? ` (${error.code})` : "";
      return new ProviderHttpError(`${label}: network error${code}${after}`, outcome);
    }
  }
}
