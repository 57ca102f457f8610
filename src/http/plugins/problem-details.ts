import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { isDatabaseUnavailable, isRejectedValue } from "../../db/errors.js";
import { AppError, invalidRequest, notFound, notReady } from "../../domain/errors.js";
import { PROBLEM_CONTENT_TYPE } from "../../schemas/problems.js";

interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  [extra: string]: unknown;
}

export function problemBody(error: AppError): Problem {
  return {
    type: `urn:joinwindow:problem:${error.code}`,
    title: error.title,
    status: error.status,
    detail: error.detail,
    code: error.code,
    ...error.extra,
  };
}

export function sendProblem(reply: FastifyReply, error: AppError) {
  reply.server.domainMetrics?.refusals.inc({ code: error.code });
  for (const [name, value] of Object.entries(error.headers)) reply.header(name, value);
  return reply
    .code(error.status)
    .type(PROBLEM_CONTENT_TYPE)
    .send(JSON.stringify(problemBody(error)));
}

interface SchemaIssue {
  instancePath: string;
  message?: string;
  params?: Record<string, unknown>;
}

/** Turns Fastify's errors (validation, content type, body size, JSON syntax) into the contract's codes. */
export function toAppError(error: FastifyError & { validation?: SchemaIssue[] }): AppError {
  if (error instanceof AppError) return error;
  if (error.validation) {
    const errors = error.validation.map((issue) => {
      const missing = issue.params?.missingProperty;
      const path = typeof missing === "string" ? `${issue.instancePath}/${missing}` : issue.instancePath || "/";
      return { path, message: issue.message ?? "is invalid" };
    });
    const where = (error as { validationContext?: string }).validationContext ?? "request";
    return invalidRequest(`The ${where} does not match the schema.`, errors);
  }
  switch (error.code) {
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
    case "FST_ERR_CTP_INVALID_TYPE":
      return new AppError(
        "unsupported_media_type",
        "Send the body as application/json (introspection and revocation also take application/x-www-form-urlencoded).",
      );
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new AppError("payload_too_large", "The body is larger than 64 KiB.");
    case "FST_ERR_CTP_INVALID_JSON_BODY":
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return invalidRequest("The body is not valid JSON.");
    case "FST_ERR_BAD_URL":
    case "FST_ERR_MAX_PARAM_LENGTH":
      return invalidRequest("The URL is not valid.");
  }
  if (isDatabaseUnavailable(error)) return notReady();
  if (isRejectedValue(error)) return invalidRequest("The request contains a value that cannot be stored.");
  const status = error.statusCode ?? 500;
  if (status === 404) return notFound();
  // Not Fastify's message: some of them quote the URL, which may carry a misplaced token.
  if (status >= 400 && status < 500) return invalidRequest("The request is not valid.");
  return new AppError("internal_error", "Something went wrong on our side.");
}

/** One place where every error becomes problem+json: 4xx as the contract says, 5xx without details. */
export default fp(
  async function problemDetails(app: FastifyInstance) {
    app.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
      const appError = toAppError(error);
      if (appError.status >= 500 && appError.code !== "not_ready" && appError.code !== "provider_unavailable") {
        request.log.error({ err: error }, "request failed");
      } else if (appError.status >= 500) {
        request.log.warn({ code: appError.code, reason: error.message }, "dependency unavailable");
      }
      return sendProblem(reply, appError);
    });

    // The path is not echoed: a misdirected client may have put a token in it.
    app.setNotFoundHandler((_request, reply) => sendProblem(reply, notFound("No such route.")));
  },
  { name: "problem-details" },
);
