/**
 * The error a failed start rejects with, worded alike for both drivers: the deploy shows it to the user,
 * so it says what happened (timeout, a handler that does not load, a sandbox that could not be set up,
 * the memory limit, an exit) and carries the instance's last output.
 */
import { FuncdError } from "../../shared/errors.js";
import type { InstanceExit } from "../driver.js";
import type { StartInterruption } from "./ready-wait.js";

export interface FailedStartReport {
  functionName: string;
  handler: string;
  memoryMb: number;
  oomKilled: boolean;
  exit: InstanceExit;
  why: StartInterruption;
  readyTimeoutMs: number;
  /** How the instance exited, as the driver words it: "code 1", "signal SIGKILL", … */
  how: string;
  /** The instance's own output says its sandbox could not be set up (process driver: bwrap, cgroup). */
  sandboxFailed?: boolean;
  /** Who failed, for the message, in lower case; default `function "<functionName>"`. */
  subject?: string;
}

/** The error `start()` rejects with when the instance exited or never became ready. */
export function startFailureError(failed: FailedStartReport): FuncdError {
  const { exit } = failed;
  const subject = failed.subject ?? `function "${failed.functionName}"`;
  const Subject = subject.charAt(0).toUpperCase() + subject.slice(1);
  const logs = exit.lastLogLines;
  const output = logs.length > 0 ? `:\n${logs.join("\n")}` : " (it wrote no output)";
  const extra = { extra: { logs } };
  if (failed.why === "timeout") {
    return new FuncdError(
      "FUNCTION_UNAVAILABLE",
      `${Subject} did not answer /healthz within ${failed.readyTimeoutMs} ms and was stopped${output}`,
      extra,
    );
  }
  // The runtime contract's "the handler could not be imported".
  if (exit.code === 3 || failed.why === "load-failed") {
    return new FuncdError(
      "HANDLER_LOAD_FAILED",
      `${Subject} failed to start: its handler "${failed.handler}" could not be loaded${output}`,
      extra,
    );
  }
  if (failed.sandboxFailed) {
    return new FuncdError(
      "SANDBOX_UNAVAILABLE",
      `The sandbox for ${subject} could not be set up${output}`,
      extra,
    );
  }
  if (failed.oomKilled) {
    return new FuncdError(
      "FUNCTION_CRASHED",
      `${Subject} was killed at its memory limit of ${failed.memoryMb} MiB while starting${output}`,
      extra,
    );
  }
  return new FuncdError(
    "FUNCTION_CRASHED",
    `${Subject} exited while starting (${failed.how})${output}`,
    extra,
  );
}
