/**
 * The errors a failed start rejects with (the deploy shows them to the user, so they carry the
 * container's last output): those both drivers share (`../common/start-failure.ts`), and the engine's own.
 */
import { FuncdError, messageOf } from "../../shared/errors.js";
import type { StartInterruption } from "../common/ready-wait.js";
import { startFailureError } from "../common/start-failure.js";
import type { InstanceExit, InstanceSpec } from "../driver.js";
import { describeExit } from "./container.js";

/** The error `start()` rejects with when the container exited or never became ready. */
export function startFailure(
  spec: Pick<InstanceSpec, "functionName" | "handler" | "memoryMb">,
  exit: InstanceExit,
  why: StartInterruption,
  oomKilled: boolean,
  readyTimeoutMs: number,
): FuncdError {
  return startFailureError({
    functionName: spec.functionName,
    handler: spec.handler,
    memoryMb: spec.memoryMb,
    oomKilled,
    exit,
    why,
    readyTimeoutMs,
    how: describeExit(exit.code),
  });
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
