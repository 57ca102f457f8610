import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const demoScript = fileURLToPath(new URL("../../scripts/demo.mjs", import.meta.url));

describe("npm run demo", () => {
  let demo: ChildProcess;
  let exited: Promise<number | null>;
  let dataDir: string;
  let output = "";

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "jw-demo-"));
    // --no-build: the test run's global setup has just built dist/.
    demo = spawn(process.execPath, [demoScript, "--no-build"], {
      // A machine zone that is not UTC, to see it named next to every time.
      env: { PATH: process.env.PATH ?? "", PORT: "0", DATA_DIR: dataDir, TZ: "Europe/Berlin" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    demo.stdout?.on("data", (chunk) => {
      output += chunk;
    });
    demo.stderr?.on("data", (chunk) => {
      output += chunk;
    });
    exited = new Promise((resolve) => demo.on("exit", (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the demo did not get ready:\n${output}`)), 90_000);
      const check = () => {
        if (output.includes("Ctrl-C stops the service")) {
          clearTimeout(timer);
          resolve();
        }
      };
      demo.stdout?.on("data", check);
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`the demo exited with ${code}:\n${output}`));
      });
    });
  }, 120_000);

  afterAll(async () => {
    if (demo.exitCode === null) demo.kill("SIGTERM");
    await exited;
    await rm(dataDir, { recursive: true, force: true });
  });

  it("prints join links for the agent and the customer of an open appointment and of one opening in about two minutes", async () => {
    const links = [...output.matchAll(/(agent|customer): +(http\S+)/g)].map(([, role, url]) => ({ role, url: new URL(url ?? "") }));
    expect(links.map((l) => l.role)).toEqual(["agent", "customer", "agent", "customer"]);
    // The sign-in token travels in the fragment only, never in the path or the query.
    for (const { url } of links) {
      expect(url.pathname).toMatch(/^\/join\/demo-[a-z0-9]+-(now|soon)$/);
      expect(url.search).toBe("");
      expect(url.hash).toMatch(/^#token=[\w-]+\.[\w-]+\.[\w-]+$/);
    }
    const [nowAgent, nowCustomer, soonAgent, soonCustomer] = links;
    if (!nowAgent || !nowCustomer || !soonAgent || !soonCustomer) throw new Error(output);
    // Both appointments belong to the same customer, so the second join asks to leave the first.
    expect(nowCustomer.url.hash).toBe(soonCustomer.url.hash);

    const base = nowCustomer.url.origin.replace("localhost", "127.0.0.1");
    const jwt = (link: { url: URL }) => link.url.hash.slice("#token=".length);
    const joinToken = (link: { url: URL }) =>
      fetch(`${base}/v1/appointments/${link.url.pathname.split("/").pop()}/join-token`, {
        method: "POST",
        headers: { authorization: `Bearer ${jwt(link)}` },
      });

    const read = async (link: { url: URL }) => {
      const res = await fetch(`${base}/v1/appointments/${link.url.pathname.split("/").pop()}`, {
        headers: { authorization: `Bearer ${jwt(link)}` },
      });
      expect(res.status).toBe(200);
      return (await res.json()) as { startsAt: string; timeZone: string; join: { agentOpensAt: string; customerOpensAt: string } };
    };

    const page = await fetch(`${base}${nowCustomer.url.pathname}`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("join-page.js");

    // Every printed time names its zone: the machine's, and the appointment's own for the start.
    const time = (iso: string, timeZone: string) =>
      `${new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZone }).format(new Date(iso))} ${timeZone}`;
    for (const link of [nowCustomer, soonCustomer]) {
      const appointment = await read(link);
      expect(output).toContain(
        `starts ${time(appointment.startsAt, "Europe/Berlin")} (${time(appointment.startsAt, appointment.timeZone)}, the appointment's zone)`,
      );
      expect(output).toContain(
        `the room opens for the agent at ${time(appointment.join.agentOpensAt, "Europe/Berlin")}, for the customer at ${time(appointment.join.customerOpensAt, "Europe/Berlin")}`,
      );
    }

    // The waiting room: the customer who asks before the agent is held, and asks again a few seconds later.
    const held = await joinToken(nowCustomer);
    expect(held.status).toBe(425);
    expect(((await held.json()) as { code: string }).code).toBe("waiting_for_host");
    expect(Number(held.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(Number(held.headers.get("retry-after"))).toBeLessThanOrEqual(10);
    expect((await joinToken(nowAgent)).status).toBe(201);
    expect((await joinToken(nowCustomer)).status).toBe(201);
    // About two minutes ahead when booked, however long the demo took to start: Retry-After counts to customerOpensAt.
    const { join } = await read(soonCustomer);
    const before = Date.now();
    const early = await joinToken(soonCustomer);
    const after = Date.now();
    expect(early.status).toBe(425);
    expect(((await early.json()) as { code: string }).code).toBe("too_early");
    const wait = Number(early.headers.get("retry-after"));
    expect(wait).toBeGreaterThanOrEqual(Math.ceil((Date.parse(join.customerOpensAt) - after) / 1000));
    expect(wait).toBeLessThanOrEqual(Math.ceil((Date.parse(join.customerOpensAt) - before) / 1000));
    expect(Date.parse(join.customerOpensAt) - Date.parse(join.agentOpensAt)).toBe(5 * 60_000);
    // The agent of the second appointment is already inside their (earlier) window.
    expect((await joinToken(soonAgent)).status).toBe(201);
  });

  it("stops the service cleanly on Ctrl-C", async () => {
    demo.kill("SIGINT");
    expect(await exited).toBe(0);
  });
});
