import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApp, type TestApp } from "../helpers/app.js";

const PORTAL = "https://portal.example.com";

describe("the browser client and the join page, as the service serves them", () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startApp({ CORS_ORIGINS: PORTAL });
  });
  afterAll(async () => {
    await t.close();
  });

  const get = (url: string, headers: Record<string, string> = {}) => t.app.inject({ method: "GET", url, headers });

  it("serves the client as a JavaScript module that portals on the allowed origins may load", async () => {
    const res = await get("/client/joinwindow.js", { origin: PORTAL });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toBe("text/javascript; charset=utf-8");
    expect(res.headers["cross-origin-resource-policy"]).toBe("cross-origin");
    expect(res.headers["access-control-allow-origin"]).toBe(PORTAL);
    expect(res.headers["x-content-type-options"]).toBe("nosniff");
    expect(res.headers["cache-control"]).toBe("public, max-age=300");
    expect(res.body).toContain("export function createJoinClient");
    // Nothing a browser would have to fetch from elsewhere: the module imports nothing.
    expect(res.body).not.toMatch(/^import /m);

    const stranger = await get("/client/joinwindow.js", { origin: "https://evil.example" });
    expect(stranger.headers["access-control-allow-origin"]).toBeUndefined();
  });

  it("serves the page's script, stylesheet and icon, and nothing else from the build directory", async () => {
    for (const [file, type] of [
      ["join-page.js", "text/javascript; charset=utf-8"],
      ["join-ui.js", "text/javascript; charset=utf-8"],
      ["join-page.css", "text/css; charset=utf-8"],
      ["favicon.svg", "image/svg+xml"],
    ]) {
      const res = await get(`/client/${file}`);
      expect(res.statusCode, file).toBe(200);
      expect(res.headers["content-type"], file).toBe(type);
    }
    for (const url of ["/client/join.html", "/client/nope.js", "/client/..%2Fpackage.json", "/client/%2e%2e/server.js", "/client/"]) {
      const res = await get(url);
      expect(res.statusCode, url).toBe(404);
      expect(res.headers["content-type"], url).toContain("application/problem+json");
    }
  });

  it("serves the join page under a strict Content-Security-Policy, with nothing inline and nothing external", async () => {
    const res = await get("/join/appt-123");
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(res.headers["cache-control"]).toBe("no-store");
    expect(res.headers["content-security-policy"]).toBe(
      "default-src 'none';script-src 'self';style-src 'self';img-src 'self';connect-src 'self';base-uri 'none';form-action 'none';frame-ancestors 'none'",
    );
    expect(res.headers["referrer-policy"]).toBe("no-referrer");
    expect(res.headers["x-frame-options"]).toBe("SAMEORIGIN");
    expect(res.headers["cross-origin-resource-policy"]).toBe("same-site");

    const html = res.body;
    expect(html).not.toMatch(/<style|\sstyle=|\son[a-z]+=|javascript:/i);
    const scripts = [...html.matchAll(/<script\b[^>]*>/g)].map((m) => m[0]);
    expect(scripts).toEqual(['<script type="module" src="../client/join-page.js">']);
    // Every reference is relative to the service: no CDN, no web fonts.
    const references = [...html.matchAll(/(?:src|href)="([^"]*)"/g)].map((m) => m[1]);
    expect(references.length).toBeGreaterThan(0);
    for (const reference of references) expect(reference).toMatch(/^\.\.\/client\//);
  });

  it("answers the same page for any valid id without writing the id into it, and 400 for an invalid one", async () => {
    const odd = await get(`/join/${encodeURIComponent('<script>alert("x")</script>')}`);
    expect(odd.statusCode).toBe(200);
    expect(odd.body).toBe((await get("/join/appt-123")).body);
    expect((await get(`/join/${"x".repeat(201)}`)).statusCode).toBe(400);
  });

  it("leaves the API's own headers alone", async () => {
    const res = await get("/healthz");
    expect(res.headers["content-security-policy"]).toMatch(/^default-src 'none';/);
    expect(res.headers["content-security-policy"]).not.toContain("connect-src");
    expect(res.headers["cross-origin-resource-policy"]).toBe("same-site");
  });
});
