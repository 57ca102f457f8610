// A fake Vonage Video REST API (POST /session/create, force disconnect) on
// 127.0.0.1, strict about what the real one checks, with switchable faults;
// and session-monitoring callbacks built and signed as Vonage sends them.
import { createHash, randomBytes, randomUUID } from "node:crypto";
import type { ServerResponse } from "node:http";
import { createSigner, createVerifier } from "fast-jwt";
import {
  applyFault,
  type FakeServer,
  type RecordedRequest,
  RouteFaults,
  sendJson,
  sendMalformed,
  startFakeServer,
} from "./fake-server.js";

// The provider tests import these from here.

export interface FakeVonageOptions {
  applicationId: string;
  /** The application's public key (PEM): application JWTs must verify with it. */
  publicKey: string;
}

export interface FakeVonage extends FakeServer {
  /** Session ids handed out, in order. */
  sessions: string[];
  /** Faults of POST /session/create. */
  createSession: RouteFaults;
  /** Connects a client to a session (created here or not); returns the connection id. */
  connect(sessionId: string, connectionId?: string): string;
  /** Open connections per session. */
  connections: Map<string, Set<string>>;
  /** Connections force-disconnected, in order. */
  disconnected: { sessionId: string; connectionId: string }[];
  /** Faults of DELETE /v2/project/{applicationId}/session/{sessionId}/connection/{connectionId}. */
  forceDisconnect: RouteFaults;
}

const ARCHIVE_MODES = new Set(["manual", "always"]);
const P2P_PREFERENCES = new Set(["enabled", "disabled"]);

const FORCE_DISCONNECT = /^\/v2\/project\/([^/]+)\/session\/([^/]+)\/connection\/([^/]+)$/;

export async function startFakeVonage(options: FakeVonageOptions): Promise<FakeVonage> {
  const sessions: string[] = [];
  const createSession = new RouteFaults();
  const forceDisconnect = new RouteFaults();
  const connections = new Map<string, Set<string>>();
  const disconnected: { sessionId: string; connectionId: string }[] = [];
  const verify = createVerifier({ key: options.publicKey, algorithms: ["RS256"] });
  const vonageError = (status: number, message = "Error") => ({ code: -1, message, description: message, status });

  /** Vonage answers 403 to a missing or invalid application JWT. False when it answered so. */
  const applicationJwtAccepted = (request: RecordedRequest, res: ServerResponse): boolean => {
    const refuse = (message: string) => {
      sendJson(res, 403, vonageError(403, message));
      return false;
    };
    const match = /^Bearer (\S+)$/.exec(request.headers.authorization ?? "");
    if (!match?.[1]) return refuse("Missing JWT");
    let claims: Record<string, unknown>;
    try {
      claims = verify(match[1]) as Record<string, unknown>;
    } catch {
      return refuse("Invalid JWT");
    }
    if (claims.application_id !== options.applicationId) return refuse("Wrong application");
    if (typeof claims.exp !== "number" || typeof claims.iat !== "number" || typeof claims.jti !== "string") {
      return refuse("Incomplete JWT");
    }
    return true;
  };

  const disconnect = async (request: RecordedRequest, res: ServerResponse, match: RegExpExecArray) => {
    const fault = await applyFault(forceDisconnect.take(), res, (status) => vonageError(status));
    if (fault === "answered") return;
    if (!applicationJwtAccepted(request, res)) return;
    const [project, sessionId, connectionId] = match.slice(1).map(decodeURIComponent) as [string, string, string];
    // The project in the path is the application the JWT is for, or the call is not authorized.
    if (project !== options.applicationId) return sendJson(res, 403, vonageError(403, "Wrong project"));
    const open = connections.get(sessionId);
    if (!open?.delete(connectionId)) {
      return sendJson(res, 404, vonageError(404, "The client is not connected to the session"));
    }
    disconnected.push({ sessionId, connectionId });
    res.writeHead(204).end();
  };

  const server = await startFakeServer(async (request, res) => {
    const forceDisconnectMatch = FORCE_DISCONNECT.exec(request.path);
    if (request.method === "DELETE" && forceDisconnectMatch) return disconnect(request, res, forceDisconnectMatch);
    if (request.method !== "POST" || request.path !== "/session/create") {
      return sendJson(res, 404, vonageError(404, "Not found"));
    }
    const fault = await applyFault(createSession.take(), res, (status) => vonageError(status));
    if (fault === "answered") return;
    if (!applicationJwtAccepted(request, res)) return;

    if (!(request.headers["content-type"] ?? "").startsWith("application/x-www-form-urlencoded")) {
      return sendJson(res, 400, vonageError(400, "Expected a form"));
    }
    const form = new URLSearchParams(request.body);
    const archiveMode = form.get("archiveMode");
    const p2p = form.get("p2p.preference");
    if (archiveMode === null || !ARCHIVE_MODES.has(archiveMode)) {
      return sendJson(res, 400, vonageError(400, "Invalid archiveMode"));
    }
    if (p2p === null || !P2P_PREFERENCES.has(p2p)) {
      return sendJson(res, 400, vonageError(400, "Invalid p2p.preference"));
    }
    if (archiveMode === "always" && p2p === "enabled") {
      return sendJson(res, 400, vonageError(400, "Archiving needs a routed session"));
    }

    if (fault?.kind === "malformed") return sendMalformed(res);
    const sessionId = `2_MX4${randomBytes(24).toString("base64url")}`;
    const entry = {
      session_id: sessionId,
      application_id: options.applicationId,
      create_dt: new Date().toUTCString(),
      media_server_url: "",
    };
    if (fault?.kind === "missingId") return sendJson(res, 200, [{ ...entry, session_id: undefined }]);
    sessions.push(sessionId);
    sendJson(res, 200, [entry]);
  });

  const connect = (sessionId: string, connectionId: string = randomUUID()) => {
    const open = connections.get(sessionId) ?? new Set<string>();
    connections.set(sessionId, open.add(connectionId));
    return connectionId;
  };

  return { ...server, sessions, createSession, connect, connections, disconnected, forceDisconnect };
}

export interface SessionMonitoringEvent {
  event: "connectionCreated" | "connectionDestroyed" | "streamCreated" | "streamDestroyed" | string;
  sessionId: string;
  /** The application (project) the session belongs to. */
  applicationId: string;
  connectionId: string;
  /** The connection data, from the token the client connected with (absent when the token had none). */
  data?: string;
  /** Epoch ms of the event; the connection's createdAt is a little earlier. */
  timestamp: number;
}

/**
 * A session-monitoring callback body as Vonage sends it (OpenTok REST
 * callback reference: sessionId, projectId, event, timestamp in ms, a
 * connection object; a stream object instead for stream events).
 */
export function sessionMonitoringBody(event: SessionMonitoringEvent): string {
  const connection: Record<string, unknown> = { id: event.connectionId, createdAt: event.timestamp - 150 };
  if (event.data !== undefined) connection.data = event.data;
  const body: Record<string, unknown> = {
    sessionId: event.sessionId,
    projectId: event.applicationId,
    event: event.event,
    timestamp: event.timestamp,
  };
  if (event.event.startsWith("stream")) {
    body.stream = { id: randomUUID(), connection, createdAt: event.timestamp, name: "", videoType: "camera" };
  } else {
    body.connection = connection;
    if (event.event === "connectionDestroyed") body.reason = "clientDisconnected";
  }
  return JSON.stringify(body);
}

/**
 * What Vonage's "secure callbacks" send: `Authorization: Bearer <JWT>`, HS256
 * with the callback's signature secret, claims iat, jti, iss, payload_hash
 * (hex SHA-256 of the body), api_key and application_id.
 */
export function signedCallback(
  rawBody: string,
  signatureSecret: string,
  claims: { applicationId: string; payloadHash?: string },
): { headers: Record<string, string>; rawBody: string; query: Record<string, string> } {
  const sign = createSigner({ key: signatureSecret, algorithm: "HS256", noTimestamp: true });
  const token = sign({
    iat: Math.floor(Date.now() / 1000),
    jti: randomUUID(),
    iss: "Vonage",
    payload_hash: claims.payloadHash ?? createHash("sha256").update(rawBody).digest("hex"),
    api_key: claims.applicationId,
    application_id: claims.applicationId,
  });
  return {
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    rawBody,
    query: {},
  };
}
