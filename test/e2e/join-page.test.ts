import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp } from "../helpers/app.js";
import {
  bearer,
  cancelledEvent,
  OPERATOR_SCOPES,
  type ScheduleOptions,
  scheduledEvent,
  signedDelivery,
  userJwt,
} from "../helpers/fixtures.js";
import { axeViolations, DESKTOP, launchChromium, openPage, PHONE, screenshot, type WatchedPage } from "./browser.js";

// Real browser, real server, real clock: appointments are booked relative to
// now, and every wait is for something the page shows, never a fixed sleep.
// What a page shows is checked against the booked appointment's own times,
// never against the clock at assertion time, which has moved on since.
const MINUTE = 60_000;
const TEST_TIMEOUT = 120_000;
// The page reads the server's clock from whole-second Date headers and redraws its countdown once a second.
const COUNTDOWN_TOLERANCE_S = 3;

/** "14:05" in `timeZone`, as the page writes times for the en-GB viewer. */
const hourMinute = (instant: string, timeZone: string) =>
  new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone }).format(new Date(instant));

/** The last millisecond of the minute before `ms`: a start booked there has its minute tick over before the page is read. */
const lastMillisecondBefore = (ms: number) => Math.floor(ms / MINUTE) * MINUTE - 1;

describe("the join page in Chromium", () => {
  let browser: Browser;
  let t: TestApp;
  let portal: Server;
  let portalOrigin: string;
  const pages: WatchedPage[] = [];
  const operator = bearer(userJwt("ops-1", { scope: OPERATOR_SCOPES, expiresInSeconds: 3600 }));

  beforeAll(async () => {
    // A patient portal on another origin (and another site: localhost, not 127.0.0.1) that embeds the client.
    portal = createServer((request, response) => {
      if (request.url === "/portal.js") {
        response.writeHead(200, { "content-type": "text/javascript" }).end(portalScript(t.url));
      } else {
        response.writeHead(200, { "content-type": "text/html" }).end(PORTAL_PAGE);
      }
    });
    await new Promise<void>((resolve) => portal.listen(0, "127.0.0.1", resolve));
    portalOrigin = `http://localhost:${(portal.address() as AddressInfo).port}`;
    [browser, t] = await Promise.all([launchChromium(), startApp({ RATE_LIMIT_JOIN_PER_MINUTE: "0", CORS_ORIGINS: portalOrigin })]);
    await t.listen();
  }, TEST_TIMEOUT);

  afterAll(async () => {
    await browser?.close();
    await t?.close();
    await new Promise((resolve) => portal?.close(resolve));
  });

  async function deliver(body: unknown) {
    const delivery = signedDelivery(body);
    const res = await t.app.inject({ method: "POST", url: "/v1/webhooks/appointments", headers: delivery.headers, payload: delivery.payload });
    expect(res.statusCode).toBe(200);
    return res.json();
  }

  async function schedule({ agentName, ...options }: ScheduleOptions & { agentName?: string }) {
    const event = scheduledEvent(options);
    if (agentName) event.data.agent.name = agentName;
    const { appointment } = await deliver(event);
    return {
      externalId: event.data.externalId,
      agent: event.data.agent.id,
      customer: event.data.customer.id,
      sessionId: appointment.session.id as string,
      startsAt: appointment.startsAt as string,
      endsAt: appointment.endsAt as string,
      join: appointment.join as { agentOpensAt: string; customerOpensAt: string; closesAt: string },
    };
  }

  /**
   * The agent's desktop takes its token, as it does when the agent joins: the waiting room (on by default)
   * holds the customer until then, so a test about anything else has the host in first, as in a real visit.
   */
  async function hostJoins(appointment: { externalId: string; agent: string }) {
    const res = await t.app.inject({
      method: "POST",
      url: `/v1/appointments/${appointment.externalId}/join-token`,
      headers: bearer(userJwt(appointment.agent)),
    });
    expect(res.statusCode).toBe(201);
  }

  /** Opens /join/{id} as `userId`, the JWT in the fragment as the invitation link has it. */
  async function visit(externalId: string, userId: string | null, options = DESKTOP) {
    const watched = await openPage(browser, options);
    pages.push(watched);
    const jwt = userId ? userJwt(userId, { expiresInSeconds: 3600 }) : null;
    return { ...watched, jwt, go: () => watched.page.goto(`${t.url}/join/${encodeURIComponent(externalId)}${jwt ? `#token=${jwt}` : ""}`) };
  }

  const stateOf = (page: Page) => page.locator(".card").getAttribute("data-state");
  const statusText = (page: Page) => page.locator("#jw-status").innerText();
  const joinButton = (page: Page) => page.locator("#jw-join");
  /** Everything in the page, shown or not. */
  const pageText = (page: Page) => page.evaluate("document.body.textContent") as Promise<string>;

  /** The joined view in plain words: "joined" said once, no role names, no session id in what is shown. */
  async function expectPlainJoined(page: Page, sessionId: string) {
    expect(await page.locator("#jw-session-title").innerText()).toBe("You have joined the appointment");
    const shown = await page.locator(".card").innerText();
    expect(shown.match(/joined/gi), shown).toHaveLength(1);
    expect(shown).not.toMatch(/moderator|participant|publisher|session/i);
    expect(shown).not.toContain(sessionId);
    expect(await statusText(page)).toMatch(/^Keep this page open during the appointment\. The room stays open until \d\d:\d\d/);
  }

  async function expectState(page: Page, state: string) {
    await expect.poll(() => stateOf(page), { timeout: 30_000 }).toBe(state);
  }

  /** The countdown shows the time left until `opensAt` on the server's clock (this process's); returns what it shows. */
  async function expectCountdownTo(page: Page, opensAt: string) {
    const before = Date.now();
    const shown = await page.locator(".timer-value").innerText();
    const after = Date.now();
    const [seconds, minutes = 0, hours = 0] = shown.split(":").map(Number).reverse();
    const shownSeconds = (hours * 60 + minutes) * 60 + (seconds ?? Number.NaN);
    expect(shownSeconds, shown).toBeGreaterThanOrEqual(Math.floor((Date.parse(opensAt) - after) / 1000) - COUNTDOWN_TOLERANCE_S);
    expect(shownSeconds, shown).toBeLessThanOrEqual(Math.ceil((Date.parse(opensAt) - before) / 1000) + COUNTDOWN_TOLERANCE_S);
    return shown;
  }

  /** What every state must satisfy: no accessibility violation, nothing the CSP refused, no uncaught error. */
  async function expectClean(watched: WatchedPage) {
    expect(await axeViolations(watched.page)).toEqual([]);
    expect(watched.problems).toEqual([]);
  }

  afterAll(async () => {
    await Promise.all(pages.map((p) => p.page.context().close().catch(() => {})));
  });

  it(
    "before the window: the countdown runs, the Join button does nothing, the token leaves no trace",
    async () => {
      // About 30 minutes from now, on the last millisecond of a minute: the clock's minute has always ticked over
      // by the time the page is read, so an expectation taken from the clock instead of the booking fails every time.
      const a = await schedule({ startsInMinutes: 0, now: new Date(lastMillisecondBefore(Date.now() + 30 * MINUTE)) });
      const v = await visit(a.externalId, a.customer);
      await v.go();
      await expectState(v.page, "waiting");
      await expect.poll(() => joinButton(v.page).getAttribute("aria-disabled")).toBe("true");
      expect(await statusText(v.page)).toMatch(new RegExp(`^The room opens for you at ${hourMinute(a.join.customerOpensAt, "Europe/Berlin")}\\b`));

      const first = await expectCountdownTo(v.page, a.join.customerOpensAt);
      await expect.poll(() => v.page.locator(".timer-value").innerText(), { timeout: 10_000 }).not.toBe(first);

      // Both zones: the viewer's (Berlin) and the appointment's own (New York, 6 h behind), start – end.
      const rows = await v.page.locator(".time-row").allInnerTexts();
      expect(rows).toHaveLength(2);
      expect(rows[0]).toContain("Your time (Europe/Berlin)");
      expect(rows[1]).toContain("Appointment's time zone (America/New_York)");
      for (const [row, zone] of [
        [rows[0], "Europe/Berlin"],
        [rows[1], "America/New_York"],
      ] as const) {
        expect(row).toMatch(new RegExp(`\\b${hourMinute(a.startsAt, zone)} \\S+ – ${hourMinute(a.endsAt, zone)} \\S+$`));
      }

      await joinButton(v.page).click({ force: true });
      await joinButton(v.page).focus();
      await v.page.keyboard.press("Enter");
      expect(await stateOf(v.page)).toBe("waiting");
      expect(v.requests.filter((url) => url.includes("/join-token"))).toEqual([]);

      // The JWT was read from the fragment and is gone: not in the address bar, not in storage, never in a request URL.
      expect(v.page.url()).toBe(`${t.url}/join/${a.externalId}`);
      expect(await v.page.evaluate("JSON.stringify([location.href, history.state, { ...localStorage }, { ...sessionStorage }, document.cookie])")).not.toContain(
        v.jwt,
      );
      for (const url of v.requests) expect(url).not.toContain(v.jwt);

      await screenshot(v.page, "01-waiting");
      await expectClean(v);

      // The browser enforces the page's policy: a script slipped into the page does not run.
      await v.page.evaluate(`document.head.append(Object.assign(document.createElement("script"), { textContent: "window.injected = true" }))`);
      expect(await v.page.evaluate("window.injected === true")).toBe(false);
      expect(v.problems.join("\n")).toMatch(/inline script/);
    },
    TEST_TIMEOUT,
  );

  it(
    "inside the window: a click issues a token and the page shows the session",
    async () => {
      const a = await schedule({ startsInMinutes: 1 });
      const v = await visit(a.externalId, a.agent);
      await v.go();
      await expectState(v.page, "open");
      expect(await joinButton(v.page).getAttribute("aria-disabled")).toBe("false");
      expect(await statusText(v.page)).toMatch(/^The room is open until \d\d:\d\d/);
      await screenshot(v.page, "02-open");
      await expectClean(v);

      await joinButton(v.page).click();
      await expectState(v.page, "joined");
      // Focus follows the outcome, for keyboard and screen-reader users.
      expect(await v.page.evaluate("document.activeElement.id")).toBe("jw-session-title");
      await expectPlainJoined(v.page, a.sessionId);
      // The agent has the session's details folded away, one Tab and Enter from the heading.
      await v.page.keyboard.press("Tab");
      expect(await v.page.evaluate("document.activeElement.textContent")).toBe("Technical details");
      await v.page.keyboard.press("Enter");
      const details = await v.page.locator(".technical").innerText();
      expect(details).toContain(a.sessionId);
      expect(details).toContain("local");

      const events = await t.app.inject({ method: "GET", url: `/v1/appointments/${a.externalId}/events`, headers: operator });
      expect(events.json().events.filter((e: { type: string }) => e.type === "token.issued")).toHaveLength(1);

      await screenshot(v.page, "03-joined");
      await expectClean(v);
    },
    TEST_TIMEOUT,
  );

  /** A customer already joined to another appointment (with Dr. Okafor, open now), and this one, open too. */
  async function collidingAppointments() {
    const customer = `cust-${Date.now()}`;
    const other = await schedule({ startsInMinutes: 0, customerId: customer, agentName: "Dr. Okafor" });
    const a = await schedule({ startsInMinutes: 2, customerId: customer });
    // Both hosts are in: the waiting room is checked before a collision, and would hold the customer first.
    await hostJoins(other);
    await hostJoins(a);
    const first = await t.app.inject({
      method: "POST",
      url: `/v1/appointments/${other.externalId}/join-token`,
      headers: bearer(userJwt(customer)),
    });
    expect(first.statusCode).toBe(201);
    return { customer, other, a, first };
  }

  it(
    "the collision prompt leaves the other appointment and joins this one, by keyboard",
    async () => {
      const { customer, other, a, first } = await collidingAppointments();

      const v = await visit(a.externalId, customer);
      await v.go();
      await expectState(v.page, "open");
      await joinButton(v.page).focus();
      await v.page.keyboard.press("Enter");
      await expectState(v.page, "collision");
      // Who and when, in the viewer's zone, read from the other appointment; never its id.
      await expect
        .poll(() => v.page.locator(".collision p").innerText())
        .toMatch(new RegExp(`^You are still connected to your appointment with Dr\\. Okafor on .*\\b${hourMinute(other.startsAt, "Europe/Berlin")} CET\\. `));
      expect(await pageText(v.page)).not.toContain(other.externalId);
      expect(await v.page.evaluate("document.activeElement.id")).toBe("jw-collision-title");
      await screenshot(v.page, "04-collision");
      await expectClean(v);

      await v.page.keyboard.press("Tab");
      expect(await v.page.evaluate("document.activeElement.id")).toBe("jw-supersede");
      await v.page.keyboard.press("Enter");
      await expectState(v.page, "joined");
      await expectPlainJoined(v.page, a.sessionId);
      // A patient gets no technical details at all, not even hidden ones.
      expect(await v.page.locator(".technical").isHidden()).toBe(true);
      expect(await pageText(v.page)).not.toContain(a.sessionId);

      const introspection = await t.app.inject({
        method: "POST",
        url: "/v1/tokens/introspect",
        headers: operator,
        payload: { token: first.json().token },
      });
      expect(introspection.json()).toMatchObject({ active: false, reason: "revoked", revocationReason: "superseded" });
      await screenshot(v.page, "05-joined-after-supersede");
      await expectClean(v);
    },
    TEST_TIMEOUT,
  );

  it(
    "the collision prompt stays neutral when the other appointment cannot be read, and staying keeps the Join button",
    async () => {
      const { customer, other, a } = await collidingAppointments();

      const v = await visit(a.externalId, customer);
      await v.page.route(`**/v1/appointments/${other.externalId}`, (route) =>
        route.fulfill({ status: 503, contentType: "application/problem+json", body: '{"code":"not_ready"}' }),
      );
      await v.go();
      await expectState(v.page, "open");
      await joinButton(v.page).click();
      await expectState(v.page, "collision");
      await expect.poll(() => v.requests.filter((url) => url.endsWith(`/v1/appointments/${other.externalId}`))).toHaveLength(1);
      expect(await v.page.locator(".collision p").innerText()).toBe(
        "You are still connected to another appointment. Joining this one disconnects you from it.",
      );
      await expectClean(v);

      await v.page.keyboard.press("Tab");
      await v.page.keyboard.press("Tab");
      expect(await v.page.evaluate("document.activeElement.id")).toBe("jw-stay");
      await v.page.keyboard.press("Enter");
      await expectState(v.page, "open");
      expect(await v.page.evaluate("document.activeElement.id")).toBe("jw-join");
    },
    TEST_TIMEOUT,
  );

  it(
    "opens by itself when the countdown reaches zero",
    async () => {
      // The customer's window opens 15 s from now (start − 5 min): time enough to load the page on a busy machine.
      const a = await schedule({ startsInMinutes: 5 + 15 / 60 });
      const v = await visit(a.externalId, a.customer);
      await v.go();
      await expectState(v.page, "waiting");
      expect(await joinButton(v.page).getAttribute("aria-disabled")).toBe("true");
      await expect.poll(() => stateOf(v.page), { timeout: 60_000 }).toBe("open");
      expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(a.join.customerOpensAt) - 1000);
      await hostJoins(a);
      await joinButton(v.page).click();
      await expectState(v.page, "joined");
    },
    TEST_TIMEOUT,
  );

  it(
    "follows the server's clock, not a user's clock that is 10 minutes off",
    async () => {
      // Open for the customer since a minute; a clock 10 minutes slow would still count down 9 minutes.
      const open = await schedule({ startsInMinutes: 4 });
      const slow = await visit(open.externalId, open.customer);
      await slow.page.clock.setSystemTime(new Date(Date.now() - 10 * MINUTE));
      await slow.go();
      await expectState(slow.page, "open");

      // Opens in 5 minutes; a clock 10 minutes fast would call it open.
      const later = await schedule({ startsInMinutes: 10 });
      const fast = await visit(later.externalId, later.customer);
      await fast.page.clock.setSystemTime(new Date(Date.now() + 10 * MINUTE));
      await fast.go();
      await expectState(fast.page, "waiting");
      await expectCountdownTo(fast.page, later.join.customerOpensAt);
    },
    TEST_TIMEOUT,
  );

  it(
    "a closed appointment says so, and so do a cancelled, a blocked and an unknown one, and a missing sign-in",
    async () => {
      const closed = await schedule({ startsInMinutes: -60, durationMinutes: 30 });
      const cancelled = await schedule({ startsInMinutes: 1 });
      await deliver(cancelledEvent(cancelled.externalId));
      const blocked = await schedule({ startsInMinutes: 1 });
      const block = await t.app.inject({
        method: "POST",
        url: `/v1/appointments/${blocked.externalId}/revoke`,
        headers: operator,
        payload: { reason: "e2e", block: true },
      });
      expect(block.statusCode).toBe(200);

      const cases = [
        { name: "06-closed", id: closed.externalId, user: closed.customer, state: "closed", text: /^This appointment has ended: the room closed on / },
        { name: "07-cancelled", id: cancelled.externalId, user: cancelled.customer, state: "cancelled", text: /^This appointment was cancelled\./ },
        { name: "08-blocked", id: blocked.externalId, user: blocked.customer, state: "blocked", text: /^Access to this appointment has been blocked\./ },
        { name: "09-not-found", id: "appt-that-does-not-exist", user: "cust-1", state: "not_found", text: /^We could not find this appointment/ },
        { name: "10-no-sign-in", id: closed.externalId, user: null, state: "unauthenticated", text: /^Your sign-in link is missing, invalid or has expired\./ },
      ];
      for (const c of cases) {
        const v = await visit(c.id, c.user);
        await v.go();
        await expectState(v.page, c.state);
        expect(await statusText(v.page), c.name).toMatch(c.text);
        expect(await joinButton(v.page).isHidden(), c.name).toBe(true);
        await screenshot(v.page, c.name);
        await expectClean(v);
        await v.page.context().close();
      }
    },
    TEST_TIMEOUT,
  );

  it(
    "the customer who joins before the agent waits for the host, calmly, and joins by itself once the agent is in",
    async () => {
      const a = await schedule({ startsInMinutes: 1, settings: { waitingRoom: true } });
      const v = await visit(a.externalId, a.customer);
      const answers: { status: number; code: unknown }[] = [];
      v.page.on("response", async (response) => {
        if (!response.url().endsWith("/join-token")) return;
        const body = (await response.json().catch(() => null)) as { code?: unknown } | null;
        answers.push({ status: response.status(), code: body?.code });
      });
      await v.go();
      await expectState(v.page, "open");
      await joinButton(v.page).click();
      await expectState(v.page, "waiting_for_host");
      expect(await statusText(v.page)).toBe(
        "Waiting for the host… You will be connected as soon as Dr. Lee arrives. Please keep this page open.",
      );
      // Nothing to press and nothing counting down: the page asks again by itself.
      expect(await joinButton(v.page).isHidden()).toBe(true);
      expect(await v.page.locator(".timer").isHidden()).toBe(true);
      // Its own calm look, not the notice colours of a problem (retrying, errors).
      const look = `(({ backgroundColor, borderLeftColor }) => [backgroundColor, borderLeftColor])(getComputedStyle(document.getElementById("jw-status")))`;
      expect(await v.page.evaluate(look)).toEqual(["rgb(236, 253, 245)", "rgb(4, 120, 87)"]);
      await expect.poll(() => answers.length, { timeout: 15_000 }).toBeGreaterThanOrEqual(2);
      expect(await stateOf(v.page)).toBe("waiting_for_host");
      expect(answers.every((answer) => answer.status === 425 && answer.code === "waiting_for_host"), JSON.stringify(answers)).toBe(true);
      await screenshot(v.page, "14-waiting-for-host");
      await expectClean(v);

      await hostJoins(a);
      await expectState(v.page, "joined");
      await expectPlainJoined(v.page, a.sessionId);
      expect(answers.at(-1)).toEqual({ status: 201, code: undefined });
      expect(answers.slice(0, -1).every((answer) => answer.code === "waiting_for_host")).toBe(true);
      const events = await t.app.inject({ method: "GET", url: `/v1/appointments/${a.externalId}/events`, headers: operator });
      const issued = events.json().events.filter((e: { type: string }) => e.type === "token.issued");
      expect(issued).toHaveLength(2);
      await expectClean(v);
    },
    TEST_TIMEOUT,
  );

  it(
    "says what it is doing while the video provider is unavailable, and joins once it is back",
    async () => {
      const a = await schedule({ startsInMinutes: 1 });
      await hostJoins(a);
      const v = await visit(a.externalId, a.customer);
      // The provider's outage is played by the browser's network layer: the first join request is answered 503.
      let refused = false;
      await v.page.route("**/join-token", async (route) => {
        if (refused) return route.continue();
        refused = true;
        await route.fulfill({
          status: 503,
          headers: { "content-type": "application/problem+json", "retry-after": "3" },
          body: JSON.stringify({ type: "urn:joinwindow:problem:provider_unavailable", title: "Service Unavailable", status: 503, code: "provider_unavailable" }),
        });
      });
      await v.go();
      await expectState(v.page, "open");
      await joinButton(v.page).click();
      await expectState(v.page, "retrying");
      expect(await statusText(v.page)).toBe("The video service is not responding. Trying again automatically.");
      expect(await v.page.locator(".timer-label").innerText()).toBe("Next attempt in");
      await screenshot(v.page, "11-retrying");
      await expectClean(v);
      await expectState(v.page, "joined");
    },
    TEST_TIMEOUT,
  );

  it(
    "fits a 360 px phone screen",
    async () => {
      const a = await schedule({ startsInMinutes: 20 });
      const v = await visit(a.externalId, a.customer, PHONE);
      await v.go();
      await expectState(v.page, "waiting");
      expect(await v.page.evaluate("document.documentElement.scrollWidth")).toBeLessThanOrEqual(360);
      await screenshot(v.page, "12-phone-waiting");
      await expectClean(v);

      const b = await schedule({ startsInMinutes: 1 });
      await hostJoins(b);
      const w = await visit(b.externalId, b.customer, PHONE);
      await w.go();
      await expectState(w.page, "open");
      await joinButton(w.page).tap();
      await expectState(w.page, "joined");
      expect(await w.page.evaluate("document.documentElement.scrollWidth")).toBeLessThanOrEqual(360);
      await screenshot(w.page, "13-phone-joined");
      await expectClean(w);
    },
    TEST_TIMEOUT,
  );

  it("runs an accessibility check that does find violations where there are some", async () => {
    const v = await openPage(browser, DESKTOP);
    pages.push(v);
    await v.page.setContent('<!doctype html><html lang="en"><title>t</title><main><img src="data:,"><button></button></main></html>');
    expect((await axeViolations(v.page)).join("\n")).toMatch(/image-alt[\s\S]*button-name|button-name[\s\S]*image-alt/);
  });

  it(
    "works embedded in a portal on another origin: CORS, the Date header and the client script's CORP",
    async () => {
      const a = await schedule({ startsInMinutes: 1 });
      await hostJoins(a);
      const v = await openPage(browser, DESKTOP);
      pages.push(v);
      // The user's clock is 10 minutes slow: only the exposed Date header lets the client see that the window is open.
      await v.page.clock.setSystemTime(new Date(Date.now() - 10 * MINUTE));
      await v.page.goto(`${portalOrigin}/portal.html#${new URLSearchParams({ id: a.externalId, token: userJwt(a.customer) })}`);
      await expect.poll(() => v.page.locator("body").getAttribute("data-state"), { timeout: 30_000 }).toBe("open");
      const skew = (await v.page.evaluate("window.client.serverNow() - Date.now()")) as number;
      expect(Math.abs(skew - 10 * MINUTE)).toBeLessThan(5_000);
      await v.page.evaluate("window.client.join()");
      await expect.poll(() => v.page.locator("body").getAttribute("data-state"), { timeout: 30_000 }).toBe("joined");
      expect(await v.page.locator("body").getAttribute("data-session")).toBe(a.sessionId);
      expect(v.problems).toEqual([]);
    },
    TEST_TIMEOUT,
  );
});

const PORTAL_PAGE = `<!doctype html><html lang="en"><head><title>Portal</title>
<script type="module" src="/portal.js"></script></head><body><main><h1>Portal</h1></main></body></html>`;

/** The portal's own script: loads the client from the service and reports its state on the body. */
const portalScript = (service: string) => `
import { createJoinClient } from "${service}/client/joinwindow.js";
const fragment = new URLSearchParams(location.hash.slice(1));
const token = fragment.get("token");
history.replaceState(null, "", location.pathname);
const client = createJoinClient({
  baseUrl: "${service}",
  externalId: fragment.get("id"),
  getToken: () => token,
  onToken: (grant) => { document.body.dataset.session = grant.sessionId; },
});
client.subscribe((state) => { document.body.dataset.state = state.status; });
client.start();
window.client = client;
`;
