import type { FastifyInstance } from "fastify";
import { Type } from "typebox";

/** Public keys of the built-in `local` provider, for video gateways that verify its tokens themselves. */
export default async function wellKnownRoutes(app: FastifyInstance, options: { jwks: () => Promise<{ keys: object[] }> }) {
  app.get(
    "/.well-known/jwks.json",
    {
      config: { rateLimit: false },
      schema: {
        tags: ["tokens"],
        summary: "Public keys (JWKS) of the local provider's token signing keys",
        response: { 200: Type.Object({ keys: Type.Array(Type.Record(Type.String(), Type.Unknown())) }) },
      },
    },
    async (_request, reply) => {
      // Short: a verifier that meets an unknown kid refetches, and a new key must show up soon after a rotation.
      return reply.header("cache-control", "public, max-age=60").send(await options.jwks());
    },
  );
}
