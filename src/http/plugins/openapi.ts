import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { FastifyInstance, FastifySchema, RouteOptions } from "fastify";
import fp from "fastify-plugin";
import { Type } from "typebox";
import { absentBodyIsEmpty } from "../../schemas/common.js";
import { problems, RATE_LIMITED } from "../../schemas/problems.js";

const DOCS_PREFIX = "/docs";

/** Swagger UI's routes are the plugin's, hidden; its page is documented as the contract lists it (API.md §7). */
const DOCS_PAGE: FastifySchema = {
  tags: ["operations"],
  summary: "This document as a browsable page (Swagger UI)",
  response: {
    200: { description: "The HTML page", content: { "text/html": { schema: Type.String() } } },
    ...problems(...RATE_LIMITED),
  },
} as FastifySchema;

/** An operation-level extension that carries "the body is optional" from `transform` to `transformObject`. */
const OPTIONAL_BODY = "x-joinwindow-optional-body";

function runs(hooks: RouteOptions["preValidation"], hook: unknown): boolean {
  return Array.isArray(hooks) ? (hooks as unknown[]).includes(hook) : hooks === hook;
}

interface Operation {
  [OPTIONAL_BODY]?: boolean;
  requestBody?: { required?: boolean };
  responses?: Record<string, { headers?: Record<string, { required?: boolean; schema?: { required?: unknown } }> }>;
}

/**
 * What @fastify/swagger cannot say from a route's schema: it marks every body
 * required, and it copies a response header's whole spec, `required` included,
 * into the header's schema.
 */
function completeDocument<T extends { paths?: object }>(document: T): T {
  for (const item of Object.values((document.paths ?? {}) as Record<string, Record<string, Operation> | undefined>)) {
    for (const operation of Object.values(item ?? {})) {
      if (operation[OPTIONAL_BODY]) {
        delete operation[OPTIONAL_BODY];
        if (operation.requestBody) operation.requestBody.required = false;
      }
      for (const response of Object.values(operation.responses ?? {})) {
        for (const header of Object.values(response.headers ?? {})) {
          if (typeof header.schema?.required !== "boolean") continue;
          header.required = header.schema.required;
          delete header.schema.required;
        }
      }
    }
  }
  return document;
}

/**
 * The OpenAPI document is generated from the routes' TypeBox schemas, so the
 * validation, the types and the published contract cannot drift apart.
 * Registered before the routes so that @fastify/swagger sees every one.
 */
export default fp(
  async function openapi(app: FastifyInstance, options: { version: string }) {
    await app.register(swagger, {
      openapi: {
        openapi: "3.1.0",
        info: {
          title: "joinwindow",
          version: options.version,
          description:
            "Join windows and join tokens for scheduled video appointments. Errors are RFC 9457 application/problem+json with a stable `code`.",
        },
        components: {
          securitySchemes: {
            bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" },
          },
        },
      },
      transform: ({ schema, url, route }) => {
        // Fastify adds the page as /docs and /docs/ from one options object, which the plugin sees once, as either.
        if ((url === DOCS_PREFIX || url === `${DOCS_PREFIX}/`) && route.method === "GET") {
          return { schema: DOCS_PAGE, url: DOCS_PREFIX };
        }
        if (runs(route.preValidation, absentBodyIsEmpty)) return { schema: { ...schema, [OPTIONAL_BODY]: true }, url };
        return { schema, url };
      },
      transformObject: (documentObject) => completeDocument("openapiObject" in documentObject ? documentObject.openapiObject : {}),
    });
    await app.register(swaggerUi, {
      routePrefix: DOCS_PREFIX,
      // Swagger UI ships inline scripts; it sets a CSP with their hashes instead of helmet's 'none'.
      staticCSP: true,
      uiConfig: { url: "/openapi.json", deepLinking: false },
    });
    app.get(
      "/openapi.json",
      {
        config: { rateLimit: false },
        schema: {
          tags: ["operations"],
          summary: "This OpenAPI 3.1 document",
          response: {
            200: Type.Object({ openapi: Type.Literal("3.1.0") }, { additionalProperties: true, description: "The document" }),
            ...problems(),
          },
        },
      },
      async () => app.swagger(),
    );
  },
  { name: "openapi" },
);
