/**
 * The join experience as a page component on top of the client: the
 * appointment's time in the viewer's zone and in its own, a live countdown, a
 * Join button that works only inside the caller's window, a message for every
 * state of API.md §3 (a calm "Waiting for the host…" while the customer is
 * held in the waiting room, joining by itself once the agent is in), the prompt to leave another appointment (naming whom
 * and when), and after joining the place where a video SDK mounts, in plain
 * words for a patient (the session's technical details only for the agent,
 * folded away). The page at /join/{id} uses it; a portal can mount it in its
 * own page.
 *
 * Everything is built with the DOM API and textContent (nothing is parsed as
 * HTML), so the strict Content-Security-Policy of the page holds.
 */
import { createJoinClient, type JoinClient, type JoinGrant, type JoinState, type OtherAppointment, type RetryReason } from "./joinwindow.js";

export interface JoinUiOptions {
  baseUrl: string;
  externalId: string;
  getToken: () => string | Promise<string>;
  /** Starts the video SDK in `mount`; by default a placeholder says where it would appear. */
  onToken?: (grant: JoinGrant, mount: HTMLElement) => void | Promise<void>;
}

const RETRY_MESSAGES: Record<RetryReason, string> = {
  too_early: "The room is about to open. You will be connected automatically.",
  provider_unavailable: "The video service is not responding. Trying again automatically.",
  rate_limited: "Too many attempts in a short time. Trying again automatically.",
  not_ready: "The service is starting up. Trying again automatically.",
  network_error: "The service cannot be reached. Check your connection; trying again automatically.",
};

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

const viewerZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone;

function formatDateTime(date: Date, timeZone: string): string {
  return new Intl.DateTimeFormat(undefined, {
    weekday: "long",
    day: "numeric",
    month: "long",
    year: "numeric",
    hour: "numeric",
    minute: "2-digit",
    timeZone,
    timeZoneName: "short",
  }).format(date);
}

function formatTime(date: Date, timeZone: string): string {
  return new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit", timeZone, timeZoneName: "short" }).format(date);
}

/** The collision prompt: who and when if the other appointment could be read, a neutral sentence if not. */
function collisionMessage(other: OtherAppointment | null): string {
  const where = !other
    ? "another appointment"
    : `your appointment ${other.counterpartName ? `with ${other.counterpartName} ` : ""}on ${formatDateTime(other.startsAt, viewerZone())}`;
  return `You are still connected to ${where}. Joining this one disconnects you from it.`;
}

/** "1:05:09", "4:59" or "2 d 3:04:05": what a countdown shows. */
export function formatCountdown(ms: number): string {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const days = Math.floor(total / 86_400);
  const hours = Math.floor((total % 86_400) / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  const two = (n: number) => String(n).padStart(2, "0");
  if (days > 0) return `${days} d ${hours}:${two(minutes)}:${two(seconds)}`;
  if (hours > 0) return `${hours}:${two(minutes)}:${two(seconds)}`;
  return `${minutes}:${two(seconds)}`;
}

/** The same duration for `<time datetime>`: "PT1H5M9S". */
function isoDuration(ms: number): string {
  const total = Math.max(0, Math.ceil(ms / 1000));
  return `PT${Math.floor(total / 3600)}H${Math.floor((total % 3600) / 60)}M${total % 60}S`;
}

export function mountJoinUi(container: HTMLElement, options: JoinUiOptions): JoinClient {
  const who = element("p", { class: "who" });
  const times = element("dl", { class: "times" });
  const timerLabel = element("span", { id: "jw-timer-label", class: "timer-label" });
  const timerValue = element("time", { class: "timer-value" });
  const timer = element("div", { class: "timer", role: "timer", "aria-labelledby": "jw-timer-label" }, timerLabel, " ", timerValue);
  const status = element("p", { id: "jw-status", class: "status", role: "status", "aria-live": "polite", tabindex: "-1" });
  const joinButton = element("button", { type: "button", class: "primary", id: "jw-join", "aria-describedby": "jw-status" }, "Join");

  const collisionTitle = element("h2", { id: "jw-collision-title", tabindex: "-1" }, "You are in another appointment");
  const collisionText = element("p");
  const supersedeButton = element("button", { type: "button", class: "primary", id: "jw-supersede" }, "Leave it and join this one");
  const stayButton = element("button", { type: "button", class: "secondary", id: "jw-stay" }, "Stay in the other one");
  const collision = element(
    "section",
    { class: "collision", "aria-labelledby": "jw-collision-title", hidden: "" },
    collisionTitle,
    collisionText,
    element("div", { class: "actions" }, supersedeButton, stayButton),
  );

  const sessionTitle = element("h2", { id: "jw-session-title", tabindex: "-1" }, "You have joined the appointment");
  const video = element("div", { id: "video", class: "video", role: "region", "aria-label": "Video" });
  // What support may ask an agent for; a patient is never shown it.
  const sessionDetails = element("dl", { class: "session-details" });
  const technical = element("details", { class: "technical", hidden: "" }, element("summary", {}, "Technical details"), sessionDetails);
  const session = element("section", { class: "session", "aria-labelledby": "jw-session-title", hidden: "" }, sessionTitle, video, technical);

  const card = element(
    "section",
    { class: "card", "aria-label": "Appointment" },
    who,
    times,
    timer,
    status,
    element("div", { class: "actions" }, joinButton),
    collision,
    session,
  );
  container.append(card);

  const client = createJoinClient({
    baseUrl: options.baseUrl,
    externalId: options.externalId,
    getToken: options.getToken,
    onToken: async (grant) => {
      video.replaceChildren();
      if (options.onToken) await options.onToken(grant, video);
      else video.append(element("p", {}, "Your video call would start here: this page has no video player connected."));
    },
  });

  let shownAppointment = "";
  let retryTicker: ReturnType<typeof setInterval> | undefined;

  function renderAppointment(state: JoinState) {
    const appointment = state.appointment;
    const key = appointment ? JSON.stringify([appointment.startsAt, appointment.endsAt, appointment.timeZone, state.role]) : "";
    if (key === shownAppointment) return;
    shownAppointment = key;
    times.replaceChildren();
    who.textContent = "";
    if (!appointment) return;
    const other = state.role === "moderator" ? appointment.customer : state.role === "participant" ? appointment.agent : null;
    who.textContent = other?.name ? `Your appointment with ${other.name}` : `Appointment ${appointment.externalId}`;
    const start = new Date(appointment.startsAt);
    const end = new Date(appointment.endsAt);
    const row = (term: string, zone: string) => {
      const value = element("time", { datetime: appointment.startsAt }, `${formatDateTime(start, zone)} – ${formatTime(end, zone)}`);
      times.append(element("div", { class: "time-row" }, element("dt", {}, term), element("dd", {}, value)));
    };
    const mine = viewerZone();
    const theirs = appointment.timeZone;
    if (theirs && theirs !== mine) {
      row(`Your time (${mine})`, mine);
      row(`Appointment's time zone (${theirs})`, theirs);
    } else {
      row(theirs ? `Time (${theirs}, your time zone too)` : `Your time (${mine})`, mine);
    }
  }

  function setStatus(message: string) {
    // Only a change is written, so that the live region announces each message once.
    if (status.textContent !== message) status.textContent = message;
  }

  function showTimer(label: string | null, ms = 0) {
    timer.hidden = label === null;
    if (label === null) return;
    timerLabel.textContent = label;
    timerValue.textContent = formatCountdown(ms);
    timerValue.setAttribute("datetime", isoDuration(ms));
  }

  function setButton(mode: "join" | "try-again" | "hidden", enabled: boolean, busy = false) {
    const hadFocus = document.activeElement === joinButton;
    joinButton.hidden = mode === "hidden";
    joinButton.textContent = mode === "try-again" ? "Try again" : busy ? "Joining…" : "Join";
    // aria-disabled rather than disabled: the button keeps its focus and stays discoverable.
    joinButton.setAttribute("aria-disabled", String(!enabled));
    joinButton.setAttribute("aria-busy", String(busy));
    if (hadFocus && joinButton.hidden) status.focus();
  }

  function stopRetryTicker() {
    if (retryTicker !== undefined) clearInterval(retryTicker);
    retryTicker = undefined;
  }

  function render(state: JoinState) {
    renderAppointment(state);
    stopRetryTicker();
    const wasCollision = !collision.hidden;
    const wasJoined = !session.hidden;
    collision.hidden = state.status !== "collision";
    session.hidden = state.status !== "joined";
    card.dataset.state = state.status;
    const closesAt = state.closesAt ? formatTime(state.closesAt, viewerZone()) : "";
    switch (state.status) {
      case "loading":
        showTimer(null);
        setStatus("Loading your appointment…");
        setButton("join", false);
        break;
      case "waiting": {
        const opensAt = state.opensAt ? formatTime(state.opensAt, viewerZone()) : "";
        showTimer("The room opens for you in", state.msUntilOpen);
        setStatus(`The room opens for you at ${opensAt}. The Join button works from then on.`);
        setButton("join", false);
        break;
      }
      case "open":
        showTimer(null);
        setStatus(`The room is open until ${closesAt}. You can join now.`);
        setButton("join", true);
        break;
      case "joining":
        showTimer(null);
        setStatus("Connecting you to the appointment…");
        setButton("join", false, true);
        break;
      case "retrying": {
        const retryAt = state.retryAt.getTime();
        const tick = () => showTimer("Next attempt in", retryAt - Date.now());
        tick();
        retryTicker = setInterval(tick, 250);
        setStatus(state.operation === "join" ? RETRY_MESSAGES[state.reason] : `Cannot load the appointment yet. ${RETRY_MESSAGES[state.reason]}`);
        setButton("join", false, state.operation === "join");
        break;
      }
      case "waiting_for_host": {
        // Not a problem to report: the customer is early for the host, and the client keeps asking by itself.
        showTimer(null);
        setStatus(`Waiting for the host… You will be connected as soon as ${state.appointment?.agent.name ?? "your host"} arrives. Please keep this page open.`);
        setButton("hidden", false);
        break;
      }
      case "collision":
        showTimer(null);
        collisionText.textContent = collisionMessage(state.otherAppointment);
        setStatus("Joining this appointment would disconnect you from another one: choose below.");
        setButton("hidden", false);
        if (!wasCollision) collisionTitle.focus();
        break;
      case "joined": {
        showTimer(null);
        const s = state.session;
        const forAgent = s.role === "moderator";
        technical.hidden = !forAgent;
        sessionDetails.replaceChildren(
          ...(forAgent
            ? [
                ["Video provider", s.provider],
                ["Session", s.sessionId],
                ...(s.roomUrl ? [["Room", s.roomUrl]] : []),
                ["Token valid until", formatDateTime(new Date(s.expiresAt), viewerZone())],
              ]
            : []
          ).map(([term, value]) => element("div", { class: "detail-row" }, element("dt", {}, term ?? ""), element("dd", {}, value ?? ""))),
        );
        // The heading says "joined"; the status says what to do now.
        setStatus(`Keep this page open during the appointment. The room stays open until ${closesAt}.`);
        setButton("hidden", false);
        if (!wasJoined) sessionTitle.focus();
        break;
      }
      case "closed": {
        const closedAt = state.closedAt ? formatDateTime(state.closedAt, viewerZone()) : "";
        showTimer(null);
        setStatus(`This appointment has ended: the room closed on ${closedAt}.`);
        setButton("hidden", false);
        break;
      }
      case "cancelled":
        showTimer(null);
        setStatus("This appointment was cancelled. Please contact the organiser to book a new time.");
        setButton("hidden", false);
        break;
      case "blocked":
        showTimer(null);
        setStatus("Access to this appointment has been blocked. Please contact support if you think this is a mistake.");
        setButton("hidden", false);
        break;
      case "full":
        showTimer(null);
        setStatus("The room is full: the appointment allows no more participants right now.");
        setButton("try-again", true);
        break;
      case "not_found":
        showTimer(null);
        setStatus("We could not find this appointment for you. Check that you opened the link from your own invitation.");
        setButton("hidden", false);
        break;
      case "unauthenticated":
        showTimer(null);
        setStatus(
          "Your sign-in link is missing, invalid or has expired. For your security it works once per page load: open the link from your invitation again.",
        );
        setButton("hidden", false);
        break;
      case "error":
        showTimer(null);
        setStatus(
          state.problem.code === "video_start_failed"
            ? "The video could not be started. Try again."
            : `Something went wrong (${state.problem.code}). Try again.`,
        );
        setButton("try-again", true);
        break;
    }
  }

  joinButton.addEventListener("click", () => {
    if (joinButton.getAttribute("aria-disabled") === "true") return;
    const state = client.state;
    if (state.status === "error" && state.operation === "load") client.refresh();
    else client.join();
  });
  supersedeButton.addEventListener("click", () => client.confirmSupersede());
  stayButton.addEventListener("click", () => {
    client.dismissCollision();
    joinButton.focus();
  });
  // Timers are throttled in background tabs and stop while a laptop sleeps: read the appointment again on return.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") client.refresh();
  });

  client.subscribe(render);
  client.start();
  return client;
}
