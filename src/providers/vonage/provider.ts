import { tokenGenerate } from "@vonage/jwt";
import { createProviderHttp, ProviderHttpError } from "../http-client.js";
import {
  type CallBudget,
  type EjectRequest,
  type ParticipantRole,
  type ProviderCallback,
  type ProviderCallObserver,
  ProviderUnavailableError,
  type SessionRequest,
  type TokenRequest,
  type VideoProvider,
} from "../video-provider.js";
import { vonage } from "../vonage.js";
import { connectionDataFor, createCallbackReader } from "./callbacks.js";
import { privateKeyProblem } from "./private-key.js";

export interface VonageProviderOptions {
  applicationId: string;
  /** The application's RSA private key, PEM. */
  privateKey: string;
  /** VONAGE_API_BASE, e.g. https://video.api.vonage.com */
  apiBase: string;
  timeoutMs: number;
  /**
   * The signature secret of the Session Monitoring callback (Vonage's "secure
   * callbacks"); without it every callback is refused.
   */
  signatureSecret?: string;
  observe?: ProviderCallObserver;
  now?: () => Date;
}

/** The application JWT only authenticates one REST call: keep it short-lived. */
const APPLICATION_JWT_TTL_SECONDS = 5 * 60;
/** Vonage refuses client tokens that expire more than 30 days ahead. */
const MAX_CLIENT_TOKEN_SECONDS = 30 * 24 * 60 * 60;

const VONAGE_ROLES: Record<ParticipantRole, "moderator" | "publisher"> = {
  moderator: "moderator",
  participant: "publisher",
};

/**
 * Vonage Video: sessions are created over REST (`POST /session/create`),
 * client tokens are signed locally exactly as @vonage/video's
 * `generateClientToken` does, so issuing a token never leaves the process.
 * Presence comes from the session-monitoring callbacks, which name each
 * connection's token id (its connection data); eject force-disconnects the
 * connections they reported.
 */
export function createVonageProvider(options: VonageProviderOptions): VideoProvider {
  const { applicationId, privateKey } = options;
  const keyProblem = privateKeyProblem(privateKey);
  if (!applicationId) throw new Error("Vonage application id is required");
  if (keyProblem) throw new Error(`Vonage private key must be ${keyProblem}`);
  const apiBase = options.apiBase.replace(/\/+$/, "");
  const now = options.now ?? (() => new Date());
  const http = createProviderHttp({ provider: vonage.name, timeoutMs: options.timeoutMs, observe: options.observe });
  const readCallback = createCallbackReader(options.signatureSecret);
  // ttl, not exp: tokenGenerate computes exp from its own clock, which also sets iat.
  const applicationJwt = () => tokenGenerate(applicationId, privateKey, { ttl: APPLICATION_JWT_TTL_SECONDS });

  /** True when the connection was disconnected, false when Vonage no longer knows it (404). */
  async function forceDisconnect(sessionId: string, connectionId: string, budget: CallBudget): Promise<boolean> {
    const [project, session, connection] = [applicationId, sessionId, connectionId].map(encodeURIComponent);
    const path = `/v2/project/${project}/session/${session}/connection/${connection}`;
    try {
      return await http.request(
        { method: "DELETE", url: `${apiBase}${path}`, headers: { Authorization: `Bearer ${applicationJwt()}` } },
        budget,
        "force_disconnect",
        // 204 No Content: nothing to read.
        () => true,
      );
    } catch (error) {
      if (!(error instanceof ProviderHttpError) || error.status === undefined) throw error;
      if (error.status === 404) return false;
      // Any other 4xx is a refusal (a key Vonage does not accept, an id it cannot read): retrying cannot help.
      if (error.status < 500 && error.status !== 429) throw new Error(error.message, { cause: error });
      throw error;
    }
  }

  return {
    name: vonage.name,
    applicationId,
    remote: { sessions: vonage.capabilities.remoteSessions, tokens: vonage.capabilities.remoteTokens },

    async createSession(request: SessionRequest, budget: CallBudget) {
      const form = new URLSearchParams({
        archiveMode: request.settings.recording ? "always" : "manual",
        // Routed media: needed for archiving and for more than two participants.
        "p2p.preference": "disabled",
      });
      const sessionId = await http.request(
        {
          method: "POST",
          url: `${apiBase}/session/create`,
          headers: {
            Authorization: `Bearer ${applicationJwt()}`,
            "Content-Type": "application/x-www-form-urlencoded",
            Accept: "application/json",
          },
          body: form.toString(),
        },
        budget,
        "create_session",
        (answer) => {
          const first: unknown = Array.isArray(answer) ? answer[0] : undefined;
          const id = (first as { session_id?: unknown } | undefined)?.session_id;
          return typeof id === "string" && id !== "" ? id : undefined;
        },
      );
      return { sessionId };
    },

    async issueToken(request: TokenRequest) {
      const exp = Math.floor(request.expiresAt.getTime() / 1000);
      // tokenGenerate compares exp with the real clock and silently swaps a past one for now + 15 min.
      const nowSeconds = Math.floor(Math.max(now().getTime(), Date.now()) / 1000);
      if (exp <= nowSeconds) throw new Error("Vonage client token: expiresAt is not in the future");
      // Refused rather than clamped: a clamped token would end before closesAt without anyone noticing.
      // Join windows are at most a few days long (maxTokenLifetimeMs), so this never happens in practice.
      if (exp > Math.floor(now().getTime() / 1000) + MAX_CLIENT_TOKEN_SECONDS) {
        throw new Error("Vonage client token: expiresAt is more than 30 days ahead");
      }
      // The claim set of @vonage/video's generateClientToken (with its `data` option), with our jti.
      // No issued_at option: tokenGenerate would copy it into the claims as is.
      const token = tokenGenerate(applicationId, privateKey, {
        scope: "session.connect",
        session_id: request.sessionId,
        role: VONAGE_ROLES[request.role],
        initial_layout_class_list: "",
        exp,
        sub: "video",
        acl: { paths: { "/session/**": {} } },
        // Handed back as connection.data in the session-monitoring callbacks: how a connection maps to its token.
        connection_data: connectionDataFor(request.tokenId),
        jti: request.tokenId,
      });
      return { token };
    },

    async eject(request: EjectRequest, budget: CallBudget) {
      // In parallel: a participant is to be gone within seconds, and each answer is independent.
      const outcomes = await Promise.allSettled(
        request.connectionIds.map((connectionId) => forceDisconnect(request.sessionId, connectionId, budget)),
      );
      const failures = outcomes.flatMap((outcome) => (outcome.status === "rejected" ? [outcome.reason] : []));
      // A transient failure first: the job's retry can still remove that connection.
      if (failures.length > 0) throw failures.find((e) => e instanceof ProviderUnavailableError) ?? failures[0];
      return { removed: outcomes.some((outcome) => outcome.status === "fulfilled" && outcome.value) };
    },

    async readCallback(callback: ProviderCallback) {
      return readCallback(callback);
    },
  };
}
