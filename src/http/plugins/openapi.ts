import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";

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
    });
    await app.register(swaggerUi, {
      routePrefix: "/docs",
      // Swagger UI ships inline scripts; it sets a CSP with their hashes instead of helmet's 'none'.
      staticCSP: true,
      uiConfig: { url: "/openapi.json", deepLinking: false },
    });
    app.get("/openapi.json", { schema: { hide: true }, config: { rateLimit: false } }, async () => app.swagger());
  },
  { name: "openapi" },
);
