import { codeFromProblemType, ERRORS, type ErrorCode, FuncdError } from "../shared/errors.js";

/** `USAGE` marks mistakes in the command line or in local input files; it is not an API code. */
export type CliErrorCode = ErrorCode | "USAGE";

export interface CliErrorOptions {
  title?: string;
  status?: number;
  /** Other members of the problem document (`errors`, `logs`, …), printed under the message. */
  extra?: Record<string, unknown>;
  /** One line telling the user what to try next. */
  hint?: string;
  /** The detail says it all: print `Error: <detail>` without the title. */
  bare?: boolean;
  cause?: unknown;
}

/**
 * An error the CLI shows to the user and exits on. API errors carry the code,
 * title, detail and status of the daemon's problem document (exit 1); usage
 * errors are the user's command line or files being wrong (exit 2).
 */
export class CliError extends Error {
  readonly code: CliErrorCode;
  readonly title: string;
  readonly detail: string;
  readonly status: number | undefined;
  readonly extra: Record<string, unknown>;
  readonly hint: string | undefined;
  readonly bare: boolean;

  constructor(code: CliErrorCode, detail: string, options: CliErrorOptions = {}) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "CliError";
    this.code = code;
    this.detail = detail;
    this.title = options.title ?? (code === "USAGE" ? "Invalid usage" : ERRORS[code].title);
    this.status = options.status ?? (code === "USAGE" ? undefined : ERRORS[code].status);
    this.extra = options.extra ?? {};
    this.hint = options.hint;
    this.bare = options.bare ?? false;
  }

  /** 2 for usage errors, 1 for everything the daemon (or the network) said no to. */
  get exitCode(): 1 | 2 {
    return this.code === "USAGE" ? 2 : 1;
  }

  /** The same error with a hint added (errors are immutable so callers can rethrow safely). */
  withHint(hint: string): CliError {
    return new CliError(this.code, this.detail, {
      title: this.title,
      ...(this.status === undefined ? {} : { status: this.status }),
      extra: this.extra,
      hint,
      bare: this.bare,
      cause: this.cause,
    });
  }
}

export function usageError(detail: string, hint?: string): CliError {
  return new CliError("USAGE", detail, hint === undefined ? {} : { hint });
}

/** Generic codes to fall back on when a response is not a problem document we understand. */
const CODE_BY_STATUS: Partial<Record<number, ErrorCode>> = {
  400: "BAD_REQUEST",
  401: "UNAUTHORIZED",
  404: "NOT_FOUND",
  405: "METHOD_NOT_ALLOWED",
  408: "FUNCTION_TIMEOUT",
  409: "FUNCTION_EXISTS",
  413: "PAYLOAD_TOO_LARGE",
  415: "UNSUPPORTED_MEDIA_TYPE",
  422: "DEPLOY_FAILED",
  502: "UPSTREAM_ERROR",
  503: "FUNCTION_UNAVAILABLE",
  504: "GATEWAY_TIMEOUT",
};

function codeForStatus(status: number): ErrorCode {
  return CODE_BY_STATUS[status] ?? (status >= 500 ? "INTERNAL" : "BAD_REQUEST");
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** Problem members that are not printed as "extra" details. */
const PROBLEM_MEMBERS = new Set(["type", "title", "status", "detail", "code", "instance"]);

/**
 * Maps an RFC 9457 problem document (or whatever a failed response held) back to
 * the registry's code: the `type` URI first, then a `code` member, then the status.
 */
export function cliErrorFromProblem(problem: unknown, status: number): CliError {
  if (!isRecord(problem)) {
    const text = typeof problem === "string" ? problem.trim().slice(0, 500) : "";
    const code = codeForStatus(status);
    return new CliError(code, text || `The daemon answered HTTP ${status}`, { status });
  }
  const fromType = typeof problem.type === "string" ? codeFromProblemType(problem.type) : undefined;
  const fromMember =
    typeof problem.code === "string" && problem.code in ERRORS ? (problem.code as ErrorCode) : undefined;
  const code = fromType ?? fromMember ?? codeForStatus(status);
  const title = typeof problem.title === "string" && problem.title ? problem.title : ERRORS[code].title;
  const detail = typeof problem.detail === "string" ? problem.detail : "";
  const extra: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(problem)) if (!PROBLEM_MEMBERS.has(key)) extra[key] = value;
  const problemStatus = typeof problem.status === "number" ? problem.status : status;
  return new CliError(code, detail, { title, status: problemStatus, extra });
}

/** Anything thrown, as a CliError (unknown errors keep their message and become INTERNAL). */
export function toCliError(err: unknown): CliError {
  if (err instanceof CliError) return err;
  // Errors of the daemon's own modules (the `server` verb runs in-process) keep their code.
  if (err instanceof FuncdError) {
    return new CliError(err.code, err.message, {
      title: err.title,
      status: err.status,
      extra: err.extra,
      cause: err,
    });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new CliError("INTERNAL", message, { title: "Unexpected error", cause: err });
}
