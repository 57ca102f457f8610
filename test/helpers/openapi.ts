import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import ajvFormats from "ajv-formats";
import { problems } from "../../src/schemas/problems.js";

/**
 * Checks the service's answers against its own OpenAPI document, so that a
 * route, a status, a media type, a header or a body member cannot drift from
 * what clients generate from /openapi.json. test/helpers/app.ts runs every
 * answer of an app it starts through this, both `app.inject` and real HTTP.
 *
 * Ajv (JSON Schema 2020-12, the dialect of OpenAPI 3.1) over the document's
 * own schemas: the OpenAPI response validators on npm check only
 * application/json bodies, or only OpenAPI 3.0.
 */

export interface OpenApiDocument {
  paths: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, unknown> };
  [member: string]: unknown;
}

interface Operation {
  requestBody?: { required?: boolean; content: Record<string, unknown> };
  security?: unknown[];
  responses: Record<string, ResponseObject>;
  [member: string]: unknown;
}

interface ResponseObject {
  description: string;
  headers?: Record<string, { required?: boolean; schema: JsonSchema }>;
  content?: Record<string, { schema: JsonSchema }>;
}

type JsonSchema = Record<string, unknown>;

/** An answer as the client got it. */
export interface ObservedResponse {
  method: string;
  url: string;
  status: number;
  headers: OutgoingHttpHeaders;
  body: Buffer;
}

/**
 * The routes that are deliberately not in the document, with the reason:
 * anything else the document does not describe must be the 404 of an unknown route.
 */
export const UNDOCUMENTED: readonly { method: string; path: RegExp; reason: string }[] = [
  { method: "GET", path: /^\/client\/[^/]+$/, reason: "the browser client's files, for portals' pages (README), not an API" },
  { method: "GET", path: /^\/join\/[^/]+$/, reason: "the join page, HTML for people, not an API" },
  {
    method: "GET",
    path: /^\/docs\/.*$/,
    reason: "Swagger UI's own files and its copies of this document; /docs/ is the same page as /docs",
  },
  { method: "OPTIONS", path: /^\//, reason: "CORS preflights, answered by @fastify/cors for CORS_ORIGINS" },
];

/** RFC 9110 media type without its parameters, lower-cased. */
const essence = (contentType: string) => contentType.split(";")[0]?.trim().toLowerCase() ?? "";
const isJson = (mediaType: string) => mediaType === "application/json" || mediaType.endsWith("+json");

const SCHEMA_MAPS = ["properties", "patternProperties", "$defs", "dependentSchemas"];
const SCHEMA_LISTS = ["allOf", "anyOf", "oneOf", "prefixItems"];
const COMPONENTS_ID = "urn:joinwindow:openapi:components";

/**
 * A copy of a schema in which every object that does not say whether it allows
 * more members allows none. The document leaves problem objects open
 * (RFC 9457 extension members; API.md: fields may be added), but the service
 * must not send a member the document does not name: that is how an
 * undocumented `opensAt` goes unnoticed.
 */
function closed(schema: unknown): unknown {
  if (typeof schema !== "object" || schema === null || Array.isArray(schema)) return schema;
  const copy: JsonSchema = {};
  for (const [keyword, value] of Object.entries(schema)) {
    if (SCHEMA_MAPS.includes(keyword) && typeof value === "object" && value !== null) {
      copy[keyword] = Object.fromEntries(Object.entries(value).map(([name, sub]) => [name, closed(sub)]));
    } else if (SCHEMA_LISTS.includes(keyword) && Array.isArray(value)) {
      copy[keyword] = value.map(closed);
    } else if (keyword === "$ref" && typeof value === "string" && value.startsWith("#/components/schemas/")) {
      copy[keyword] = `${COMPONENTS_ID}#/$defs/${value.slice("#/components/schemas/".length)}`;
    } else if (typeof value === "object" && !Array.isArray(value) && !["const", "default", "enum", "examples"].includes(keyword)) {
      copy[keyword] = closed(value);
    } else {
      copy[keyword] = value;
    }
  }
  const open = ["additionalProperties", "unevaluatedProperties", "patternProperties"].some((keyword) => keyword in copy);
  if (copy.type === "object" && "properties" in copy && !open) copy.unevaluatedProperties = false;
  return copy;
}

interface CompiledResponse {
  /** By media type essence; null for a media type whose body is not checked (not JSON, not text). */
  content: Map<string, ValidateFunction | null> | null;
  headers: { name: string; required: boolean; validate: ValidateFunction; numeric: boolean }[];
}

interface CompiledOperation {
  method: string;
  path: string;
  pattern: RegExp;
  responses: Map<string, CompiledResponse>;
}

function pathPattern(template: string): RegExp {
  const parts = template.split(/\{[^}]+\}/).map((literal) => literal.replace(/[.*+?^$()|[\]\\]/g, "\\$&"));
  return new RegExp(`^${parts.join("[^/]+")}$`);
}

export class OpenApiResponseChecker {
  private readonly ajv = new Ajv2020({ strict: true, allErrors: true });
  private readonly operations: CompiledOperation[] = [];
  private readonly unknownRoute: ValidateFunction;

  constructor(readonly document: OpenApiDocument) {
    ajvFormats.default(this.ajv);
    // The OpenAPI 3.1 dialect's annotation keywords (OAS 3.1 §4.8.24).
    this.ajv.addVocabulary(["example", "discriminator", "xml", "externalDocs"]);
    this.ajv.addSchema({ $id: COMPONENTS_ID, $defs: closed(document.components?.schemas ?? {}) });
    for (const [path, item] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(item)) {
        const responses = new Map<string, CompiledResponse>();
        for (const [status, response] of Object.entries(operation.responses)) responses.set(status, this.compileResponse(response));
        this.operations.push({ method: method.toUpperCase(), path, pattern: pathPattern(path), responses });
      }
    }
    const notFound = problems("not_found")[404] as unknown as ResponseObject;
    this.unknownRoute = this.ajv.compile(closed(notFound.content?.["application/problem+json"]?.schema) as JsonSchema);
  }

  private compileResponse(response: ResponseObject): CompiledResponse {
    const content = response.content
      ? new Map(
          Object.entries(response.content).map(([mediaType, { schema }]) => {
            const type = essence(mediaType);
            const checked = isJson(type) || type.startsWith("text/");
            return [type, checked ? this.ajv.compile(closed(schema) as JsonSchema) : null];
          }),
        )
      : null;
    const headers = Object.entries(response.headers ?? {}).map(([name, header]) => ({
      name: name.toLowerCase(),
      required: header.required === true,
      validate: this.ajv.compile(header.schema),
      numeric: header.schema.type === "integer" || header.schema.type === "number",
    }));
    return { content, headers };
  }

  /** What is wrong with an answer, against the document; empty when it conforms. */
  check(response: ObservedResponse): string[] {
    const pathname = response.url.split("?")[0] ?? "";
    // HEAD answers as GET does, without a body.
    const method = response.method === "HEAD" ? "GET" : response.method;
    const operation = this.operations.find((candidate) => candidate.method === method && candidate.pattern.test(pathname));
    if (!operation) {
      if (UNDOCUMENTED.some((route) => route.method === method && route.path.test(pathname))) return [];
      const problem = this.parse(response, "application/problem+json");
      if (response.status !== 404 || typeof problem === "string" || !this.unknownRoute(problem.value)) {
        return [`${response.status} for a route the document does not describe: only the 404 not_found of an unknown route may answer there`];
      }
      return [];
    }
    const where = `${operation.method} ${operation.path}`;
    const status = String(response.status);
    const declared =
      operation.responses.get(status) ?? operation.responses.get(`${status[0]}XX`) ?? operation.responses.get("default");
    if (!declared) return [`${where}: status ${status} is not declared (declared: ${[...operation.responses.keys()].join(", ")})`];

    const issues: string[] = [];
    for (const header of declared.headers) {
      const raw = response.headers[header.name];
      if (raw === undefined) {
        if (header.required) issues.push(`${where} ${status}: required header ${header.name} is missing`);
        continue;
      }
      const value = header.numeric && /^-?\d+(\.\d+)?$/.test(String(raw)) ? Number(raw) : String(raw);
      if (!header.validate(value)) issues.push(`${where} ${status}: header ${header.name}: ${this.ajv.errorsText(header.validate.errors)}`);
    }
    if (response.method === "HEAD") return issues;

    if (!declared.content) {
      if (response.body.length > 0) issues.push(`${where} ${status}: a body where the document declares none`);
      return issues;
    }
    const type = essence(String(response.headers["content-type"] ?? ""));
    if (!declared.content.has(type)) {
      issues.push(`${where} ${status}: media type "${type}" is not declared (declared: ${[...declared.content.keys()].join(", ")})`);
      return issues;
    }
    const validate = declared.content.get(type);
    if (!validate) return issues;
    const body = this.parse(response, type);
    if (typeof body === "string") issues.push(`${where} ${status}: ${body}`);
    else if (!validate(body.value)) issues.push(`${where} ${status} ${type}: ${this.ajv.errorsText(validate.errors, { dataVar: "body" })}`);
    return issues;
  }

  /** The body as the media type says: parsed JSON, or the text; a string explains why it cannot be read. */
  private parse(response: ObservedResponse, type: string): { value: unknown } | string {
    const text = response.body.toString("utf8");
    if (!isJson(type)) return { value: text };
    if (essence(String(response.headers["content-type"] ?? "")) !== type) return `not ${type}`;
    try {
      return { value: JSON.parse(text) as unknown };
    } catch {
      return "the body is not JSON";
    }
  }
}

/** Mismatches seen on real HTTP, where the client cannot be failed: test/helpers/openapi-setup.ts fails the test that caused them. */
const seenOverHttp: string[] = [];

/** Hands over (and forgets) the mismatches of the answers sent over HTTP since the last call. */
export function takeMismatches(): string[] {
  return seenOverHttp.splice(0);
}

export function describeMismatch(response: ObservedResponse, issues: string[]): string {
  return `answer to ${response.method} ${response.url.split("?")[0]} (${response.status}) does not match /openapi.json:\n  ${issues.join("\n  ")}`;
}

/**
 * Records, from the server's side, every answer written on a real connection:
 * status, headers and the bytes of the body as they went out (Fastify's own
 * early answers included), and checks it once it is sent.
 */
export function observeHttp(checker: OpenApiResponseChecker) {
  return (request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    const headers: OutgoingHttpHeaders = {};
    const collect = (chunk: unknown, encoding: unknown) => {
      if (typeof chunk === "string") chunks.push(Buffer.from(chunk, typeof encoding === "string" ? (encoding as BufferEncoding) : "utf8"));
      else if (chunk instanceof Uint8Array) chunks.push(Buffer.from(chunk));
    };
    const { writeHead, write, end } = response;
    response.writeHead = function (this: ServerResponse, ...args: Parameters<ServerResponse["writeHead"]>) {
      const given = args.find((arg) => typeof arg === "object" && arg !== null);
      if (given && !Array.isArray(given)) {
        for (const [name, value] of Object.entries(given)) headers[name.toLowerCase()] = value as string;
      }
      return writeHead.apply(this, args);
    } as ServerResponse["writeHead"];
    response.write = function (this: ServerResponse, chunk: unknown, ...rest: unknown[]) {
      collect(chunk, rest[0]);
      return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
    } as ServerResponse["write"];
    response.end = function (this: ServerResponse, chunk?: unknown, ...rest: unknown[]) {
      if (typeof chunk !== "function") collect(chunk, rest[0]);
      return (end as (...args: unknown[]) => ServerResponse).call(this, chunk, ...rest);
    } as ServerResponse["end"];
    response.once("finish", () => {
      const observed: ObservedResponse = {
        method: request.method ?? "GET",
        url: request.url ?? "/",
        status: response.statusCode,
        headers: { ...response.getHeaders(), ...headers },
        body: Buffer.concat(chunks),
      };
      const issues = checker.check(observed);
      if (issues.length > 0) seenOverHttp.push(describeMismatch(observed, issues));
    });
  };
}
