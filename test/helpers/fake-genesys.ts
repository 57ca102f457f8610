// A fake of the Genesys video contract the seed guide describes (API.md §8):
// OAuth client credentials plus the two video endpoints, on one 127.0.0.1
// server, strict about credentials and payloads, with switchable faults.
import { randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import {
  applyFault,
  type FakeServer,
  RouteFaults,
  sendJson,
  sendMalformed,
  startFakeServer,
} from "./fake-server.js";

export interface FakeGenesysOptions {
  clientId: string;
  clientSecret: string;
  /** expires_in of the access tokens handed out (Genesys's default is 86400). */
  expiresInSeconds?: number;
}

export interface FakeGenesys extends FakeServer {
  /** Serves as both GENESYS_LOGIN_BASE and GENESYS_API_BASE. */
  url: string;
  /** Faults of POST /oauth/token, POST /api/v2/video/sessions and POST …/sessions/{id}/tokens. */
  oauthToken: RouteFaults;
  createSession: RouteFaults;
  issueToken: RouteFaults;
  /** Every access token handed out, in order. */
  accessTokens: string[];
  /** Every video token handed out, in order. */
  videoTokens: string[];
  /** Sessions created: id → payload. */
  sessions: Map<string, Record<string, unknown>>;
  /** Invalidates every access token handed out so far: the next API call gets 401. */
  expireAccessTokens(): void;
}

const SESSIONS_PATH = "/api/v2/video/sessions";
const TOKENS_PATH = /^\/api\/v2\/video\/sessions\/([^/]+)\/tokens$/;
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$/;
const ROLES = new Set(["moderator", "participant"]);

const apiError = (status: number, code = "error", message = code) => ({ message, code, status });

export async function startFakeGenesys(options: FakeGenesysOptions): Promise<FakeGenesys> {
  const expiresIn = options.expiresInSeconds ?? 86_400;
  const oauthToken = new RouteFaults();
  const createSession = new RouteFaults();
  const issueToken = new RouteFaults();
  const accessTokens: string[] = [];
  const videoTokens: string[] = [];
  const sessions = new Map<string, Record<string, unknown>>();
  // access token → expiry (epoch ms, real clock)
  const valid = new Map<string, number>();
  const credentials = Buffer.from(`${options.clientId}:${options.clientSecret}`).toString("base64");
  const expectedBasic = Buffer.from(`Basic ${credentials}`);

  const authorized = (authorization: string | undefined) => {
    const token = /^Bearer (\S+)$/.exec(authorization ?? "")?.[1];
    const expiresAt = token === undefined ? undefined : valid.get(token);
    return expiresAt !== undefined && expiresAt > Date.now();
  };
  const isJson = (contentType: string | undefined) => (contentType ?? "").startsWith("application/json");
  const parseObject = (body: string): Record<string, unknown> | undefined => {
    try {
      const value: unknown = JSON.parse(body);
      return value !== null && typeof value === "object" && !Array.isArray(value)
        ? (value as Record<string, unknown>)
        : undefined;
    } catch {
      return undefined;
    }
  };

  const server = await startFakeServer(async (request, res) => {
    if (request.method === "POST" && request.path === "/oauth/token") {
      const fault = await applyFault(oauthToken.take(), res, (status) => ({ error: `http_${status}` }));
      if (fault === "answered") return;
      const given = Buffer.from(request.headers.authorization ?? "");
      if (given.length !== expectedBasic.length || !timingSafeEqual(given, expectedBasic)) {
        return sendJson(res, 401, { error: "invalid_client", description: "client authentication failed" });
      }
      if (!(request.headers["content-type"] ?? "").startsWith("application/x-www-form-urlencoded")) {
        return sendJson(res, 400, { error: "invalid_request", description: "expected a form" });
      }
      if (new URLSearchParams(request.body).get("grant_type") !== "client_credentials") {
        return sendJson(res, 400, { error: "unsupported_grant_type" });
      }
      if (fault?.kind === "malformed") return sendMalformed(res);
      const token = `gat_${randomBytes(24).toString("base64url")}`;
      if (fault?.kind === "missingId") return sendJson(res, 200, { token_type: "bearer", expires_in: expiresIn });
      accessTokens.push(token);
      valid.set(token, Date.now() + expiresIn * 1000);
      return sendJson(res, 200, { access_token: token, token_type: "bearer", expires_in: expiresIn });
    }

    if (request.method === "POST" && request.path === SESSIONS_PATH) {
      const fault = await applyFault(createSession.take(), res, (status) => apiError(status));
      if (fault === "answered") return;
      if (!authorized(request.headers.authorization)) return sendJson(res, 401, apiError(401, "bad.credentials"));
      if (!isJson(request.headers["content-type"])) return sendJson(res, 415, apiError(415, "unsupported.media.type"));
      const body = parseObject(request.body);
      const problem =
        body === undefined
          ? "body must be a JSON object"
          : typeof body.name !== "string" || body.name === ""
            ? "name must be a non-empty string"
            : body.description !== undefined && typeof body.description !== "string"
              ? "description must be a string"
              : typeof body.recordingEnabled !== "boolean"
                ? "recordingEnabled must be a boolean"
                : typeof body.waitingRoomEnabled !== "boolean"
                  ? "waitingRoomEnabled must be a boolean"
                  : !Number.isInteger(body.maxParticipants) || (body.maxParticipants as number) < 1
                    ? "maxParticipants must be a positive integer"
                    : undefined;
      if (problem || body === undefined) return sendJson(res, 400, apiError(400, "bad.request", problem));
      if (fault?.kind === "malformed") return sendMalformed(res);
      const id = randomUUID();
      if (fault?.kind === "missingId") return sendJson(res, 200, { name: body.name });
      sessions.set(id, body);
      return sendJson(res, 200, { id, ...body, selfUri: `${SESSIONS_PATH}/${id}` });
    }

    const tokens = request.method === "POST" ? TOKENS_PATH.exec(request.path) : null;
    if (tokens) {
      const fault = await applyFault(issueToken.take(), res, (status) => apiError(status));
      if (fault === "answered") return;
      if (!authorized(request.headers.authorization)) return sendJson(res, 401, apiError(401, "bad.credentials"));
      if (!sessions.has(decodeURIComponent(tokens[1] ?? ""))) return sendJson(res, 404, apiError(404, "not.found"));
      if (!isJson(request.headers["content-type"])) return sendJson(res, 415, apiError(415, "unsupported.media.type"));
      const body = parseObject(request.body);
      const expiration = typeof body?.expirationTime === "string" ? body.expirationTime : "";
      const problem =
        body === undefined
          ? "body must be a JSON object"
          : typeof body.userId !== "string" || body.userId === ""
            ? "userId must be a non-empty string"
            : typeof body.role !== "string" || !ROLES.has(body.role)
              ? "role must be moderator or participant"
              : !ISO_UTC.test(expiration) || Number.isNaN(Date.parse(expiration))
                ? "expirationTime must be an ISO 8601 UTC time"
                : Date.parse(expiration) <= Date.now()
                  ? "expirationTime must be in the future"
                  : undefined;
      if (problem) return sendJson(res, 400, apiError(400, "bad.request", problem));
      if (fault?.kind === "malformed") return sendMalformed(res);
      if (fault?.kind === "missingId") return sendJson(res, 200, { expirationTime: expiration });
      const token = `gvt_${randomBytes(24).toString("base64url")}`;
      videoTokens.push(token);
      return sendJson(res, 200, { token, expirationTime: expiration });
    }

    return sendJson(res, 404, apiError(404, "not.found"));
  });

  return {
    ...server,
    oauthToken,
    createSession,
    issueToken,
    accessTokens,
    videoTokens,
    sessions,
    expireAccessTokens: () => valid.clear(),
  };
}
