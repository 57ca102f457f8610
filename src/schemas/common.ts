import { invalidRequest } from "../domain/errors.js";

/**
 * preValidation hook of a route whose body is optional: an absent body means
 * "no options", so it becomes {} and the schema's defaults apply. It lives
 * beside the schemas because the OpenAPI document reads it: the body of every
 * route that runs it is marked as not required (see plugins/openapi.ts).
 */
export async function absentBodyIsEmpty(request: { body: unknown }) {
  if (request.body === undefined) request.body = {};
}

/**
 * A cursor page's `after` and `limit` from its query (both validated as digit
 * strings by the route's schema): the limit defaults to `defaultLimit` and
 * must be 1 to `maxLimit`, else 400 with its path.
 */
export function cursorPage(query: { after?: string; limit?: string }, defaultLimit: number, maxLimit: number) {
  const limit = query.limit === undefined ? defaultLimit : Number(query.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > maxLimit) {
    throw invalidRequest(`limit must be an integer from 1 to ${maxLimit}.`, [{ path: "/limit", message: `must be 1 to ${maxLimit}` }]);
  }
  return { after: query.after === undefined ? undefined : BigInt(query.after), limit };
}
