import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { daily } from "../daily.js";
import { createProviderHttp, ProviderHttpError } from "../http-client.js";
import {
  type CallBudget,
  CallbackRejectedError,
  type EjectRequest,
  type PresenceReport,
  type ProviderCallback,
  type ProviderCallObserver,
  type SessionRequest,
  type SessionUpdate,
  type TokenRequest,
  type VideoProvider,
} from "../video-provider.js";

export interface DailyProviderOptions {
  apiKey: string;
  /** DAILY_API_BASE, e.g. https://api.daily.co/v1 */
  apiBase: string;
  /**
   * DAILY_WEBHOOK_SECRET: the webhook's `hmac`, base64 as Daily hands it out.
   * Without it (or with one that is not base64) every callback is refused.
   */
  webhookSecret?: string;
  timeoutMs: number;
  observe?: ProviderCallObserver;
  now?: () => Date;
}

/**
 * How far a webhook's X-Webhook-Timestamp may be from our clock. Daily's docs
 * name no window; its `exponential` retry type resends a message up to 5
 * times with backoff of up to 15 minutes, so a tighter window could refuse a
 * genuine redelivery. A replay inside it cannot move presence backwards: the
 * core ignores a report older than the one it holds.
 */
export const WEBHOOK_TIMESTAMP_TOLERANCE_MS = 60 * 60_000;

/** Daily's meeting-token reference limits `user_id` to 36 characters. */
export const MAX_DAILY_USER_ID_LENGTH = 36;

/**
 * The `user_id` Daily knows a user by: the user id itself when it fits,
 * else `h-` and 34 characters of its SHA-256 (base64url), so long ids
 * (e-mail addresses, `auth0|…`) work too. Deterministic: presence callbacks
 * carry it back and the core matches it against the appointment's users.
 */
export function dailyUserId(userId: string): string {
  if (userId.length <= MAX_DAILY_USER_ID_LENGTH) return userId;
  return `h-${createHash("sha256").update(userId).digest("base64url").slice(0, MAX_DAILY_USER_ID_LENGTH - 2)}`;
}

const ROOM_SLUG_LENGTH = 16;
const ROOM_HASH_LENGTH = 20;

/**
 * The room of an appointment: a slug of the external id for people reading
 * Daily's dashboard, and a hash of the whole id so that ids which slug alike
 * ("a/b", "a?b") never share a room. Only Daily's characters (A-Z a-z 0-9 _ -),
 * at most 40 of them.
 */
export function dailyRoomName(externalId: string): string {
  const slug = externalId
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .slice(0, ROOM_SLUG_LENGTH)
    .replace(/^-+|-+$/g, "");
  const hash = createHash("sha256").update(externalId, "utf8").digest("hex").slice(0, ROOM_HASH_LENGTH);
  return slug ? `jw-${slug}-${hash}` : `jw-${hash}`;
}

/** The HMAC key of a base64 webhook secret; undefined when it is not base64. */
export function dailyWebhookKey(secret: string | undefined): Buffer | undefined {
  const text = secret?.trim() ?? "";
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) return undefined;
  const key = Buffer.from(text, "base64");
  return key.length > 0 ? key : undefined;
}

interface Room {
  name: string;
  url: string;
}

const epochSeconds = (at: Date) => Math.floor(at.getTime() / 1000);
const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);
const nonEmptyString = (value: unknown) => (typeof value === "string" && value !== "" ? value : undefined);

function roomOf(answer: unknown): Room | undefined {
  if (!isObject(answer)) return undefined;
  const name = nonEmptyString(answer.name);
  const url = nonEmptyString(answer.url);
  return name && url ? { name, url } : undefined;
}

const statusOf = (error: unknown) => (error instanceof ProviderHttpError ? error.status : undefined);

/**
 * A 4xx other than 408 and 429 is a refusal (a key Daily does not accept, a
 * body it will not read): a plain Error, which an eject job does not retry
 * (VideoProvider.eject). Anything else stays a ProviderUnavailableError.
 */
function refusalOrOutage(error: unknown): unknown {
  const status = statusOf(error);
  const refused = status !== undefined && status < 500 && status !== 408 && status !== 429;
  return refused && error instanceof Error ? new Error(error.message) : error;
}

/**
 * Daily (API.md §8): private rooms that expire at closesAt, meeting tokens
 * from its REST API, eject by user id, and presence from its signed webhooks.
 */
export function createDailyProvider(options: DailyProviderOptions): VideoProvider {
  if (!options.apiKey) throw new Error("Daily API key is required");
  const apiBase = options.apiBase.replace(/\/+$/, "");
  const now = options.now ?? (() => new Date());
  const webhookKey = dailyWebhookKey(options.webhookSecret);
  const http = createProviderHttp({ provider: daily.name, timeoutMs: options.timeoutMs, observe: options.observe });
  const authorization = `Bearer ${options.apiKey}`;

  function post<T>(
    path: string,
    payload: object,
    budget: CallBudget,
    operation: string,
    parse: (answer: unknown) => T | undefined,
  ): Promise<T> {
    return http.request(
      {
        method: "POST",
        url: `${apiBase}${path}`,
        headers: { Authorization: authorization, "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(payload),
      },
      budget,
      operation,
      parse,
    );
  }

  const roomPath = (name: string) => `/rooms/${encodeURIComponent(name)}`;

  function roomSettings(closesAt: Date, maxParticipants?: number) {
    return {
      privacy: "private",
      properties: {
        ...(maxParticipants === undefined ? {} : { max_participants: maxParticipants }),
        exp: epochSeconds(closesAt),
        // A meeting still running at closesAt ends then, for everyone.
        eject_at_room_exp: true,
      },
    };
  }

  return {
    name: daily.name,
    applicationId: null,
    remote: { sessions: daily.capabilities.remoteSessions, tokens: daily.capabilities.remoteTokens },
    identityOf: dailyUserId,

    async createSession(request: SessionRequest, budget: CallBudget) {
      const name = dailyRoomName(request.externalId);
      const settings = roomSettings(request.closesAt, request.settings.maxParticipants);
      let room: Room;
      try {
        room = await post("/rooms", { name, ...settings }, budget, "create_session", roomOf);
      } catch (error) {
        // Daily answers 400 for a name already taken: our own earlier attempt whose answer was lost, or
        // another replica's. The name is the appointment's, so that room is this session. Updating it
        // (rather than only reading it) also puts this booking's expiry and cap on a room left from an
        // earlier booking of the same id. The HTTP client keeps answer bodies out of its errors, so a 400
        // for a payload Daily refuses is told apart by the update finding no room: then the 400 stands.
        if (statusOf(error) !== 400) throw error;
        try {
          room = await post(roomPath(name), settings, budget, "reuse_session", roomOf);
        } catch (updateError) {
          throw statusOf(updateError) === 404 ? error : updateError;
        }
      }
      return { sessionId: room.name, roomUrl: room.url };
    },

    async updateSession(request: SessionUpdate, budget: CallBudget) {
      const settings = roomSettings(request.closesAt);
      try {
        await post(roomPath(request.sessionId), { properties: settings.properties }, budget, "update_session", roomOf);
      } catch (error) {
        if (statusOf(error) !== 404) throw error;
        // Daily deletes rooms some time after they expire: an appointment moved after its old closesAt
        // gets its room back under the same name (so the stored session id and URL stay right). The
        // update carries no settings, so the cap is Daily's default; the service caps tokens itself.
        await post("/rooms", { name: request.sessionId, ...settings }, budget, "create_session", roomOf);
      }
    },

    async issueToken(request: TokenRequest, budget: CallBudget) {
      const token = await post(
        "/meeting-tokens",
        {
          properties: {
            room_name: request.sessionId,
            user_id: dailyUserId(request.userId),
            is_owner: request.role === "moderator",
            nbf: epochSeconds(request.notBefore),
            exp: epochSeconds(request.expiresAt),
            eject_at_token_exp: true,
          },
        },
        budget,
        "issue_token",
        (answer) => (isObject(answer) ? nonEmptyString(answer.token) : undefined),
      );
      return { token };
    },

    async eject(request: EjectRequest, budget: CallBudget) {
      try {
        return await post(
          `${roomPath(request.sessionId)}/eject`,
          // A user who came back with a new token keeps their new entry: only the recorded sessions go.
          request.byIdentity ? { user_ids: [dailyUserId(request.userId)] } : { ids: [...request.connectionIds] },
          budget,
          "eject",
          (answer) => {
            // `ejectedIds` lists the participant sessions Daily removed; none means nobody was there.
            const ejected = isObject(answer) ? answer.ejectedIds : undefined;
            return { removed: Array.isArray(ejected) ? ejected.length > 0 : true };
          },
        );
      } catch (error) {
        if (statusOf(error) === 404) return { removed: false };
        throw refusalOrOutage(error);
      }
    },

    async readCallback(callback: ProviderCallback): Promise<PresenceReport[]> {
      if (!webhookKey) throw new CallbackRejectedError("daily callback refused: no DAILY_WEBHOOK_SECRET is configured");
      const signature = callback.headers["x-webhook-signature"];
      const timestamp = callback.headers["x-webhook-timestamp"];
      if (signature === undefined && timestamp === undefined && isVerificationPing(callback.rawBody)) {
        // Daily's check of a new (or reactivated) webhook says nothing and changes nothing; answering it
        // lets the webhook be created whether or not Daily signs it.
        return [];
      }
      if (!signature || !timestamp) throw new CallbackRejectedError("daily callback: missing signature");
      const signedAt = timestampMs(timestamp);
      if (signedAt === undefined || Math.abs(now().getTime() - signedAt) > WEBHOOK_TIMESTAMP_TOLERANCE_MS) {
        throw new CallbackRejectedError("daily callback: timestamp missing or too far from now");
      }
      if (!signatureMatches(webhookKey, timestamp, callback.rawBody, signature)) {
        throw new CallbackRejectedError("daily callback: signature does not match");
      }
      return presenceReports(callback.rawBody);
    },
  };
}

/** Daily's signature: base64 HMAC-SHA256, keyed with the decoded secret, of "<X-Webhook-Timestamp>.<body>". */
function signatureMatches(key: Buffer, timestamp: string, rawBody: string, signature: string): boolean {
  const text = signature.trim();
  // 32 bytes of base64; anything else (hex, truncated, garbled) cannot match.
  if (!/^[A-Za-z0-9+/_-]{43}=?$/.test(text)) return false;
  const given = Buffer.from(text, "base64");
  const expected = createHmac("sha256", key).update(`${timestamp}.${rawBody}`, "utf8").digest();
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * Epoch ms of X-Webhook-Timestamp. Daily's docs do not say its unit: epoch
 * seconds (possibly with a fraction) and epoch milliseconds are told apart by
 * size, an ISO 8601 time is read as one.
 */
function timestampMs(value: string): number | undefined {
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) {
    const number = Number(text);
    return number >= 1e11 ? number : number * 1000;
  }
  if (!/^\d{4}-\d{2}-\d{2}T/.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : at;
}

/** The body Daily posts to check an endpoint: an object with only `test`. */
function isVerificationPing(rawBody: string): boolean {
  try {
    const body: unknown = JSON.parse(rawBody);
    return isObject(body) && Object.keys(body).length === 1 && "test" in body;
  } catch {
    return false;
  }
}

const PRESENCE_STATES: Record<string, PresenceReport["state"]> = {
  "participant.joined": "joined",
  "participant.left": "left",
};

/**
 * participant.joined / participant.left as reports; [] for any other event
 * (and for a signed body that is not an event: acknowledging it changes nothing).
 */
function presenceReports(rawBody: string): PresenceReport[] {
  let event: unknown;
  try {
    event = JSON.parse(rawBody);
  } catch {
    return [];
  }
  if (!isObject(event) || typeof event.type !== "string" || !isObject(event.payload)) return [];
  const state = PRESENCE_STATES[event.type];
  const { payload } = event;
  const sessionId = nonEmptyString(payload.room);
  const userId = nonEmptyString(payload.user_id);
  const at = eventTime(state, payload, event.event_ts);
  if (!state || !sessionId || !userId || !at) return [];
  const connectionId = nonEmptyString(payload.session_id);
  return [{ sessionId, state, at, userId, ...(connectionId ? { connectionId } : {}) }];
}

/**
 * When it happened, from the event itself: `joined_at` for a join, `joined_at + duration`
 * for a leave. `event_ts` (when Daily generated or sent the webhook) is only
 * the fallback: a redelivery could carry a later one and make an old leave
 * look newer than the next join.
 */
function eventTime(
  state: PresenceReport["state"] | undefined,
  payload: Record<string, unknown>,
  eventTs: unknown,
): Date | undefined {
  const finite = (value: unknown) => (typeof value === "number" && Number.isFinite(value) ? value : undefined);
  const joinedAt = finite(payload.joined_at);
  const duration = finite(payload.duration);
  const seconds =
    state === "joined" && joinedAt !== undefined
      ? joinedAt
      : state === "left" && joinedAt !== undefined && duration !== undefined
        ? joinedAt + duration
        : finite(eventTs);
  return seconds === undefined ? undefined : new Date(Math.round(seconds * 1000));
}
