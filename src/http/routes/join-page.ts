import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "typebox";
import { notFound } from "../../domain/errors.js";
import { ExternalIdParams } from "../../schemas/appointments.js";

/**
 * `npm run build` compiles src/client (tsconfig.client.json) to dist/client.
 * Three levels up is the package root both from src/http/routes (tests) and
 * from dist/http/routes (the built server).
 */
const CLIENT_DIR = fileURLToPath(new URL("../../../dist/client/", import.meta.url));

const CONTENT_TYPES: Record<string, string> = {
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
};

/** The page runs only its own script and stylesheet and talks only to this service: nothing inline, nothing external. */
const PAGE_CSP = {
  useDefaults: false,
  directives: {
    defaultSrc: ["'none'"],
    scriptSrc: ["'self'"],
    styleSrc: ["'self'"],
    imgSrc: ["'self'"],
    connectSrc: ["'self'"],
    baseUri: ["'none'"],
    formAction: ["'none'"],
    frameAncestors: ["'none'"],
  },
};

interface Asset {
  body: Buffer;
  contentType: string;
}

async function loadAssets(dir: string): Promise<{ page: Buffer | null; files: Map<string, Asset> }> {
  const files = new Map<string, Asset>();
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return { page: null, files };
  }
  for (const name of names) {
    const contentType = CONTENT_TYPES[path.extname(name)];
    if (contentType) files.set(name, { body: await readFile(path.join(dir, name)), contentType });
  }
  const page = names.includes("join.html") ? await readFile(path.join(dir, "join.html")) : null;
  return { page, files };
}

/**
 * The browser client at /client/joinwindow.js (with the join page's own
 * script, stylesheet and icon beside it) and the join page at
 * /join/{externalId}. The files are read once, at startup; the page's HTML is
 * the same for every appointment (its script reads the id from the path), so
 * nothing from the URL is ever written into it.
 */
const joinPageRoutes: FastifyPluginAsyncTypebox<{ clientDir?: string }> = async (app, options) => {
  const dir = options.clientDir ?? CLIENT_DIR;
  const { page, files } = await loadAssets(dir);
  if (!page || !files.has("joinwindow.js")) {
    app.log.warn({ dir }, "the browser client is not built (npm run build): /client and /join answer 404");
  }

  app.get(
    "/client/:file",
    {
      config: { rateLimit: false },
      // Portals on other origins (CORS_ORIGINS) load the client as a module script: CORS answers for them, and CORP must not refuse.
      helmet: { crossOriginResourcePolicy: { policy: "cross-origin" } },
      schema: { hide: true, params: Type.Object({ file: Type.String({ maxLength: 100 }) }) },
    },
    async (request, reply) => {
      const asset = files.get(request.params.file);
      if (!asset) throw notFound("No such file.");
      // Not fingerprinted: short, so that a new release reaches browsers within minutes.
      return reply.type(asset.contentType).header("cache-control", "public, max-age=300").send(asset.body);
    },
  );

  app.get(
    "/join/:externalId",
    {
      config: { rateLimit: false },
      helmet: { contentSecurityPolicy: PAGE_CSP },
      schema: { hide: true, params: ExternalIdParams },
    },
    async (_request, reply) => {
      if (!page) throw notFound("The join page is not built.");
      return reply
        .type("text/html; charset=utf-8")
        .header("cache-control", "no-store")
        .header("permissions-policy", "camera=(self), microphone=(self), display-capture=(self), geolocation=()")
        .send(page);
    },
  );
};

export default joinPageRoutes;
