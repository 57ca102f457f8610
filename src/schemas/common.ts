/**
 * preValidation hook of a route whose body is optional: an absent body means
 * "no options", so it becomes {} and the schema's defaults apply. It lives
 * beside the schemas because the OpenAPI document reads it: the body of every
 * route that runs it is marked as not required (see plugins/openapi.ts).
 */
export async function absentBodyIsEmpty(request: { body: unknown }) {
  if (request.body === undefined) request.body = {};
}
