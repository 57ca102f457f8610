import { AppError } from "../../domain/errors.js";

/**
 * 401 `unauthenticated`. RFC 6750 §3.1: a request that carried no bearer
 * credentials gets a bare `Bearer` challenge, one with a bad token gets
 * `error="invalid_token"`.
 */
export const unauthenticated = (detail: string, credentialsGiven = true): AppError =>
  new AppError("unauthenticated", detail, {}, {
    "www-authenticate": credentialsGiven ? 'Bearer error="invalid_token"' : "Bearer",
  });

export const insufficientScope = (scope: string): AppError =>
  new AppError("insufficient_scope", `This operation needs the ${scope} scope.`, {}, {
    "www-authenticate": `Bearer error="insufficient_scope", scope="${scope}"`,
  });

/** The detail of a 401 for a token whose key or algorithm is refused; never library text or token content. */
export const REJECTED = "The token's signature or algorithm is not accepted.";
