// A fake of Daily's REST API (API.md §8) on one 127.0.0.1 server, strict
// the way Daily is: the API key as a bearer token, only the properties Daily
// knows with the types it wants (400 `invalid-request-error` otherwise),
// rooms kept by name (a taken name is a 400), meeting tokens that are JWTs
// signed with the API key and Daily's abbreviated claims (as its
// self-signing guide describes them), eject, and switchable faults per route.
// `join` admits a participant as Daily would at a given instant (room and
// token times enforced), so tests need not wait for time to pass.
import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";
import type { ServerResponse } from "node:http";
import {
  applyFault,
  type FakeServer,
  type RecordedRequest,
  RouteFaults,
  sendJson,
  sendMalformed,
  startFakeServer,
} from "./fake-server.js";

export interface FakeDailyOptions {
  apiKey: string;
  /** The subdomain of room URLs (https://{domain}.daily.co/{room}). */
  domain?: string;
}

export interface FakeDailyParticipant {
  /** Daily's participant session id (`session_id` in webhooks, `ids` in eject). */
  sessionId: string;
  userId: string | undefined;
  owner: boolean;
  joinedAt: Date;
}

export interface FakeDailyRoom {
  id: string;
  name: string;
  privacy: "public" | "private";
  /** As sent (create, then merged by updates). */
  properties: Record<string, unknown>;
  url: string;
  createdAt: Date;
  /** Who is in the meeting now. */
  participants: FakeDailyParticipant[];
}

export type FakeDailyRoute = "createRoom" | "getRoom" | "updateRoom" | "meetingTokens" | "eject";

export type JoinResult = { joined: true; participant: FakeDailyParticipant } | { joined: false; reason: string };

/** A meeting token's claims, with Daily's abbreviations (r room_name, ud user_id, o is_owner, ejt eject_at_token_exp, …). */
export type MeetingTokenClaims = Record<string, unknown>;

export interface FakeDaily extends FakeServer, Record<FakeDailyRoute, RouteFaults> {
  /** Serves as DAILY_API_BASE. */
  url: string;
  /** The `d` claim of the tokens it signs. */
  domainId: string;
  rooms: Map<string, FakeDailyRoom>;
  /** Every meeting token handed out, in order. */
  tokens: string[];
  /** The next `count` requests of `route` are handled, then their connection is cut before the answer. */
  loseAnswers(route: FakeDailyRoute, count?: number): void;
  /** Admits the token's holder to `roomName` at `at`, or says why Daily would not. */
  join(roomName: string, token: string, at?: Date): JoinResult;
  /** Takes a participant out; the seconds they were in, as Daily's `duration`. */
  leave(roomName: string, participant: FakeDailyParticipant, at: Date): number;
  /** The body of Daily's participant.joined / participant.left webhook for this participant. */
  presenceEvent(
    type: "participant.joined" | "participant.left",
    roomName: string,
    participant: FakeDailyParticipant,
    options?: { leftAt?: Date; sentAt?: Date },
  ): string;
  /** Resets every route's faults and the lost answers. */
  resetFaults(): void;
}

/** Meeting-token properties → their JWT claims (docs.daily.co, "Self-signing meeting tokens"). */
const TOKEN_CLAIMS: Record<string, string> = {
  room_name: "r",
  user_id: "ud",
  user_name: "u",
  is_owner: "o",
  nbf: "nbf",
  exp: "exp",
  eject_at_token_exp: "ejt",
  eject_after_elapsed: "eje",
  enable_screenshare: "ss",
  start_video_off: "vo",
  start_audio_off: "ao",
};

const INT32_MAX = 2 ** 31 - 1;
const isBoolean = (value: unknown) => typeof value === "boolean";
const isString = (value: unknown) => typeof value === "string";
const isInt32 = (value: unknown) => Number.isInteger(value) && Math.abs(value as number) <= INT32_MAX;
const isCount = (min: number, max: number) => (value: unknown) =>
  Number.isInteger(value) && (value as number) >= min && (value as number) <= max;

// The room properties this fake knows (a subset of Daily's, each with Daily's type).
const ROOM_PROPERTIES: Record<string, (value: unknown) => boolean> = {
  nbf: isInt32,
  exp: isInt32,
  max_participants: isCount(1, 200),
  eject_at_room_exp: isBoolean,
  eject_after_elapsed: isCount(0, INT32_MAX),
  enable_knocking: isBoolean,
  enable_chat: isBoolean,
  enable_screenshare: isBoolean,
  enable_prejoin_ui: isBoolean,
  start_video_off: isBoolean,
  start_audio_off: isBoolean,
};

const TOKEN_PROPERTIES: Record<string, (value: unknown) => boolean> = {
  room_name: isString,
  // "The user_id has a limit of 36 characters."
  user_id: (value) => isString(value) && (value as string).length <= 36,
  user_name: isString,
  is_owner: isBoolean,
  nbf: isInt32,
  exp: isInt32,
  eject_at_token_exp: isBoolean,
  eject_after_elapsed: isCount(0, INT32_MAX),
  enable_screenshare: isBoolean,
  start_video_off: isBoolean,
  start_audio_off: isBoolean,
};

const ROOM_NAME = /^[A-Za-z0-9_-]{1,128}$/;

const dailyError = (error: string, info: string) => ({ error, info });
const faultBody = (status: number) =>
  status === 429
    ? dailyError("rate-limit-error", "too many requests")
    : status >= 500
      ? dailyError("server-error", "an unexpected error occurred")
      : dailyError("invalid-request-error", `http ${status}`);

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

const base64url = (data: Buffer | string) => Buffer.from(data).toString("base64url");

function signJwt(claims: MeetingTokenClaims, key: string): string {
  const signingInput = `${base64url(JSON.stringify({ alg: "HS256", typ: "JWT" }))}.${base64url(JSON.stringify(claims))}`;
  return `${signingInput}.${base64url(createHmac("sha256", key).update(signingInput).digest())}`;
}

/** The claims of a meeting token signed with `apiKey` (as Daily signs them); undefined for anything else. */
export function readMeetingToken(token: string, apiKey: string): MeetingTokenClaims | undefined {
  const [header, payload, signature, ...rest] = token.split(".");
  if (header === undefined || payload === undefined || signature === undefined || rest.length > 0) return undefined;
  const expected = createHmac("sha256", apiKey).update(`${header}.${payload}`).digest();
  const given = Buffer.from(signature, "base64url");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
  try {
    const claims: unknown = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
    return isObject(claims) ? claims : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The headers Daily sends with a webhook: X-Webhook-Signature is the base64
 * HMAC-SHA256, keyed with the base64-decoded secret, of "<timestamp>.<body>";
 * X-Webhook-Timestamp the timestamp (epoch seconds). Names lower-case, as the
 * route hands them to the provider.
 */
export function signDailyWebhook(
  secretBase64: string,
  rawBody: string,
  timestamp: string = String(Math.floor(Date.now() / 1000)),
): { "x-webhook-signature": string; "x-webhook-timestamp": string } {
  const signature = createHmac("sha256", Buffer.from(secretBase64, "base64"))
    .update(`${timestamp}.${rawBody}`, "utf8")
    .digest("base64");
  return { "x-webhook-signature": signature, "x-webhook-timestamp": timestamp };
}

/** What Daily posts to an endpoint when a webhook is created or reactivated. */
export const DAILY_VERIFICATION_PING = JSON.stringify({ test: "test" });

/** Problems of `properties` against `known`, in Daily's words as near as the docs give them. */
function propertyProblem(properties: unknown, known: Record<string, (value: unknown) => boolean>): string | undefined {
  if (properties === undefined) return undefined;
  if (!isObject(properties)) return "properties must be an object";
  for (const [key, value] of Object.entries(properties)) {
    const valid = known[key];
    if (!valid) return `unknown property: ${key}`;
    if (!valid(value)) return `invalid value for property ${key}`;
  }
  return undefined;
}

function unknownKey(body: Record<string, unknown>, allowed: readonly string[]): string | undefined {
  return Object.keys(body).find((key) => !allowed.includes(key));
}

const seconds = (at: Date) => at.getTime() / 1000;

export async function startFakeDaily(options: FakeDailyOptions): Promise<FakeDaily> {
  const domain = options.domain ?? "joinwindow-test";
  const domainId = randomUUID();
  const faults: Record<FakeDailyRoute, RouteFaults> = {
    createRoom: new RouteFaults(),
    getRoom: new RouteFaults(),
    updateRoom: new RouteFaults(),
    meetingTokens: new RouteFaults(),
    eject: new RouteFaults(),
  };
  const lost = new Map<FakeDailyRoute, number>();
  const rooms = new Map<string, FakeDailyRoom>();
  const tokens: string[] = [];
  const expectedAuthorization = Buffer.from(`Bearer ${options.apiKey}`);

  const roomAnswer = (room: FakeDailyRoom, withUrl = true) => ({
    id: room.id,
    name: room.name,
    api_created: true,
    privacy: room.privacy,
    ...(withUrl ? { url: room.url } : {}),
    created_at: room.createdAt.toISOString(),
    config: room.properties,
  });

  /** Answers, unless this route's answer is to be lost: then the connection is cut after the work is done. */
  function answer(route: FakeDailyRoute, res: ServerResponse, status: number, body: unknown) {
    const toLose = lost.get(route) ?? 0;
    if (toLose > 0) {
      lost.set(route, toLose - 1);
      res.socket?.destroy();
      return;
    }
    sendJson(res, status, body);
  }

  function authProblem(request: RecordedRequest): { status: number; body: unknown } | undefined {
    const header = request.headers.authorization ?? "";
    if (!/^Bearer \S+$/.test(header)) {
      return { status: 400, body: dailyError("authorization-header-error", "bad Authorization header format") };
    }
    const given = Buffer.from(header);
    if (given.length !== expectedAuthorization.length || !timingSafeEqual(given, expectedAuthorization)) {
      return { status: 401, body: dailyError("authentication-error", "the API key is not valid") };
    }
    return undefined;
  }

  function parseBody(request: RecordedRequest): Record<string, unknown> | undefined {
    try {
      const body: unknown = JSON.parse(request.body);
      return isObject(body) ? body : undefined;
    } catch {
      return undefined;
    }
  }

  const server = await startFakeServer(async (request, res) => {
    const path = new URL(request.path, "http://fake").pathname;
    const roomMatch = /^\/rooms\/([^/]+)(\/eject)?$/.exec(path);
    const roomName = roomMatch ? decodeURIComponent(roomMatch[1] ?? "") : undefined;
    const route: FakeDailyRoute | undefined =
      request.method === "POST" && path === "/rooms"
        ? "createRoom"
        : request.method === "POST" && path === "/meeting-tokens"
          ? "meetingTokens"
          : roomMatch && request.method === "POST" && roomMatch[2]
            ? "eject"
            : roomMatch && request.method === "POST"
              ? "updateRoom"
              : roomMatch && request.method === "GET"
                ? "getRoom"
                : undefined;
    if (!route) return sendJson(res, 404, dailyError("not-found", `no route ${request.method} ${path}`));

    const fault = await applyFault(faults[route].take(), res, faultBody);
    if (fault === "answered") return;
    const refused = authProblem(request);
    if (refused) return sendJson(res, refused.status, refused.body);
    const body = request.method === "POST" ? parseBody(request) : {};
    if (!body) return sendJson(res, 400, dailyError("json-parsing-error", "the body could not be parsed as a JSON object"));
    if (fault?.kind === "malformed") return sendMalformed(res);

    switch (route) {
      case "createRoom": {
        const problem =
          unknownKey(body, ["name", "privacy", "properties"]) !== undefined
            ? `unknown parameter: ${unknownKey(body, ["name", "privacy", "properties"])}`
            : body.name !== undefined && (typeof body.name !== "string" || !ROOM_NAME.test(body.name))
              ? "name must be 1 to 128 characters among A-Z a-z 0-9 _ -"
              : body.privacy !== undefined && body.privacy !== "public" && body.privacy !== "private"
                ? "privacy must be public or private"
                : propertyProblem(body.properties, ROOM_PROPERTIES);
        if (problem) return sendJson(res, 400, dailyError("invalid-request-error", problem));
        const name = (body.name as string | undefined) ?? randomUUID().replace(/-/g, "").slice(0, 20);
        if (rooms.has(name)) {
          return answer(route, res, 400, dailyError("invalid-request-error", `a room named ${name} already exists`));
        }
        const room: FakeDailyRoom = {
          id: randomUUID(),
          name,
          privacy: (body.privacy as FakeDailyRoom["privacy"] | undefined) ?? "public",
          properties: { ...((body.properties as Record<string, unknown> | undefined) ?? {}) },
          url: `https://${domain}.daily.co/${name}`,
          createdAt: new Date(),
          participants: [],
        };
        rooms.set(name, room);
        return answer(route, res, 200, roomAnswer(room, fault?.kind !== "missingId"));
      }

      case "getRoom":
      case "updateRoom": {
        const room = rooms.get(roomName ?? "");
        if (!room) return answer(route, res, 404, dailyError("not-found", `room ${roomName} not found`));
        if (route === "updateRoom") {
          const problem =
            unknownKey(body, ["privacy", "properties"]) !== undefined
              ? `unknown parameter: ${unknownKey(body, ["privacy", "properties"])}`
              : body.privacy !== undefined && body.privacy !== "public" && body.privacy !== "private"
                ? "privacy must be public or private"
                : propertyProblem(body.properties, ROOM_PROPERTIES);
          if (problem) return sendJson(res, 400, dailyError("invalid-request-error", problem));
          if (body.privacy !== undefined) room.privacy = body.privacy as FakeDailyRoom["privacy"];
          Object.assign(room.properties, body.properties ?? {});
        }
        return answer(route, res, 200, roomAnswer(room, fault?.kind !== "missingId"));
      }

      case "meetingTokens": {
        const problem =
          unknownKey(body, ["properties"]) !== undefined
            ? `unknown parameter: ${unknownKey(body, ["properties"])}`
            : propertyProblem(body.properties, TOKEN_PROPERTIES);
        if (problem) return sendJson(res, 400, dailyError("invalid-request-error", problem));
        if (fault?.kind === "missingId") return answer(route, res, 200, {});
        const claims: MeetingTokenClaims = { d: domainId, iat: Math.floor(Date.now() / 1000) };
        for (const [property, value] of Object.entries((body.properties as Record<string, unknown> | undefined) ?? {})) {
          claims[TOKEN_CLAIMS[property] ?? property] = value;
        }
        const token = signJwt(claims, options.apiKey);
        tokens.push(token);
        return answer(route, res, 200, { token });
      }

      case "eject": {
        const room = rooms.get(roomName ?? "");
        if (!room) return answer(route, res, 404, dailyError("not-found", `room ${roomName} not found`));
        const ids = (value: unknown) =>
          value === undefined || (Array.isArray(value) && value.length <= 100 && value.every(isString));
        const problem =
          unknownKey(body, ["ids", "user_ids", "ban"]) !== undefined
            ? `unknown parameter: ${unknownKey(body, ["ids", "user_ids", "ban"])}`
            : !ids(body.ids) || !ids(body.user_ids)
              ? "ids and user_ids must be arrays of at most 100 strings"
              : body.ban !== undefined && !isBoolean(body.ban)
                ? "ban must be a boolean"
                : ((body.ids as unknown[] | undefined) ?? []).length + ((body.user_ids as unknown[] | undefined) ?? []).length ===
                    0
                  ? "ids or user_ids is required"
                  : undefined;
        if (problem) return sendJson(res, 400, dailyError("invalid-request-error", problem));
        const sessionIds = new Set((body.ids as string[] | undefined) ?? []);
        const userIds = new Set((body.user_ids as string[] | undefined) ?? []);
        const ejected = room.participants.filter(
          (p) => sessionIds.has(p.sessionId) || (p.userId !== undefined && userIds.has(p.userId)),
        );
        room.participants = room.participants.filter((p) => !ejected.includes(p));
        if (fault?.kind === "missingId") return answer(route, res, 200, {});
        return answer(route, res, 200, { ejectedIds: ejected.map((p) => p.sessionId) });
      }
    }
  });

  return {
    ...server,
    ...faults,
    domainId,
    rooms,
    tokens,
    loseAnswers(route, count = 1) {
      lost.set(route, (lost.get(route) ?? 0) + count);
    },
    join(roomName, token, at = new Date()) {
      const claims = readMeetingToken(token, options.apiKey);
      if (!claims || claims.d !== domainId) return { joined: false, reason: "invalid meeting token" };
      if (claims.r !== undefined && claims.r !== roomName) return { joined: false, reason: "token is for another room" };
      const room = rooms.get(roomName);
      if (!room) return { joined: false, reason: "no such room" };
      const now = seconds(at);
      const { nbf, exp, max_participants: maxParticipants } = room.properties;
      if (typeof nbf === "number" && now < nbf) return { joined: false, reason: "room not yet open" };
      if (typeof exp === "number" && now >= exp) return { joined: false, reason: "room expired" };
      if (typeof claims.nbf === "number" && now < claims.nbf) return { joined: false, reason: "token not yet valid" };
      if (typeof claims.exp === "number" && now >= claims.exp) return { joined: false, reason: "token expired" };
      if (room.participants.length >= (typeof maxParticipants === "number" ? maxParticipants : 200)) {
        return { joined: false, reason: "room full" };
      }
      const participant: FakeDailyParticipant = {
        sessionId: randomUUID(),
        userId: typeof claims.ud === "string" ? claims.ud : undefined,
        owner: claims.o === true,
        joinedAt: at,
      };
      room.participants.push(participant);
      return { joined: true, participant };
    },
    leave(roomName, participant, at) {
      const room = rooms.get(roomName);
      if (room) room.participants = room.participants.filter((p) => p.sessionId !== participant.sessionId);
      return Math.floor(seconds(at) - seconds(participant.joinedAt));
    },
    presenceEvent(type, roomName, participant, { leftAt, sentAt = new Date() } = {}) {
      const joinedAt = Math.round(participant.joinedAt.getTime()) / 1000;
      return JSON.stringify({
        version: "1.0.0",
        type,
        id: `ptcpt-${type === "participant.joined" ? "join" : "left"}-${participant.sessionId}-${participant.joinedAt.getTime()}`,
        payload: {
          room: roomName,
          ...(participant.userId === undefined ? {} : { user_id: participant.userId }),
          session_id: participant.sessionId,
          joined_at: joinedAt,
          ...(type === "participant.left" && leftAt
            ? { duration: Math.floor(seconds(leftAt) - seconds(participant.joinedAt)) }
            : {}),
          will_eject_at: null,
          owner: participant.owner,
          permissions: { hasPresence: true, canSend: true, canReceive: { base: true }, canAdmin: participant.owner },
        },
        event_ts: sentAt.getTime() / 1000,
      });
    },
    resetFaults() {
      for (const routeFaults of Object.values(faults)) routeFaults.reset();
      lost.clear();
    },
  };
}
