/**
 * The errors a failed start rejects with (the deploy shows them to the user, so they carry the
 * container's last output), worded as the process driver words them.
 */
import { FuncdError, messageOf } from "../../shared/errors.js";
import type { InstanceExit, InstanceSpec } from "../driver.js";
import { describeExit } from "./container.js";

/**
 * Why waiting for readiness stopped, other than the caller's abort. `load-failed`: a generic container
 * answered its specialization with "the handler cannot be loaded".
 */
export type StartInterruption = "exited" | "timeout" | "load-failed";

/** Why the readiness wait was cut short (other than by the caller). */
export class Interrupted {
  constructor(readonly why: StartInterruption) {}
}

/** The error `start()` rejects with when the container exited or never became ready. */
export function startFailure(
  spec: Pick<InstanceSpec, "functionName" | "handler" | "memoryMb">,
  exit: InstanceExit,
  why: StartInterruption,
  oomKilled: boolean,
  readyTimeoutMs: number,
): FuncdError {
  const logs = exit.lastLogLines;
  const output = logs.length > 0 ? `:\n${logs.join("\n")}` : " (it wrote no output)";
  const extra = { extra: { logs } };
  const subject = `Function "${spec.functionName}"`;
  if (why === "timeout") {
    return new FuncdError(
      "FUNCTION_UNAVAILABLE",
      `${subject} did not answer /healthz within ${readyTimeoutMs} ms and was stopped${output}`,
      extra,
    );
  }
  // The runtime contract's "the handler could not be imported".
  if (exit.code === 3 || why === "load-failed") {
    return new FuncdError(
      "HANDLER_LOAD_FAILED",
      `${subject} failed to start: its handler "${spec.handler}" could not be loaded${output}`,
      extra,
    );
  }
  if (oomKilled) {
    return new FuncdError(
      "FUNCTION_CRASHED",
      `${subject} was killed at its memory limit of ${spec.memoryMb} MiB while starting${output}`,
      extra,
    );
  }
  return new FuncdError(
    "FUNCTION_CRASHED",
    `${subject} exited while starting (${describeExit(exit.code)})${output}`,
    extra,
  );
}

/** The error for a container the engine would not create: a missing image is the usual one. */
export function createFailure(err: unknown, spec: InstanceSpec, image: string, endpoint: string): FuncdError {
  const status = (err as { statusCode?: number } | null)?.statusCode;
  if (status === 404) return imageMissing(spec, image, endpoint, err);
  if (status === 409) {
    return new FuncdError("BAD_REQUEST", `Instance "${spec.instanceId}" already has a container`, {
      cause: err,
    });
  }
  return new FuncdError(
    "SANDBOX_UNAVAILABLE",
    `Cannot create a container for function "${spec.functionName}" from image "${image}": ${messageOf(err)}`,
    { cause: err },
  );
}

export function imageMissing(
  spec: InstanceSpec,
  image: string,
  endpoint: string,
  cause?: unknown,
): FuncdError {
  return new FuncdError(
    "IMAGE_NOT_FOUND",
    `Image "${image}" of function "${spec.functionName}" does not exist on the Docker engine at ${endpoint}: build or deploy the function again`,
    { extra: { image }, ...(cause === undefined ? {} : { cause }) },
  );
}
