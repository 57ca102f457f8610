// A fake LiveKit server on 127.0.0.1: RoomService CreateRoom and
// RemoveParticipant over Twirp JSON, authenticated as LiveKit does (admin JWT
// verified with the SDK's TokenVerifier, the grant each method needs), with
// rooms, participants and switchable faults; and LiveKit's signed webhooks.
//
// Modelled on livekit/livekit pkg/service (auth.go, roomservice.go,
// roomallocator.go) and the Twirp server livekit/protocol generates
// (livekit_room.twirp.go); what it leaves out is listed in the provider's
// test file.
import { createHash, randomBytes } from "node:crypto";
import type { ServerResponse } from "node:http";
import { decodeJwt } from "jose";
import { AccessToken, type ClaimGrants, TokenVerifier, type VideoGrant, WebhookEvent } from "livekit-server-sdk";
import { applyFault, type FakeServer, RouteFaults, sendJson, sendMalformed, startFakeServer } from "./fake-server.js";

export interface FakeLiveKitOptions {
  apiKey: string;
  apiSecret: string;
}

export interface FakeRoom {
  sid: string;
  name: string;
  emptyTimeout: number;
  departureTimeout: number;
  maxParticipants: number;
  /** Epoch seconds. */
  creationTime: number;
  /** Identities connected to the room. */
  participants: Set<string>;
}

/** A RoomService call that passed authentication and validation, as the server decoded it. */
export interface FakeLiveKitCall {
  method: "CreateRoom" | "RemoveParticipant";
  /** The request's fields under their proto names (snake_case), whichever form was sent. */
  request: Record<string, unknown>;
  /** The admin JWT's claims, as the SDK's TokenVerifier read them. */
  claims: ClaimGrants;
}

export interface FakeLiveKit extends FakeServer {
  rooms: Map<string, FakeRoom>;
  calls: FakeLiveKitCall[];
  /** Faults of each route, applied before authentication (as a proxy or an overloaded node would). */
  createRoom: RouteFaults;
  removeParticipant: RouteFaults;
  /** Someone connects with `identity`; like LiveKit, joining a room that does not exist creates it. */
  join(room: string, identity: string): void;
  /** Forgets rooms, calls, recorded requests and faults. */
  reset(): void;
}

const SERVICE_PREFIX = "/twirp/livekit.RoomService/";
/** livekit/livekit config defaults: `room.empty_timeout`, `room.departure_timeout`, `limit.max_room_name_length`. */
const DEFAULT_EMPTY_TIMEOUT = 300;
const DEFAULT_DEPARTURE_TIMEOUT = 20;
const MAX_ROOM_NAME_BYTES = 256;
/** The server verifies API tokens with golang-jwt's leeway of one minute (protocol auth/verifier.go). */
const TOKEN_LEEWAY_SECONDS = 60;

/** Twirp's error codes and the HTTP status each one is sent with. */
const TWIRP_STATUS = {
  bad_route: 404,
  malformed: 400,
  invalid_argument: 400,
  unauthenticated: 401,
  not_found: 404,
  resource_exhausted: 429,
  internal: 500,
  unavailable: 503,
} as const;
type TwirpCode = keyof typeof TWIRP_STATUS;

const twirpError = (code: TwirpCode, msg: string) => ({ code, msg });
const sendTwirpError = (res: ServerResponse, code: TwirpCode, msg: string) =>
  sendJson(res, TWIRP_STATUS[code], twirpError(code, msg));
/** What a fault's status looks like from a Twirp server. */
const faultError = (status: number) =>
  twirpError(status === 429 ? "resource_exhausted" : status === 503 ? "unavailable" : "internal", `HTTP ${status}`);

/** LiveKit's auth middleware answers in plain text, before Twirp sees the request. */
function sendPlain(res: ServerResponse, status: number, text: string) {
  if (res.destroyed) return;
  res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8" });
  res.end(text);
}

type FieldType = "string" | "uint32" | "int64" | "bool" | "object" | "array";
/** Proto name → type, for the fields of a request message that this fake reads or checks. */
type MessageFields = Record<string, FieldType>;

const CREATE_ROOM_REQUEST: MessageFields = {
  name: "string",
  room_preset: "string",
  empty_timeout: "uint32",
  departure_timeout: "uint32",
  max_participants: "uint32",
  node_id: "string",
  metadata: "string",
  tags: "object",
  egress: "object",
  min_playout_delay: "uint32",
  max_playout_delay: "uint32",
  sync_streams: "bool",
  replay_enabled: "bool",
  agents: "array",
};
const ROOM_PARTICIPANT_IDENTITY: MessageFields = { room: "string", identity: "string", revoke_token_ts: "int64" };

const camelCase = (protoName: string) =>
  protoName.replace(/_([a-z])/g, (_match, letter: string) => letter.toUpperCase());

/**
 * Decodes a JSON request as Twirp's protojson does (DiscardUnknown): each field
 * under its proto name or its camelCase JSON name, unknown fields ignored,
 * a value of the wrong type (or a field given twice) refused. Numbers of the
 * 64-bit and unsigned types may come as strings. Returns the fields by proto
 * name, or undefined when the server would answer `malformed`.
 */
function decodeMessage(body: string, fields: MessageFields): Record<string, unknown> | undefined {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) return undefined;
  const given = json as Record<string, unknown>;
  const decoded: Record<string, unknown> = {};
  for (const [protoName, type] of Object.entries(fields)) {
    const names = [...new Set([protoName, camelCase(protoName)])].filter((name) => name in given);
    if (names.length > 1) return undefined;
    const name = names[0];
    if (name === undefined || given[name] === null) continue;
    const value = decodeValue(given[name], type);
    if (value === undefined) return undefined;
    decoded[protoName] = value;
  }
  return decoded;
}

function decodeValue(value: unknown, type: FieldType): unknown {
  switch (type) {
    case "string":
      return typeof value === "string" ? value : undefined;
    case "bool":
      return typeof value === "boolean" ? value : undefined;
    case "object":
      return value !== null && typeof value === "object" && !Array.isArray(value) ? value : undefined;
    case "array":
      return Array.isArray(value) ? value : undefined;
    case "uint32":
    case "int64": {
      const number = typeof value === "string" && /^-?\d+$/.test(value) ? Number(value) : value;
      if (typeof number !== "number" || !Number.isInteger(number)) return undefined;
      if (type === "uint32" && (number < 0 || number > 0xffffffff)) return undefined;
      return number;
    }
  }
}

/** A Room as LiveKit's Twirp server writes it: proto field names, every field, 64-bit integers as strings. */
function roomJson(room: FakeRoom) {
  return {
    sid: room.sid,
    name: room.name,
    empty_timeout: room.emptyTimeout,
    departure_timeout: room.departureTimeout,
    max_participants: room.maxParticipants,
    creation_time: String(room.creationTime),
    creation_time_ms: String(room.creationTime * 1000),
    turn_password: "",
    enabled_codecs: [{ mime: "audio/opus", fmtp_line: "" }, { mime: "video/VP8", fmtp_line: "" }],
    metadata: "",
    num_participants: room.participants.size,
    num_publishers: 0,
    active_recording: false,
    version: null,
  };
}

export async function startFakeLiveKit(options: FakeLiveKitOptions): Promise<FakeLiveKit> {
  const rooms = new Map<string, FakeRoom>();
  const calls: FakeLiveKitCall[] = [];
  const createRoom = new RouteFaults();
  const removeParticipant = new RouteFaults();
  const verifier = new TokenVerifier(options.apiKey, options.apiSecret);

  const newRoom = (name: string): FakeRoom => ({
    sid: `RM_${randomBytes(9).toString("base64url")}`,
    name,
    emptyTimeout: DEFAULT_EMPTY_TIMEOUT,
    departureTimeout: DEFAULT_DEPARTURE_TIMEOUT,
    maxParticipants: 0,
    creationTime: Math.floor(Date.now() / 1000),
    participants: new Set(),
  });

  /**
   * LiveKit's APIKeyAuthMiddleware: a present Authorization header must be a
   * Bearer token of a known key that verifies; no header at all means no
   * grants (the method then refuses).
   */
  async function authenticate(
    authorization: string | undefined,
    res: ServerResponse,
  ): Promise<ClaimGrants | null | "answered"> {
    if (!authorization) return null;
    if (!authorization.startsWith("Bearer ")) {
      sendPlain(res, 401, "invalid authorization header. Must start with Bearer ");
      return "answered";
    }
    const token = authorization.slice("Bearer ".length);
    let issuer: unknown;
    try {
      issuer = decodeJwt(token).iss;
    } catch {
      sendPlain(res, 401, "invalid authorization token");
      return "answered";
    }
    if (issuer !== options.apiKey) {
      sendPlain(res, 401, "invalid API key");
      return "answered";
    }
    try {
      return await verifier.verify(token, TOKEN_LEEWAY_SECONDS);
    } catch (error) {
      sendPlain(res, 401, `invalid authorization token: ${(error as Error).message}`);
      return "answered";
    }
  }

  const server = await startFakeServer(async (request, res) => {
    const path = request.path.split("?")[0] ?? "";
    if (!path.startsWith(SERVICE_PREFIX)) {
      // Go's ServeMux, outside every Twirp service.
      return sendPlain(res, 404, "404 page not found\n");
    }
    const method = path.slice(SERVICE_PREFIX.length);
    const routes: Record<string, RouteFaults> = { CreateRoom: createRoom, RemoveParticipant: removeParticipant };
    const faults = routes[method];
    const fault = await applyFault(faults?.take(), res, faultError);
    if (fault === "answered") return;

    const claims = await authenticate(request.headers.authorization, res);
    if (claims === "answered") return;

    if (request.method !== "POST") {
      return sendTwirpError(res, "bad_route", `unsupported method "${request.method}" (only POST is allowed)`);
    }
    if (!faults) return sendTwirpError(res, "bad_route", `no handler for path "${path}"`);
    const contentType = request.headers["content-type"] ?? "";
    if (contentType.split(";")[0]?.trim().toLowerCase() !== "application/json") {
      // The real server also speaks application/protobuf; this fake only JSON.
      return sendTwirpError(res, "bad_route", `unexpected Content-Type: "${contentType}"`);
    }
    const video: VideoGrant = claims?.video ?? {};

    if (method === "CreateRoom") {
      const decoded = decodeMessage(request.body, CREATE_ROOM_REQUEST);
      if (!decoded) return sendTwirpError(res, "malformed", "the json request could not be decoded");
      if (!video.roomCreate) return sendTwirpError(res, "unauthenticated", "permissions denied");
      const name = (decoded.name as string | undefined) ?? "";
      if (name === "") return sendTwirpError(res, "invalid_argument", "no room name");
      if (Buffer.byteLength(name, "utf8") > MAX_ROOM_NAME_BYTES) {
        return sendTwirpError(res, "invalid_argument", "room name length exceeds limits");
      }
      calls.push({ method, request: decoded, claims: claims as ClaimGrants });
      // As StandardRoomAllocator.CreateRoom: an existing room is returned, updated with the non-zero settings.
      const room = rooms.get(name) ?? newRoom(name);
      rooms.set(name, room);
      const emptyTimeout = decoded.empty_timeout as number | undefined;
      const departureTimeout = decoded.departure_timeout as number | undefined;
      const maxParticipants = decoded.max_participants as number | undefined;
      if (emptyTimeout) room.emptyTimeout = emptyTimeout;
      if (departureTimeout) room.departureTimeout = departureTimeout;
      if (maxParticipants) room.maxParticipants = maxParticipants;
      if (fault?.kind === "malformed") return sendMalformed(res);
      if (fault?.kind === "missingId") return sendJson(res, 200, { ...roomJson(room), name: "" });
      return sendJson(res, 200, roomJson(room));
    }

    const decoded = decodeMessage(request.body, ROOM_PARTICIPANT_IDENTITY);
    if (!decoded) return sendTwirpError(res, "malformed", "the json request could not be decoded");
    const roomName = (decoded.room as string | undefined) ?? "";
    const identity = (decoded.identity as string | undefined) ?? "";
    // EnsureAdminPermission: roomAdmin, for this very room.
    if (!video.roomAdmin || video.room !== roomName) {
      return sendTwirpError(res, "unauthenticated", "permissions denied");
    }
    calls.push({ method: "RemoveParticipant", request: decoded, claims: claims as ClaimGrants });
    const participants = rooms.get(roomName)?.participants;
    if (!participants?.delete(identity)) return sendTwirpError(res, "not_found", "participant does not exist");
    if (fault?.kind === "malformed") return sendMalformed(res);
    return sendJson(res, 200, {});
  });

  return {
    ...server,
    rooms,
    calls,
    createRoom,
    removeParticipant,
    join(room, identity) {
      const existing = rooms.get(room) ?? newRoom(room);
      rooms.set(room, existing);
      existing.participants.add(identity);
    },
    reset() {
      rooms.clear();
      calls.length = 0;
      server.requests.length = 0;
      createRoom.reset();
      removeParticipant.reset();
    },
  };
}

export type ParticipantEventName = "participant_joined" | "participant_left" | "participant_connection_aborted";

export interface ParticipantEventOptions {
  event: ParticipantEventName | "room_started" | "track_published" | (string & {});
  room: string;
  identity: string;
  /** When LiveKit emitted the event (sent in whole seconds). */
  createdAt: Date;
  /** When the participant joined (sent in seconds and in milliseconds). */
  joinedAt: Date;
  /** A DisconnectReason name, e.g. "CLIENT_INITIATED", "DUPLICATE_IDENTITY" (left events). */
  disconnectReason?: string;
}

/**
 * The body LiveKit posts for a participant event: a WebhookEvent written by
 * protojson with its defaults (camelCase names, 64-bit integers as strings,
 * enums by name, default values left out), as livekit/protocol's URLNotifier
 * sends it. Built through the SDK's WebhookEvent, so a field LiveKit does not
 * have is an error here.
 */
export function liveKitParticipantEvent(options: ParticipantEventOptions): string {
  const seconds = (date: Date) => String(Math.floor(date.getTime() / 1000));
  const left = options.event !== "participant_joined";
  return WebhookEvent.fromJson({
    event: options.event,
    id: `EV_${randomBytes(9).toString("base64url")}`,
    createdAt: seconds(options.createdAt),
    room: {
      sid: `RM_${createHash("sha256").update(options.room).digest("base64url").slice(0, 12)}`,
      name: options.room,
      emptyTimeout: DEFAULT_EMPTY_TIMEOUT,
      departureTimeout: DEFAULT_DEPARTURE_TIMEOUT,
      maxParticipants: 2,
      creationTime: seconds(options.joinedAt),
      creationTimeMs: String(options.joinedAt.getTime()),
      numParticipants: left ? 0 : 1,
    },
    participant: {
      sid: `PA_${randomBytes(9).toString("base64url")}`,
      identity: options.identity,
      state: left ? "DISCONNECTED" : "ACTIVE",
      joinedAt: seconds(options.joinedAt),
      joinedAtMs: String(options.joinedAt.getTime()),
      version: 3,
      permission: { canSubscribe: true, canPublish: true, canPublishData: true },
      region: "local",
      isPublisher: true,
      ...(options.disconnectReason ? { disconnectReason: options.disconnectReason } : {}),
    },
  }).toJsonString();
}

export interface SignedWebhook {
  body: string;
  /** Lower-case names, as the route hands them to readCallback. */
  headers: { authorization: string; "content-type": string };
}

/**
 * Signs `body` as LiveKit does (livekit/protocol webhook/url_notifier.go): a
 * JWT made with the API secret, iss = the API key, valid 5 minutes, whose
 * `sha256` claim is the base64 SHA-256 of the body; sent as the bare token in
 * Authorization (no "Bearer"), with Content-Type application/webhook+json.
 */
export async function signLiveKitWebhook(
  body: string,
  credentials: { apiKey: string; apiSecret: string },
): Promise<SignedWebhook> {
  const token = new AccessToken(credentials.apiKey, credentials.apiSecret, { ttl: "5m" });
  token.sha256 = createHash("sha256").update(body, "utf8").digest("base64");
  return {
    body,
    headers: { authorization: await token.toJwt(), "content-type": "application/webhook+json" },
  };
}
