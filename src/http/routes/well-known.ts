import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { type Static, Type } from "typebox";
import { DATABASE, problems } from "../../schemas/problems.js";

/** The public half of an ES256 key of the `local` provider (providers/local/signing-keys.ts). */
const PublicJwk = Type.Object({
  kty: Type.Literal("EC"),
  crv: Type.Literal("P-256"),
  x: Type.String(),
  y: Type.String(),
  kid: Type.String(),
  alg: Type.Literal("ES256"),
  use: Type.Literal("sig"),
});

const Jwks = Type.Object({ keys: Type.Array(PublicJwk, { description: "Empty for the other providers" }) });

/** Public keys of the built-in `local` provider, for video gateways that verify its tokens themselves. */
const wellKnownRoutes: FastifyPluginAsyncTypebox<{ jwks: () => Promise<Static<typeof Jwks>> }> = async (app, options) => {
  app.get(
    "/.well-known/jwks.json",
    {
      config: { rateLimit: false },
      schema: {
        tags: ["tokens"],
        summary: "Public keys (JWKS) of the local provider's token signing keys",
        response: {
          200: Jwks,
          ...problems(...DATABASE),
        },
      },
    },
    async (_request, reply) => {
      // Short: a verifier that meets an unknown kid refetches, and a new key must show up soon after a rotation.
      return reply.header("cache-control", "public, max-age=60").send(await options.jwks());
    },
  );
};

export default wellKnownRoutes;
