/**
 * The one registry of funcd's error codes. Every API error is rendered from a
 * `FuncdError` as RFC 9457 problem+json whose `type` is derived from the code,
 * and the CLI maps a response back to the same code. `docs/errors.md` lists the
 * same codes; a unit test keeps the two equal.
 */
export const ERRORS = {
  BAD_REQUEST: { status: 400, title: "Bad request" },
  VALIDATION_FAILED: { status: 400, title: "The request does not match the schema" },
  INVALID_NAME: { status: 400, title: "Invalid name" },
  UNKNOWN_RUNTIME: { status: 400, title: "Unknown runtime" },
  INVALID_ARCHIVE: { status: 400, title: "Invalid code archive" },
  INVALID_CALLBACK_URL: { status: 400, title: "Invalid callback URL" },
  MANIFEST_INVALID: { status: 400, title: "The manifest has invalid documents" },
  UNAUTHORIZED: { status: 401, title: "Missing or wrong API token" },
  NOT_FOUND: { status: 404, title: "Not found" },
  FUNCTION_NOT_FOUND: { status: 404, title: "Function not found" },
  REVISION_NOT_FOUND: { status: 404, title: "Revision not found" },
  SECRET_NOT_FOUND: { status: 404, title: "Secret not found" },
  ROUTE_NOT_FOUND: { status: 404, title: "No function is routed at this path" },
  METHOD_NOT_ALLOWED: { status: 405, title: "Method not allowed" },
  FUNCTION_TIMEOUT: { status: 408, title: "Function timed out" },
  ROUTE_CONFLICT: { status: 409, title: "Route already taken" },
  FUNCTION_EXISTS: { status: 409, title: "Function already exists" },
  SECRET_IN_USE: { status: 409, title: "Secret in use" },
  PAYLOAD_TOO_LARGE: { status: 413, title: "Payload too large" },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: "Unsupported media type" },
  EXPECTATION_FAILED: { status: 417, title: "Expectation not supported" },
  DEPLOY_FAILED: { status: 422, title: "Deploy failed" },
  HANDLER_LOAD_FAILED: { status: 422, title: "The handler could not be loaded" },
  QUEUE_FULL: { status: 429, title: "Too many requests waiting" },
  INTERNAL: { status: 500, title: "Internal error" },
  FUNCTION_ERROR: { status: 500, title: "The function threw an error" },
  FUNCTION_CRASHED: { status: 502, title: "Function crashed" },
  UPSTREAM_ERROR: { status: 502, title: "Bad answer from the function instance" },
  FUNCTION_UNAVAILABLE: { status: 503, title: "Function unavailable" },
  FUNCTION_FAILING: { status: 503, title: "Function is failing" },
  QUEUE_UNAVAILABLE: { status: 503, title: "The invocation could not be queued" },
  GATEWAY_TIMEOUT: { status: 504, title: "Function did not answer in time" },
  SANDBOX_UNAVAILABLE: { status: 500, title: "Sandbox cannot be set up" },
  CONFIG_INVALID: { status: 500, title: "Invalid configuration" },
  DOCKER_UNAVAILABLE: { status: 503, title: "No Docker engine answers" },
  BASE_IMAGE_MISSING: { status: 422, title: "Base image not available" },
  IMAGE_BUILD_FAILED: { status: 422, title: "Image build failed" },
  GIT_FAILED: { status: 422, title: "Git could not fetch the source" },
  BUILD_TEST_FAILED: { status: 422, title: "A build-time test failed" },
  IMAGE_NOT_FOUND: { status: 404, title: "Image not found" },
  IMAGE_IN_USE: { status: 409, title: "Image in use" },
  SWARM_UNAVAILABLE: { status: 503, title: "The engine is not a Docker Swarm manager" },
  REGISTRY_UNAVAILABLE: { status: 502, title: "The image registry cannot be used" },
  DAEMON_UNREACHABLE: { status: 503, title: "The funcd daemon cannot be reached" },
  PORT_IN_USE: { status: 500, title: "The daemon cannot listen on its port" },
  DATA_DIR_LOCKED: { status: 500, title: "Another funcd daemon uses this data dir" },
  DATA_DIR_UNREACHABLE: { status: 500, title: "Sandboxed functions cannot reach the data dir" },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof ERRORS;

/** Base URI of problem `type`s; the fragment is the lower-kebab error code. */
export const PROBLEM_TYPE_BASE = "https://funcd.dev/errors#";

export function problemType(code: ErrorCode): string {
  return PROBLEM_TYPE_BASE + code.toLowerCase().replaceAll("_", "-");
}

export function codeFromProblemType(type: string): ErrorCode | undefined {
  if (!type.startsWith(PROBLEM_TYPE_BASE)) return undefined;
  const code = type.slice(PROBLEM_TYPE_BASE.length).toUpperCase().replaceAll("-", "_");
  return code in ERRORS ? (code as ErrorCode) : undefined;
}

export interface FuncdErrorOptions {
  cause?: unknown;
  /** Extra members for the problem document (e.g. `errors`, `retryAfter`, `logs`). */
  extra?: Record<string, unknown>;
  /** Seconds a client should wait before retrying (adds a `Retry-After` header). */
  retryAfter?: number;
}

/** An error whose code, status and message are meant for the user. */
export class FuncdError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly title: string;
  readonly extra: Record<string, unknown>;
  readonly retryAfter: number | undefined;

  constructor(code: ErrorCode, detail: string, options: FuncdErrorOptions = {}) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "FuncdError";
    this.code = code;
    this.status = ERRORS[code].status;
    this.title = ERRORS[code].title;
    this.extra = options.extra ?? {};
    this.retryAfter = options.retryAfter;
  }

  /** The RFC 9457 problem document for this error. */
  toProblem(instance?: string): Problem {
    return {
      type: problemType(this.code),
      title: this.title,
      status: this.status,
      detail: this.message,
      code: this.code,
      ...(instance === undefined ? {} : { instance }),
      ...this.extra,
    };
  }
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  instance?: string;
  [extra: string]: unknown;
}

export function isFuncdError(err: unknown, code?: ErrorCode): err is FuncdError {
  return err instanceof FuncdError && (code === undefined || err.code === code);
}

/** A readable one-line message for any thrown value. */
export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
