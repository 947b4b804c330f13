import type { FastifyError, FastifyInstance } from "fastify";
import { hasZodFastifySchemaValidationErrors } from "fastify-type-provider-zod";
import { ZodError } from "zod";
import { type ErrorCode, FuncdError, messageOf } from "../shared/errors.js";

/** Fastify's own error codes, mapped onto ours so every answer is problem+json with a stable type. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: "PAYLOAD_TOO_LARGE",
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "UNSUPPORTED_MEDIA_TYPE",
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: "BAD_REQUEST",
  FST_ERR_CTP_EMPTY_JSON_BODY: "BAD_REQUEST",
  FST_ERR_CTP_INVALID_JSON_BODY: "BAD_REQUEST",
};

/** Turns whatever a route threw into a FuncdError. */
export function toFuncdError(err: unknown): FuncdError {
  if (err instanceof FuncdError) return err;
  if (hasZodFastifySchemaValidationErrors(err)) {
    const errors = err.validation.map((v) => ({
      path: v.instancePath.replace(/^\//, "").replaceAll("/", ".") || "(body)",
      message: v.message ?? "invalid",
    }));
    const onName = errors.some((e) => e.path === "name");
    const summary = errors.map((e) => `${e.path}: ${e.message}`).join("; ");
    return new FuncdError(onName ? "INVALID_NAME" : "VALIDATION_FAILED", `Invalid request: ${summary}`, {
      extra: { errors },
    });
  }
  if (err instanceof ZodError) {
    const errors = err.issues.map((i) => ({ path: i.path.join(".") || "(body)", message: i.message }));
    return new FuncdError(
      "VALIDATION_FAILED",
      `Invalid request: ${errors.map((e) => `${e.path}: ${e.message}`).join("; ")}`,
      {
        extra: { errors },
      },
    );
  }
  const fastifyError = err as FastifyError;
  const mapped = fastifyError.code ? FASTIFY_CODES[fastifyError.code] : undefined;
  if (mapped) return new FuncdError(mapped, fastifyError.message);
  if (fastifyError.statusCode && fastifyError.statusCode < 500) {
    return new FuncdError("BAD_REQUEST", fastifyError.message);
  }
  return new FuncdError("INTERNAL", `Internal error: ${messageOf(err)}`, { cause: err });
}

/** A route's path pattern as a regular expression over concrete paths (`:name` → one segment, `*` → any). */
function patternOf(url: string): RegExp {
  const body = url
    .split("/")
    .map((seg) =>
      seg === "*" ? ".*" : seg.startsWith(":") ? "[^/]+" : seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"),
    )
    .join("/");
  return new RegExp(`^${body}/?$`);
}

/**
 * Installs problem+json error and not-found handlers. A path that exists with other methods answers
 * 405 with `Allow` (what docs/errors.md promises) rather than 404.
 */
export function installProblemHandlers(app: FastifyInstance): void {
  const routes: { pattern: RegExp; methods: string[] }[] = [];
  app.addHook("onRoute", (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    routes.push({ pattern: patternOf(route.url), methods: methods.map(String) });
  });
  app.setErrorHandler((err, request, reply) => {
    const error = toFuncdError(err);
    if (error.status >= 500) request.log.error({ err }, "request failed");
    if (error.retryAfter !== undefined) reply.header("retry-after", error.retryAfter);
    return reply.code(error.status).type("application/problem+json").send(error.toProblem(request.url));
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split("?")[0] ?? "";
    const allowed = new Set(routes.filter((r) => r.pattern.test(path)).flatMap((r) => r.methods));
    if (allowed.size > 0 && !allowed.has(request.method)) {
      const error = new FuncdError(
        "METHOD_NOT_ALLOWED",
        `${path} does not take ${request.method}; it takes ${[...allowed].join(", ")}`,
      );
      reply.header("allow", [...allowed].join(", "));
      return reply.code(405).type("application/problem+json").send(error.toProblem(request.url));
    }
    const error = new FuncdError("NOT_FOUND", `Nothing at ${request.method} ${request.url.split("?")[0]}`);
    return reply.code(404).type("application/problem+json").send(error.toProblem(request.url));
  });
}
