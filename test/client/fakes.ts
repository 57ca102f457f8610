import type { Appointment, FetchLike, ResponseLike } from "../../src/client/joinwindow.js";

const MINUTE = 60_000;

/**
 * A clock and a timer queue the test moves by hand: `advance` runs every
 * timer that falls due, in order, and lets the promises each one starts
 * settle before the next.
 */
export class FakeTime {
  private nextId = 1;
  private tasks: { id: number; at: number; callback: () => void }[] = [];

  constructor(public clientNow: number) {}

  readonly now = () => this.clientNow;

  readonly setTimeout = (callback: () => void, ms: number): unknown => {
    const id = this.nextId++;
    this.tasks.push({ id, at: this.clientNow + ms, callback });
    return id;
  };

  readonly clearTimeout = (handle: unknown) => {
    this.tasks = this.tasks.filter((task) => task.id !== handle);
  };

  get pending(): number {
    return this.tasks.length;
  }

  async advance(ms: number): Promise<void> {
    const end = this.clientNow + ms;
    await settle();
    for (;;) {
      const due = this.tasks.filter((task) => task.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.tasks = this.tasks.filter((task) => task !== due);
      this.clientNow = Math.max(this.clientNow, due.at);
      due.callback();
      await settle();
    }
    this.clientNow = end;
  }
}

/** Lets every pending promise chain (fake fetch, JSON parsing, callbacks) run to its end. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** The 425 a customer gets while the host has no live token (API.md §3, the waiting room). */
export const waitingForHost = (retryAfter = "3"): Reply => ({
  status: 425,
  body: { type: "urn:joinwindow:problem:waiting_for_host", title: "Too Early", status: 425, code: "waiting_for_host" },
  headers: { "retry-after": retryAfter },
});

export interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export interface Call {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: unknown;
  /** The client's clock when the request was made. */
  at: number;
}

/**
 * The service as the client sees it: its clock is the client's plus `skewMs`
 * and every answer carries a `Date` header (whole seconds, as HTTP has it).
 * GET answers the current appointment, or for another id what `elsewhere`
 * holds for it (404 if nothing); POST join-token answers from the queue, then
 * the fallback.
 */
export class FakeService {
  calls: Call[] = [];
  joinReplies: Reply[] = [];
  joinFallback: Reply = { status: 500, body: { code: "internal_error" } };
  readReply: (() => Reply) | null = null;
  elsewhere: Record<string, Reply> = {};

  constructor(
    private readonly time: FakeTime,
    public skewMs: number,
    public appointment: Appointment,
  ) {}

  serverNow(): number {
    return this.time.clientNow + this.skewMs;
  }

  readonly fetch: FetchLike = async (url, init) => {
    this.calls.push({
      method: init.method,
      url,
      headers: init.headers,
      body: init.body === undefined ? undefined : JSON.parse(init.body),
      at: this.time.clientNow,
    });
    const id = decodeURIComponent(url.split("/v1/appointments/")[1] ?? "");
    const reply =
      init.method !== "GET"
        ? (this.joinReplies.shift() ?? this.joinFallback)
        : id !== this.appointment.externalId
          ? (this.elsewhere[id] ?? { status: 404, body: { code: "not_found" } })
          : (this.readReply?.() ?? { status: 200, body: this.appointment });
    return response(reply, this.serverNow());
  };

  get joins(): Call[] {
    return this.calls.filter((call) => call.method === "POST");
  }
}

function response(reply: Reply, serverNow: number): ResponseLike {
  const headers = new Map(Object.entries({ date: new Date(serverNow).toUTCString(), ...reply.headers }));
  return {
    status: reply.status,
    headers: { get: (name) => headers.get(name.toLowerCase()) ?? null },
    json: async () => {
      if (reply.body === undefined) throw new SyntaxError("no body");
      return reply.body;
    },
  };
}

/** An appointment on the server's clock: it starts `startsInMinutes` from `serverNow`, agent 10 min early, customer 5. */
export function appointmentAt(serverNow: number, startsInMinutes: number, overrides: Partial<Appointment> = {}): Appointment {
  const startsAt = serverNow + startsInMinutes * MINUTE;
  const endsAt = startsAt + 30 * MINUTE;
  const iso = (ms: number) => new Date(ms).toISOString();
  return {
    externalId: "appt-123",
    status: "scheduled",
    startsAt: iso(startsAt),
    endsAt: iso(endsAt),
    timeZone: "America/New_York",
    agent: { id: "agent-7", name: "Dr. Lee" },
    customer: { id: "cust-42", name: "Pat Doe" },
    join: { agentOpensAt: iso(startsAt - 10 * MINUTE), customerOpensAt: iso(startsAt - 5 * MINUTE), closesAt: iso(endsAt + 15 * MINUTE) },
    session: { provider: "local", id: "ses_1", status: "ready" },
    accessBlocked: false,
    ...overrides,
  };
}

/** An unsigned JWT with the given subject: the client only reads `sub`. */
export function jwtFor(sub: string): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "HS256", typ: "JWT" })}.${part({ sub, exp: 4_102_444_800 })}.c2lnbmF0dXJl`;
}

export function grantFor(appointment: Appointment, role: "moderator" | "participant", token = "provider-token-secret") {
  return {
    appointmentId: appointment.externalId,
    provider: "local",
    applicationId: null,
    sessionId: "ses_1",
    token,
    tokenId: "0f3e0000-0000-4000-8000-000000000001",
    roomUrl: null as string | null,
    role,
    notBefore: role === "moderator" ? appointment.join.agentOpensAt : appointment.join.customerOpensAt,
    expiresAt: appointment.join.closesAt,
  };
}
