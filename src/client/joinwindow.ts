/**
 * joinwindow browser client: the join experience of API.md §2–§3 as a small
 * state machine, for agent desktops and patient portals.
 *
 * It reads the appointment, follows the server's clock (the `Date` header of
 * every answer), re-evaluates the join window on a timer, requests the join
 * token when asked and copes with every answer of API.md §3 (425 too_early
 * waits for the opening time, 425 waiting_for_host asks again every
 * Retry-After until the host is in, 409 active_elsewhere offers to supersede,
 * 503 backs off, 410 / cancelled / blocked are final). The token is handed to
 * `onToken` and otherwise only ever held in memory for the duration of that
 * call: never logged, never stored, never put in a URL, never part of a state.
 *
 * One self-contained ES module with no dependencies, so that a portal can load
 * it from the service (`/client/joinwindow.js`) or bundle it from the repo. It
 * uses only what browsers and Node share (fetch, timers, atob, TextDecoder).
 */

export type Role = "moderator" | "participant";

/** The Appointment representation of API.md §1 (the fields this client reads). */
export interface Appointment {
  externalId: string;
  status: "scheduled" | "cancelled";
  startsAt: string;
  endsAt: string;
  timeZone: string | null;
  agent: { id: string; name: string | null };
  customer: { id: string; name: string | null };
  join: { agentOpensAt: string; customerOpensAt: string; closesAt: string };
  session: { provider: string; id: string | null; status: "pending" | "ready" | "failed" };
  accessBlocked: boolean;
}

/** The 201 answer of API.md §3: what a video SDK needs to connect. */
export interface JoinGrant {
  appointmentId: string;
  provider: string;
  applicationId: string | null;
  sessionId: string;
  token: string;
  tokenId: string;
  /** The room to open with the token (providers whose clients join by URL, e.g. Daily); null for the others. */
  roomUrl: string | null;
  role: Role;
  notBefore: string;
  expiresAt: string;
}

/** A grant without its token: safe to keep in a state and to show. */
export type JoinedSession = Omit<JoinGrant, "token">;

/** What a collision prompt can say about the other appointment, read with the caller's own JWT (its participant may). */
export interface OtherAppointment {
  externalId: string;
  /** Whom the caller meets there: its customer for the agent, its agent for the customer; null when unnamed. */
  counterpartName: string | null;
  startsAt: Date;
}

/** An RFC 9457 problem as the service sends it; status 0 for a network failure. */
export interface Problem {
  status: number;
  code: string;
  detail?: string;
}

/** Why the client is waiting before its next attempt. */
export type RetryReason = "too_early" | "provider_unavailable" | "rate_limited" | "not_ready" | "network_error";

/** What every state knows once the appointment was read (null before that). */
export interface Known {
  appointment: Appointment | null;
  role: Role | null;
  /** The caller's own opening time: agentOpensAt for the agent, customerOpensAt for the customer. */
  opensAt: Date | null;
  closesAt: Date | null;
}

export type JoinState = Known &
  (
    | { status: "loading" }
    | { status: "waiting"; msUntilOpen: number }
    | { status: "open" }
    | { status: "joining" }
    | { status: "retrying"; operation: "load" | "join"; reason: RetryReason; retryAt: Date; attempt: number }
    /** 425 waiting_for_host: inside the window, the host (the agent) is not in yet; asked again at `retryAt` until they are. */
    | { status: "waiting_for_host"; retryAt: Date }
    | { status: "joined"; session: JoinedSession }
    | { status: "collision"; otherAppointmentId: string; otherAppointment: OtherAppointment | null }
    | { status: "closed"; closedAt: Date | null }
    | { status: "cancelled" }
    | { status: "blocked" }
    | { status: "full" }
    | { status: "not_found" }
    | { status: "unauthenticated" }
    | { status: "error"; operation: "load" | "join"; problem: Problem }
  );

export type JoinStatus = JoinState["status"];

/** The part of a fetch Response this client reads, so that tests and other runtimes can supply their own. */
export interface ResponseLike {
  status: number;
  headers: { get(name: string): string | null };
  json(): Promise<unknown>;
}

export type FetchLike = (
  url: string,
  init: {
    method: "GET" | "POST";
    headers: Record<string, string>;
    body?: string;
    credentials: "omit";
    cache: "no-store";
  },
) => Promise<ResponseLike>;

export interface JoinClientOptions {
  /** The service's URL, e.g. "https://join.example.com"; "" for the page's own origin. */
  baseUrl: string;
  externalId: string;
  /** The signed-in user's JWT, asked for before every request (so it may be refreshed). */
  getToken: () => string | Promise<string>;
  /** Receives the join token: start the video SDK here. A rejection ends in the `error` state. */
  onToken: (grant: JoinGrant) => void | Promise<void>;
  /** The user id, when the JWT's `sub` cannot be read (an opaque token). */
  userId?: string;
  /** How often the appointment is read again while waiting or open (reschedules, cancellations). Default 60 s. */
  refreshIntervalMs?: number;
  /** Attempts of a join that meets 503 / 429 / network errors before giving up. Default 6. */
  maxJoinAttempts?: number;
  /** A 425 too_early whose Retry-After is at most this long is waited out automatically; a longer one goes back to `waiting`. Default 60 s. */
  maxAutoWaitMs?: number;
  now?: () => number;
  fetch?: FetchLike;
  setTimeout?: (callback: () => void, ms: number) => unknown;
  clearTimeout?: (handle: unknown) => void;
  /** Jitter for backoff, in [0, 1). */
  random?: () => number;
}

export interface JoinClient {
  readonly state: JoinState;
  /** Calls the listener with the current state, then with every new one; returns the unsubscribe function. */
  subscribe(listener: (state: JoinState) => void): () => void;
  /** Reads the appointment and starts following the window. */
  start(): void;
  /** Requests the join token (in `open`, or to try again after `error` / `full`). */
  join(): void;
  /** In `collision`: leave the other appointment (its token is revoked) and join this one. */
  confirmSupersede(): void;
  /** In `collision`: stay in the other appointment. */
  dismissCollision(): void;
  /** Reads the appointment again now (after `error`, or when the page becomes visible again). */
  refresh(): void;
  /** The server's clock as this client estimates it (epoch ms). */
  serverNow(): number;
  /** Stops every timer; later answers are ignored. */
  stop(): void;
}

const SECOND = 1000;
const MAX_TIMER_MS = 2_147_483_647;
const MAX_BACKOFF_MS = 30 * SECOND;
// API.md §3 promises at most 10 s between the waiting room's attempts; a larger Retry-After (a proxy's) is not obeyed.
const MAX_HOST_POLL_MS = 10 * SECOND;
const RETRYABLE: Record<number, RetryReason> = {
  429: "rate_limited",
  502: "provider_unavailable",
  503: "provider_unavailable",
  504: "provider_unavailable",
};

/**
 * The server's clock from the `Date` headers of its answers. A `Date` has
 * whole seconds and was written at some instant between sending the request
 * and receiving the answer, so each answer bounds the offset to an interval;
 * the intersection of those intervals narrows with every answer. When a new
 * interval does not meet the kept one, one of the clocks was changed: start
 * again from the new answer.
 */
export class ServerClock {
  private low = Number.NEGATIVE_INFINITY;
  private high = Number.POSITIVE_INFINITY;

  constructor(private readonly clientNow: () => number) {}

  observe(dateHeader: string | null, sentAt: number, receivedAt: number): void {
    const serverSecond = dateHeader ? Date.parse(dateHeader) : Number.NaN;
    if (Number.isNaN(serverSecond)) return;
    const low = serverSecond - receivedAt;
    const high = serverSecond + SECOND - sentAt;
    if (low > this.high || high < this.low) {
      this.low = low;
      this.high = high;
    } else {
      this.low = Math.max(this.low, low);
      this.high = Math.min(this.high, high);
    }
  }

  /** Server time minus client time, in ms (0 until an answer was seen). */
  get offsetMs(): number {
    return Number.isFinite(this.low) ? Math.round((this.low + this.high) / 2) : 0;
  }

  now(): number {
    return this.clientNow() + this.offsetMs;
  }
}

/** The `sub` of a JWT, read without verification (the service verifies it); null for anything else. */
export function subjectOf(jwt: string): string | null {
  const payload = jwt.split(".")[1];
  if (!payload) return null;
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
    const claims: unknown = JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))));
    const sub = (claims as { sub?: unknown } | null)?.sub;
    return typeof sub === "string" ? sub : null;
  } catch {
    return null;
  }
}

export function roleOf(appointment: Appointment, userId: string | null): Role | null {
  if (userId === null) return null;
  if (appointment.agent.id === userId) return "moderator";
  if (appointment.customer.id === userId) return "participant";
  return null;
}

/** The caller's opening time; for an unknown caller the later one, so that nothing looks open too early. */
export function opensAtFor(appointment: Appointment, role: Role | null): Date {
  const agent = Date.parse(appointment.join.agentOpensAt);
  const customer = Date.parse(appointment.join.customerOpensAt);
  if (role === "moderator") return new Date(agent);
  if (role === "participant") return new Date(customer);
  return new Date(Math.max(agent, customer));
}

/** The window as the appointment and the server's clock say, in API.md §3's order: cancelled, blocked, too early, closed. */
export function evaluateWindow(appointment: Appointment, role: Role | null, serverNow: number): JoinState {
  const opensAt = opensAtFor(appointment, role);
  const closesAt = new Date(Date.parse(appointment.join.closesAt));
  const known: Known = { appointment, role, opensAt, closesAt };
  if (appointment.status === "cancelled") return { ...known, status: "cancelled" };
  if (appointment.accessBlocked) return { ...known, status: "blocked" };
  if (serverNow < opensAt.getTime()) return { ...known, status: "waiting", msUntilOpen: opensAt.getTime() - serverNow };
  if (serverNow >= closesAt.getTime()) return { ...known, status: "closed", closedAt: closesAt };
  return { ...known, status: "open" };
}

/** Exponential backoff from 1 s, capped at 30 s, never shorter than what the server asked for. */
export function backoffMs(attempt: number, retryAfterMs: number, random: () => number): number {
  const base = Math.min(MAX_BACKOFF_MS, SECOND * 2 ** Math.max(0, attempt - 1));
  return Math.max(retryAfterMs, Math.round(base * (1 + 0.25 * random())));
}

/** Retry-After in seconds (what this service sends) or as an HTTP date, read on the server's clock. */
function retryAfterMs(header: string | null, serverNow: number): number {
  if (!header) return 0;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * SECOND;
  const at = Date.parse(header);
  return Number.isNaN(at) ? 0 : Math.max(0, at - serverNow);
}

/** Enough of the Appointment representation to work out the window (a proxy's page answered 200 is not one). */
function isAppointment(body: Record<string, unknown>): boolean {
  const join = body.join as Record<string, unknown> | undefined;
  const isInstant = (value: unknown) => typeof value === "string" && !Number.isNaN(Date.parse(value));
  return (
    typeof body.agent === "object" &&
    body.agent !== null &&
    typeof body.customer === "object" &&
    body.customer !== null &&
    typeof join === "object" &&
    join !== null &&
    isInstant(join.agentOpensAt) &&
    isInstant(join.customerOpensAt) &&
    isInstant(join.closesAt)
  );
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
  retryAfterMs: number;
}

const EMPTY: Known = { appointment: null, role: null, opensAt: null, closesAt: null };

export function createJoinClient(options: JoinClientOptions): JoinClient {
  const clientNow = options.now ?? (() => Date.now());
  const doFetch: FetchLike = options.fetch ?? ((url, init) => fetch(url, init));
  const schedule = options.setTimeout ?? ((callback, ms) => setTimeout(callback, ms));
  const cancel = options.clearTimeout ?? ((handle) => clearTimeout(handle as ReturnType<typeof setTimeout>));
  const random = options.random ?? Math.random;
  const refreshIntervalMs = options.refreshIntervalMs ?? 60 * SECOND;
  const maxJoinAttempts = options.maxJoinAttempts ?? 6;
  const maxAutoWaitMs = options.maxAutoWaitMs ?? 60 * SECOND;
  const clock = new ServerClock(clientNow);
  const urlOf = (externalId: string) => `${options.baseUrl.replace(/\/+$/, "")}/v1/appointments/${encodeURIComponent(externalId)}`;
  const appointmentUrl = urlOf(options.externalId);

  let state: JoinState = { ...EMPTY, status: "loading" };
  const listeners = new Set<(state: JoinState) => void>();
  let known: Known = EMPTY;
  let userId: string | null = options.userId ?? null;
  let started = false;
  let stopped = false;
  // Every user action or load starts a new generation; answers to an older one are ignored.
  let generation = 0;
  let tickTimer: unknown = null;
  let refreshTimer: unknown = null;
  // The supersede choice of the last join request, kept for asking again from the waiting room.
  let lastSupersede = false;

  const set = (next: JoinState) => {
    state = next;
    for (const listener of [...listeners]) listener(state);
  };

  const clearTick = () => {
    if (tickTimer !== null) cancel(tickTimer);
    tickTimer = null;
  };
  const clearRefresh = () => {
    if (refreshTimer !== null) cancel(refreshTimer);
    refreshTimer = null;
  };
  const wake = (ms: number, callback: () => void) => {
    clearTick();
    tickTimer = schedule(() => {
      tickTimer = null;
      if (!stopped) callback();
    }, Math.min(MAX_TIMER_MS, Math.max(0, ms)));
  };

  async function call(method: "GET" | "POST", url: string, body?: unknown): Promise<Answer> {
    const token = await options.getToken();
    if (options.userId === undefined) userId = subjectOf(token);
    const headers: Record<string, string> = { accept: "application/json", authorization: `Bearer ${token}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const sentAt = clientNow();
    const response = await doFetch(url, {
      method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      credentials: "omit",
      cache: "no-store",
    });
    clock.observe(response.headers.get("date"), sentAt, clientNow());
    let parsed: unknown;
    try {
      parsed = await response.json();
    } catch {
      // An answer without a JSON body (a proxy's error page) is judged by its status alone.
      parsed = null;
    }
    return {
      status: response.status,
      body: parsed !== null && typeof parsed === "object" ? (parsed as Record<string, unknown>) : {},
      retryAfterMs: retryAfterMs(response.headers.get("retry-after"), clock.now()),
    };
  }

  const problemOf = (answer: Answer): Problem => ({
    status: answer.status,
    code: typeof answer.body.code === "string" ? answer.body.code : "unexpected_response",
    ...(typeof answer.body.detail === "string" ? { detail: answer.body.detail } : {}),
  });

  /** Waiting and open follow the clock: wake when the countdown crosses a whole second, and when the window closes. */
  function evaluate() {
    if (!known.appointment) return;
    const next = evaluateWindow(known.appointment, known.role, clock.now());
    set(next);
    if (next.status === "waiting") wake(next.msUntilOpen % SECOND || SECOND, evaluate);
    else if (next.status === "open") wake(Math.min(60 * SECOND, (known.closesAt?.getTime() ?? 0) - clock.now()), evaluate);
    else clearTick();
    if (next.status === "waiting" || next.status === "open") {
      if (refreshTimer === null) refreshTimer = schedule(backgroundRefresh, refreshIntervalMs);
    } else clearRefresh();
  }

  function adopt(appointment: Appointment) {
    const role = roleOf(appointment, userId);
    known = {
      appointment,
      role,
      opensAt: opensAtFor(appointment, role),
      closesAt: new Date(Date.parse(appointment.join.closesAt)),
    };
  }

  /** States in which a newer reading of the appointment may change what is shown. */
  const followsWindow = (status: JoinStatus) => status === "waiting" || status === "open" || status === "closed";

  function backgroundRefresh() {
    refreshTimer = null;
    if (stopped || !followsWindow(state.status)) return;
    const current = generation;
    call("GET", appointmentUrl).then(
      (answer) => {
        if (stopped || current !== generation || !followsWindow(state.status)) return;
        if (answer.status === 200 && isAppointment(answer.body)) {
          adopt(answer.body as unknown as Appointment);
          evaluate();
        } else if (answer.status === 401) set({ ...known, status: "unauthenticated" });
        else if (answer.status === 404) set({ ...EMPTY, status: "not_found" });
        else evaluate();
      },
      // A failed background reading keeps what is known and tries again at the next interval.
      () => {
        if (!stopped && current === generation && followsWindow(state.status)) evaluate();
      },
    );
  }

  function load(attempt = 1) {
    const current = ++generation;
    clearTick();
    clearRefresh();
    if (!known.appointment) set({ ...EMPTY, status: "loading" });
    const retry = (reason: RetryReason, serverWaitMs: number) => {
      const delay = backoffMs(attempt, serverWaitMs, random);
      set({ ...known, status: "retrying", operation: "load", reason, retryAt: new Date(clientNow() + delay), attempt });
      wake(delay, () => load(attempt + 1));
    };
    call("GET", appointmentUrl).then(
      (answer) => {
        if (stopped || current !== generation) return;
        if (answer.status === 200 && isAppointment(answer.body)) {
          adopt(answer.body as unknown as Appointment);
          evaluate();
          return;
        }
        if (answer.status === 401) return set({ ...EMPTY, status: "unauthenticated" });
        if (answer.status === 404) return set({ ...EMPTY, status: "not_found" });
        const reason = answer.status === 503 && answer.body.code === "not_ready" ? "not_ready" : RETRYABLE[answer.status];
        if (reason) return retry(reason, answer.retryAfterMs);
        set({ ...known, status: "error", operation: "load", problem: problemOf(answer) });
      },
      () => {
        if (!stopped && current === generation) retry("network_error", 0);
      },
    );
  }

  function requestJoin(supersede: boolean, attempt = 1) {
    const current = ++generation;
    clearTick();
    clearRefresh();
    lastSupersede = supersede;
    // Asking again from the waiting room keeps showing the waiting room: no "joining" flash every few seconds.
    if (state.status !== "waiting_for_host") set({ ...known, status: "joining" });
    const retry = (reason: RetryReason, serverWaitMs: number, problem: Problem) => {
      if (attempt >= maxJoinAttempts) return set({ ...known, status: "error", operation: "join", problem });
      const delay = backoffMs(attempt, serverWaitMs, random);
      set({ ...known, status: "retrying", operation: "join", reason, retryAt: new Date(clientNow() + delay), attempt });
      wake(delay, () => requestJoin(supersede, attempt + 1));
    };
    call("POST", `${appointmentUrl}/join-token`, { supersede }).then(
      async (answer) => {
        if (stopped || current !== generation) return;
        const code = answer.body.code;
        switch (answer.status) {
          case 201:
            if (typeof answer.body.token === "string" && typeof answer.body.sessionId === "string") {
              const roomUrl = typeof answer.body.roomUrl === "string" ? answer.body.roomUrl : null;
              return handOver({ ...(answer.body as unknown as JoinGrant), roomUrl }, current);
            }
            break;
          case 425: {
            if (code === "waiting_for_host") {
              const wait = Math.min(MAX_HOST_POLL_MS, Math.max(SECOND, answer.retryAfterMs));
              set({ ...known, status: "waiting_for_host", retryAt: new Date(clientNow() + wait) });
              return wake(wait, () => requestJoin(supersede, attempt));
            }
            if (typeof answer.body.opensAt === "string" && known.appointment) {
              // The server says when; a reschedule may have moved it, so read the appointment again below if it is far.
              known = { ...known, opensAt: new Date(Date.parse(answer.body.opensAt)) };
            }
            const wait = Math.max(SECOND, answer.retryAfterMs);
            if (wait > maxAutoWaitMs) return load();
            set({ ...known, status: "retrying", operation: "join", reason: "too_early", retryAt: new Date(clientNow() + wait), attempt });
            return wake(wait, () => requestJoin(supersede, attempt));
          }
          case 409:
            if (code === "active_elsewhere") {
              const other = typeof answer.body.otherAppointmentId === "string" ? answer.body.otherAppointmentId : "";
              set({ ...known, status: "collision", otherAppointmentId: other, otherAppointment: null });
              if (other) describeOther(other, current);
              return;
            }
            if (code === "appointment_cancelled") return set({ ...known, status: "cancelled" });
            if (code === "participant_limit") return set({ ...known, status: "full" });
            break;
          case 410: {
            const closedAt = typeof answer.body.closedAt === "string" ? new Date(Date.parse(answer.body.closedAt)) : known.closesAt;
            return set({ ...known, status: "closed", closedAt });
          }
          case 403:
            if (code === "access_blocked") return set({ ...known, status: "blocked" });
            break;
          case 401:
            return set({ ...known, status: "unauthenticated" });
          case 404:
            return set({ ...EMPTY, status: "not_found" });
        }
        const reason = RETRYABLE[answer.status];
        if (reason) return retry(reason, answer.retryAfterMs, problemOf(answer));
        set({ ...known, status: "error", operation: "join", problem: problemOf(answer) });
      },
      () => {
        if (!stopped && current === generation) retry("network_error", 0, { status: 0, code: "network_error" });
      },
    );
  }

  /** Reads the other appointment of a collision, so that the prompt can say whom and when; a failed read leaves it null. */
  function describeOther(externalId: string, current: number) {
    call("GET", urlOf(externalId)).then(
      (answer) => {
        const shown = state;
        if (stopped || current !== generation || shown.status !== "collision") return;
        if (answer.status !== 200 || !isAppointment(answer.body)) return;
        const other = answer.body as unknown as Appointment;
        const startsAt = Date.parse(other.startsAt);
        if (Number.isNaN(startsAt)) return;
        const role = roleOf(other, userId);
        const counterpart = role === "moderator" ? other.customer : role === "participant" ? other.agent : null;
        set({ ...shown, otherAppointment: { externalId, counterpartName: counterpart?.name ?? null, startsAt: new Date(startsAt) } });
      },
      () => {},
    );
  }

  async function handOver(grant: JoinGrant, current: number) {
    const { token: _token, ...session } = grant;
    try {
      await options.onToken(grant);
    } catch {
      if (!stopped && current === generation) {
        set({ ...known, status: "error", operation: "join", problem: { status: 0, code: "video_start_failed" } });
      }
      return;
    }
    if (!stopped && current === generation) set({ ...known, status: "joined", session });
  }

  return {
    get state() {
      return state;
    },
    subscribe(listener) {
      listeners.add(listener);
      listener(state);
      return () => listeners.delete(listener);
    },
    start() {
      if (started || stopped) return;
      started = true;
      load();
    },
    join() {
      if (stopped) return;
      const status = state.status;
      if (status === "open" || status === "waiting" || status === "full" || (status === "error" && state.operation === "join")) {
        requestJoin(false);
      }
    },
    confirmSupersede() {
      if (!stopped && state.status === "collision") requestJoin(true);
    },
    dismissCollision() {
      if (stopped || state.status !== "collision") return;
      generation++;
      evaluate();
    },
    refresh() {
      if (stopped || !started) return;
      const status = state.status;
      if (followsWindow(status)) {
        // What is shown stays until a newer reading arrives; a failed one changes nothing.
        clearRefresh();
        backgroundRefresh();
      } else if (status === "error" || status === "loading" || (status === "retrying" && state.operation === "load")) {
        load();
      } else if (status === "waiting_for_host") {
        // A background tab's timers are throttled: on return, ask at once whether the host is in.
        requestJoin(lastSupersede);
      }
    },
    serverNow: () => clock.now(),
    stop() {
      stopped = true;
      generation++;
      clearTick();
      clearRefresh();
      listeners.clear();
    },
  };
}
