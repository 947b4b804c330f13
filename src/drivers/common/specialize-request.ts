/**
 * Telling a generic (warm pool) runtime to become an instance of a function: `POST /_funcd/specialize`
 * on its address (docs/runtime-contract.md), for both drivers — what it is sent, how its answer is read,
 * and the error a specialization that failed for a reason of its own rejects with.
 */
import { Client } from "undici";
import { FuncdError, messageOf } from "../../shared/errors.js";
import type { InstanceAddress, InstanceExit, InstanceSpec } from "../driver.js";
import { Interrupted, type ReadyWait } from "./ready-wait.js";

/** How long a runtime that could not load the handler is given to exit (code 3) by itself. */
const LOAD_FAILURE_EXIT_MS = 1_000;

/** What the runtime needs to become an instance of a function (docs/runtime-contract.md). */
export interface Specialization {
  handler: string;
  handlerStyle?: string;
  /** The instance's whole environment, as a normal start would give it. */
  env: Record<string, string>;
  functionName: string;
  revision: string;
  timeoutMs: number;
  memoryMb: number;
}

/**
 * Has the runtime at `address` load `spec`'s handler with `env` (the instance's whole environment).
 * Rejects with `Interrupted("load-failed")` when the runtime says the handler cannot be loaded (422),
 * with an Error for any other answer but 200, and with `signal`'s reason when it aborts.
 */
export async function specializeRuntime(
  address: InstanceAddress,
  spec: InstanceSpec,
  env: Record<string, string>,
  signal: AbortSignal,
): Promise<void> {
  const answer = await requestSpecialization(
    address,
    {
      handler: spec.handler,
      ...(spec.handlerStyle === undefined ? {} : { handlerStyle: spec.handlerStyle }),
      env,
      functionName: spec.functionName,
      revision: spec.revisionId,
      timeoutMs: spec.timeoutMs,
      memoryMb: spec.memoryMb,
    },
    signal,
  );
  if (answer.status === 422) throw new Interrupted("load-failed");
  if (answer.status !== 200) {
    throw new Error(`the runtime answered its specialization with ${answer.status}: ${answer.text}`);
  }
}

/**
 * Why a specialization failed with `err`: the handler's load failure, else the reason `wait` was cut
 * short (exit, timeout, the caller's abort), else `err`. A runtime that could not load the handler exits
 * (code 3) right after saying so: it is given a moment to, so its exit and output are its own.
 */
export async function whySpecializationFailed(
  err: unknown,
  wait: ReadyWait,
  exitSeen: Promise<void>,
): Promise<unknown> {
  if (!(err instanceof Interrupted && err.why === "load-failed")) return wait.reason(err);
  await Promise.race([exitSeen, new Promise((resolve) => setTimeout(resolve, LOAD_FAILURE_EXIT_MS))]);
  return err;
}

/** The error of a specialization that failed for a reason of its own (not an exit, timeout or load failure). */
export function specializationFailure(spec: InstanceSpec, why: unknown, exit: InstanceExit): FuncdError {
  return new FuncdError(
    "FUNCTION_UNAVAILABLE",
    `Function "${spec.functionName}" could not be specialized from the warm pool: ${messageOf(why)}`,
    { cause: why, extra: { logs: exit.lastLogLines } },
  );
}

/** `POST /_funcd/specialize` on the instance's address; resolves with the answer's status and body. */
async function requestSpecialization(
  address: InstanceAddress,
  body: Specialization,
  signal: AbortSignal,
): Promise<{ status: number; text: string }> {
  const client =
    "socketPath" in address
      ? new Client("http://localhost", { socketPath: address.socketPath, pipelining: 0 })
      : new Client(`http://${address.host}:${address.port}`, { pipelining: 0 });
  try {
    const res = await client.request({
      path: "/_funcd/specialize",
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal,
      // The caller's timer bounds the wait (a large module may take long to import).
      headersTimeout: 0,
      bodyTimeout: 0,
    });
    return { status: res.statusCode, text: await res.body.text() };
  } finally {
    // Not awaited: the answer is in, and the cold start should not wait for the connection to close.
    client.destroy().catch(() => undefined);
  }
}
