import { createHash } from "node:crypto";
import { SignJWT } from "jose";
import { AccessToken, type VideoGrant, type WebhookEvent, WebhookReceiver } from "livekit-server-sdk";
import { createProviderHttp, ProviderHttpError } from "../http-client.js";
import { livekit } from "../livekit.js";
import {
  type CallBudget,
  CallbackRejectedError,
  type EjectRequest,
  type PresenceReport,
  type ProviderCallback,
  type ProviderCallObserver,
  type SessionRequest,
  type TokenRequest,
  type VideoProvider,
} from "../video-provider.js";

export interface LiveKitProviderOptions {
  /** LIVEKIT_URL: the server's HTTP(S) base, e.g. https://my-project.livekit.cloud */
  url: string;
  apiKey: string;
  apiSecret: string;
  timeoutMs: number;
  observe?: ProviderCallObserver;
  now?: () => Date;
}

/** An admin JWT authenticates one RoomService call (and its retries, all within a 15 s budget). */
const ADMIN_JWT_TTL_SECONDS = 5 * 60;
/** LiveKit refuses room names longer than this many bytes (its default `limit.max_room_name_length`). */
const MAX_ROOM_NAME_BYTES = 256;
/** ParticipantInfo.DisconnectReason.DUPLICATE_IDENTITY (livekit_models.proto). */
const DUPLICATE_IDENTITY = 2;

const PRESENCE_EVENTS: ReadonlyMap<string, PresenceReport["state"]> = new Map([
  ["participant_joined", "joined"],
  ["participant_left", "left"],
  // Sent instead of participant_left for a participant that never got its media connected.
  ["participant_connection_aborted", "left"],
]);

/**
 * The LiveKit room of an appointment: the same name for the same externalId,
 * so a creation retried after a lost answer lands on the same room (CreateRoom
 * answers with the existing room). An id too long for LiveKit's limit is
 * hashed, under a prefix that readable names never have.
 */
export function liveKitRoomName(externalId: string): string {
  const readable = `joinwindow-${externalId}`;
  if (Buffer.byteLength(readable, "utf8") <= MAX_ROOM_NAME_BYTES) return readable;
  return `joinwindow~sha256~${createHash("sha256").update(externalId, "utf8").digest("hex")}`;
}

/** LiveKit can always eject and report presence. */
export type LiveKitProvider = VideoProvider & Required<Pick<VideoProvider, "eject" | "readCallback">>;

const epochSeconds = (date: Date) => Math.floor(date.getTime() / 1000);

/**
 * LiveKit (API.md §8): rooms are created over RoomService (Twirp JSON), join
 * tokens are signed in the process with the API secret, participants are
 * removed with RemoveParticipant, and presence comes from LiveKit's signed
 * webhooks.
 */
export function createLiveKitProvider(options: LiveKitProviderOptions): LiveKitProvider {
  const { apiKey, apiSecret } = options;
  if (!apiKey || !apiSecret) throw new Error("LiveKit API key and secret are required");
  const twirpBase = `${options.url.replace(/\/+$/, "")}/twirp/livekit.RoomService`;
  const now = options.now ?? (() => new Date());
  const secretKey = new TextEncoder().encode(apiSecret);
  const http = createProviderHttp({ provider: livekit.name, timeoutMs: options.timeoutMs, observe: options.observe });
  const webhooks = new WebhookReceiver(apiKey, apiSecret);

  /** Signed as the SDK's RoomServiceClient signs its calls: iss = the key, nbf = now, the grant the method needs. */
  async function adminJwt(grant: VideoGrant): Promise<string> {
    const token = new AccessToken(apiKey, apiSecret, { ttl: ADMIN_JWT_TTL_SECONDS });
    token.addGrant(grant);
    return token.toJwt();
  }

  async function callRoomService<T>(
    method: string,
    payload: object,
    grant: VideoGrant,
    budget: CallBudget,
    operation: string,
    parse: (body: unknown) => T | undefined,
  ): Promise<T> {
    return http.request(
      {
        method: "POST",
        url: `${twirpBase}/${method}`,
        headers: {
          Authorization: `Bearer ${await adminJwt(grant)}`,
          "Content-Type": "application/json",
          Accept: "application/json",
        },
        body: JSON.stringify(payload),
      },
      budget,
      operation,
      parse,
    );
  }

  return {
    name: livekit.name,
    applicationId: null,
    remote: { sessions: livekit.capabilities.remoteSessions, tokens: livekit.capabilities.remoteTokens },

    async createSession(request: SessionRequest, budget: CallBudget) {
      const name = liveKitRoomName(request.externalId);
      // LiveKit closes a room nobody has joined after empty_timeout (5 min by default); sessions are
      // created when an appointment is booked, so the room is kept, with its cap, until the window closes.
      const untilClose = Math.ceil((request.closesAt.getTime() - now().getTime()) / 1000);
      const sessionId = await callRoomService(
        "CreateRoom",
        {
          name,
          max_participants: request.settings.maxParticipants,
          ...(untilClose > 0 ? { empty_timeout: Math.min(untilClose, 0xffffffff) } : {}),
        },
        { roomCreate: true },
        budget,
        "create_session",
        (room) => ((room as { name?: unknown } | null)?.name === name ? name : undefined),
      );
      return { sessionId };
    },

    async issueToken(request: TokenRequest) {
      const grant: VideoGrant = {
        room: request.sessionId,
        roomJoin: true,
        canPublish: true,
        canSubscribe: true,
        canPublishData: true,
        ...(request.role === "moderator" ? { roomAdmin: true } : {}),
      };
      // Not the SDK's AccessToken: it sets nbf to the signing time and exp from a relative ttl,
      // and has no jti; these claims are absolute (the join window) and the jti is the caller's.
      const token = await new SignJWT({ video: grant })
        .setProtectedHeader({ alg: "HS256" })
        .setIssuer(apiKey)
        .setSubject(request.userId)
        .setJti(request.tokenId)
        .setIssuedAt(epochSeconds(request.issuedAt))
        .setNotBefore(epochSeconds(request.notBefore))
        .setExpirationTime(epochSeconds(request.expiresAt))
        .sign(secretKey);
      return { token };
    },

    async eject(request: EjectRequest, budget: CallBudget) {
      // LiveKit removes by identity only, and a user who came back with a new token has taken that identity over.
      if (!request.byIdentity) return { removed: false };
      try {
        await callRoomService(
          "RemoveParticipant",
          { room: request.sessionId, identity: request.userId },
          { roomAdmin: true, room: request.sessionId },
          budget,
          "eject",
          (answer) => (answer !== null && typeof answer === "object" ? true : undefined),
        );
        return { removed: true };
      } catch (error) {
        // Twirp's not_found (404): the participant, or the room, is not there; not transient, so not retried.
        // The http client does not expose the Twirp code, so a bad_route 404 (a LIVEKIT_URL with a wrong
        // path) reads the same; createSession fails loudly on it.
        if (error instanceof ProviderHttpError && error.status === 404) return { removed: false };
        throw error;
      }
    },

    async readCallback(callback: ProviderCallback) {
      // LiveKit sends the bare JWT (no "Bearer"), carrying the SHA-256 of the body.
      const authorization = callback.headers.authorization;
      if (!authorization) throw new CallbackRejectedError("livekit webhook: no Authorization header");
      let event: WebhookEvent;
      try {
        event = await webhooks.receive(callback.rawBody, authorization);
      } catch {
        // The SDK's reasons stay out of the message: they are about a token we were sent.
        throw new CallbackRejectedError("livekit webhook: invalid signature or body");
      }
      const state = PRESENCE_EVENTS.get(event.event);
      const room = event.room?.name;
      const participant = event.participant;
      if (!state || !room || !participant?.identity) return [];
      // The old connection of someone who reconnected: the same identity is in the room again.
      if (state === "left" && participant.disconnectReason === DUPLICATE_IDENTITY) return [];
      const at = eventTime(state, event.createdAt, participant.joinedAt, participant.joinedAtMs);
      if (at === undefined) return [];
      return [{ sessionId: room, userId: participant.identity, state, at }];
    },
  };
}

/**
 * The most precise time of the event LiveKit gives: a join at the
 * participant's joinedAtMs (milliseconds); a leave at the event's createdAt,
 * which is whole seconds, so never before the join it ends (the core lets a
 * `left` win a tie with a `joined`).
 */
function eventTime(state: PresenceReport["state"], createdAt: bigint, joinedAt: bigint, joinedAtMs: bigint) {
  const joinedMs = joinedAtMs > 0n ? Number(joinedAtMs) : Number(joinedAt) * 1000;
  const createdMs = Number(createdAt) * 1000;
  const ms = state === "joined" ? joinedMs || createdMs : createdMs && Math.max(createdMs, joinedMs);
  return ms > 0 ? new Date(ms) : undefined;
}
