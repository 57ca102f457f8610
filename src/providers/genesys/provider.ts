import { genesys } from "../genesys.js";
import { createProviderHttp, ProviderHttpError } from "../http-client.js";
import { withinTime } from "../../support/within-time.js";
import type {
  CallBudget,
  ProviderCallObserver,
  SessionRequest,
  TokenRequest,
  VideoProvider,
} from "../video-provider.js";

export interface GenesysProviderOptions {
  /** GENESYS_LOGIN_BASE, e.g. https://login.mypurecloud.com */
  loginBase: string;
  /** GENESYS_API_BASE, e.g. https://api.mypurecloud.com */
  apiBase: string;
  clientId: string;
  clientSecret: string;
  timeoutMs: number;
  observe?: ProviderCallObserver;
  now?: () => Date;
}

/** Refresh this long before expires_in runs out (or 10 % of the lifetime, if shorter). */
const TOKEN_REFRESH_MARGIN_MS = 60_000;

interface AccessToken {
  token: string;
  /** Epoch ms (the `now` clock) from which a new token is fetched. */
  refreshAt: number;
}

/**
 * Genesys video, as the seed guide describes it (API.md §8): OAuth client
 * credentials, then `POST /api/v2/video/sessions` and
 * `POST /api/v2/video/sessions/{id}/tokens`. Both operations are remote.
 */
export function createGenesysProvider(options: GenesysProviderOptions): VideoProvider {
  const loginBase = options.loginBase.replace(/\/+$/, "");
  const apiBase = options.apiBase.replace(/\/+$/, "");
  const now = options.now ?? (() => new Date());
  const http = createProviderHttp({ provider: genesys.name, timeoutMs: options.timeoutMs, observe: options.observe });
  // Genesys's own examples send the id and secret as is (not form-encoded first, as RFC 6749 §2.3.1 suggests).
  const basic = Buffer.from(`${options.clientId}:${options.clientSecret}`).toString("base64");

  let cached: AccessToken | undefined;
  // Single flight: concurrent callers share one token request.
  let pending: Promise<string> | undefined;

  async function fetchAccessToken(budget: CallBudget): Promise<string> {
    const requestedAt = now().getTime();
    const answer = await http.request(
      {
        method: "POST",
        url: `${loginBase}/oauth/token`,
        headers: {
          Authorization: `Basic ${basic}`,
          "Content-Type": "application/x-www-form-urlencoded",
          Accept: "application/json",
        },
        body: "grant_type=client_credentials",
      },
      budget,
      "oauth_token",
      (body) => {
        const { access_token: token, expires_in: expiresIn } = (body ?? {}) as Record<string, unknown>;
        return typeof token === "string" && token !== "" && typeof expiresIn === "number" && expiresIn > 0
          ? { token, lifetimeMs: expiresIn * 1000 }
          : undefined;
      },
    );
    // From when we asked, not when it arrived: the token's clock started at most then.
    const margin = Math.min(TOKEN_REFRESH_MARGIN_MS, answer.lifetimeMs * 0.1);
    cached = { token: answer.token, refreshAt: requestedAt + answer.lifetimeMs - margin };
    return answer.token;
  }

  function accessToken(budget: CallBudget): Promise<string> {
    if (cached && now().getTime() < cached.refreshAt) return Promise.resolve(cached.token);
    // The shared request runs on the budget of whoever started it; each caller still stops at its own deadline.
    pending ??= fetchAccessToken(budget).finally(() => {
      pending = undefined;
    });
    return withinBudget(pending, budget);
  }

  async function callApi<T>(
    path: string,
    payload: object,
    budget: CallBudget,
    operation: string,
    parse: (body: unknown) => T | undefined,
  ): Promise<T> {
    for (let round = 1; ; round++) {
      const token = await accessToken(budget);
      try {
        return await http.request(
          {
            method: "POST",
            url: `${apiBase}${path}`,
            headers: {
              Authorization: `Bearer ${token}`,
              "Content-Type": "application/json",
              Accept: "application/json",
            },
            body: JSON.stringify(payload),
          },
          budget,
          operation,
          parse,
        );
      } catch (error) {
        // Revoked or expired early: drop the token (unless someone already replaced it) and try once more.
        if (round === 1 && error instanceof ProviderHttpError && error.status === 401) {
          if (cached?.token === token) cached = undefined;
          continue;
        }
        throw error;
      }
    }
  }

  return {
    name: genesys.name,
    applicationId: null,
    remote: { sessions: genesys.capabilities.remoteSessions, tokens: genesys.capabilities.remoteTokens },

    async createSession(request: SessionRequest, budget: CallBudget) {
      const sessionId = await callApi(
        "/api/v2/video/sessions",
        {
          name: `Appointment-${request.externalId}`,
          description: `Video appointment ${request.externalId}`,
          recordingEnabled: request.settings.recording,
          waitingRoomEnabled: request.settings.waitingRoom,
          maxParticipants: request.settings.maxParticipants,
        },
        budget,
        "create_session",
        (body) => nonEmptyString((body as { id?: unknown } | null)?.id),
      );
      return { sessionId };
    },

    async issueToken(request: TokenRequest, budget: CallBudget) {
      const token = await callApi(
        `/api/v2/video/sessions/${encodeURIComponent(request.sessionId)}/tokens`,
        { userId: request.userId, role: request.role, expirationTime: request.expiresAt.toISOString() },
        budget,
        "issue_token",
        (body) => nonEmptyString((body as { token?: unknown } | null)?.token),
      );
      return { token };
    },
  };
}

const nonEmptyString = (value: unknown) => (typeof value === "string" && value !== "" ? value : undefined);

/** `promise`, or a ProviderHttpError once the budget's deadline passes. */
function withinBudget<T>(promise: Promise<T>, budget: CallBudget): Promise<T> {
  return withinTime(promise, Math.max(0, budget.deadline - Date.now()), () => {
    throw new ProviderHttpError("genesys oauth token: no answer within the budget", "budget_exhausted");
  });
}
