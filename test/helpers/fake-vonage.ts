// A fake Vonage Video REST API (POST /session/create) on 127.0.0.1, strict
// about what the real one checks, with switchable faults.
import { randomBytes } from "node:crypto";
import { createVerifier } from "fast-jwt";
import { applyFault, type FakeServer, RouteFaults, sendJson, sendMalformed, startFakeServer } from "./fake-server.js";

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
}

const ARCHIVE_MODES = new Set(["manual", "always"]);
const P2P_PREFERENCES = new Set(["enabled", "disabled"]);

export async function startFakeVonage(options: FakeVonageOptions): Promise<FakeVonage> {
  const sessions: string[] = [];
  const createSession = new RouteFaults();
  const verify = createVerifier({ key: options.publicKey, algorithms: ["RS256"] });
  const vonageError = (status: number, message = "Error") => ({ code: -1, message, description: message, status });

  const server = await startFakeServer(async (request, res) => {
    if (request.method !== "POST" || request.path !== "/session/create") {
      return sendJson(res, 404, vonageError(404, "Not found"));
    }
    const fault = await applyFault(createSession.take(), res, (status) => vonageError(status));
    if (fault === "answered") return;

    // Vonage answers 403 to a missing or invalid application JWT.
    const match = /^Bearer (\S+)$/.exec(request.headers.authorization ?? "");
    if (!match?.[1]) return sendJson(res, 403, vonageError(403, "Missing JWT"));
    let claims: Record<string, unknown>;
    try {
      claims = verify(match[1]) as Record<string, unknown>;
    } catch {
      return sendJson(res, 403, vonageError(403, "Invalid JWT"));
    }
    if (claims.application_id !== options.applicationId) {
      return sendJson(res, 403, vonageError(403, "Wrong application"));
    }
    if (typeof claims.exp !== "number" || typeof claims.iat !== "number" || typeof claims.jti !== "string") {
      return sendJson(res, 403, vonageError(403, "Incomplete JWT"));
    }

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

  return { ...server, sessions, createSession };
}
