import { FuncdError, messageOf } from "../shared/errors.js";

/** What a failed hop to an instance says about the instance. */
export type HopFailure =
  /** The instance went silent past its timeout: it is killed. */
  | "timeout"
  /** The connection to the instance broke (it died or closed on us): it is retired as crashed. */
  | "crashed"
  /** The request could not be sent as it was (the client's doing): the instance is untouched. */
  | "request"
  /** The client went away before the answer was complete: the instance is untouched. */
  | "client-gone"
  /** The instance answered something unreadable: the request fails, the instance keeps serving. */
  | "bad-answer"
  /** Anything else (a fault of funcd's own): logged, the instance is untouched. */
  | "internal";

/**
 * Connection-level failures: only these mean the instance crashed or exited. Matched by code (undici's
 * `UND_ERR_*`, errno names) rather than by class so an error from another undici copy still counts.
 */
const CONNECTION_LOST = new Set([
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_DESTROYED",
  "UND_ERR_CONNECT_TIMEOUT",
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ENOENT",
]);

/** undici refusing the request itself (a header or body it will not send): nothing reached the instance. */
const REQUEST_REFUSED = new Set([
  "UND_ERR_INVALID_ARG",
  "UND_ERR_NOT_SUPPORTED",
  "UND_ERR_REQ_CONTENT_LENGTH_MISMATCH",
]);

const TIMEOUTS = new Set(["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT"]);

const CLIENT_GONE = new Set(["UND_ERR_ABORTED", "UND_ERR_ABORT", "ERR_STREAM_PREMATURE_CLOSE"]);

/**
 * Classifies an error from the proxy hop. The default is *not* a crash: an instance is declared crashed
 * only when its connection was lost, so nothing a client sends (headers undici refuses, a body that
 * fails, an abort) can get an instance thrown away. `requestFailed` is set when the client's side of the
 * hop (its body stream, its connection) failed first: whatever undici reports then is the client's doing.
 */
export function classifyHopError(err: unknown, requestFailed = false): HopFailure {
  const code = errorCode(err);
  const name = err instanceof Error ? err.name : "";
  if (code !== undefined && TIMEOUTS.has(code)) return "timeout";
  if (name === "AbortError" || name === "ClientGone" || (code !== undefined && CLIENT_GONE.has(code)))
    return "client-gone";
  if (requestFailed) return "request";
  if (code !== undefined && REQUEST_REFUSED.has(code)) return "request";
  if (code !== undefined && CONNECTION_LOST.has(code)) return "crashed";
  if (code?.startsWith("UND_ERR") || code?.startsWith("HPE_") || name === "HTTPParserError")
    return "bad-answer";
  return "internal";
}

/** The error a client sees for a failed hop (a crash is explained further by the caller, from the exit). */
export function hopError(
  failure: HopFailure,
  err: unknown,
  name: string,
  instanceId: string,
  timeoutMs: number,
): FuncdError {
  switch (failure) {
    case "timeout":
      return new FuncdError(
        "GATEWAY_TIMEOUT",
        `Function "${name}" did not answer within its ${timeoutMs} ms timeout; instance ${instanceId} was stopped`,
      );
    case "client-gone":
      return new FuncdError("BAD_REQUEST", "The client closed the request");
    case "request":
      return new FuncdError(
        "BAD_REQUEST",
        `The request could not be passed to function "${name}": ${messageOf(err)}`,
      );
    case "crashed":
      return new FuncdError(
        "FUNCTION_CRASHED",
        `Function "${name}" closed the connection before answering (instance ${instanceId} crashed or exited): ${messageOf(err)}`,
      );
    case "bad-answer":
      return new FuncdError(
        "UPSTREAM_ERROR",
        `Function "${name}" (instance ${instanceId}) answered something that is not valid HTTP: ${messageOf(err)}`,
      );
    case "internal":
      return new FuncdError(
        "INTERNAL",
        `Passing the request to function "${name}" failed: ${messageOf(err)}`,
        {
          cause: err,
        },
      );
  }
}

function errorCode(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" ? code : undefined;
}
