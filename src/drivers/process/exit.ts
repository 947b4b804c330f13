/**
 * Explaining why an instance went away: the exit reason for events, and the error a failed start
 * rejects with (which the deploy shows the user, so it carries the instance's last output).
 */
import { FuncdError } from "../../shared/errors.js";
import type { ExitReason, InstanceExit } from "../driver.js";

/** The reason of an exit the instance's owner did not ask for. */
export function exitReason(code: number | null, signal: string | null, oomKilled: boolean): ExitReason {
  const clean = code === 0 && signal === null;
  if (clean) return "exited";
  return oomKilled ? "OOMKilled" : "crashed";
}

/** "code 1", "signal SIGKILL"; bwrap reports a runtime killed by a signal as 128 + its number. */
export function describeExit(code: number | null, signal: string | null, sandboxed: boolean): string {
  if (signal !== null) return `signal ${signal}`;
  if (sandboxed && code !== null && code > 128 && code < 160)
    return `code ${code}, i.e. killed by signal ${code - 128}`;
  return `code ${code}`;
}

/**
 * Why waiting for readiness stopped, other than the caller's abort. `load-failed`: a generic instance
 * answered its specialization with "the handler cannot be loaded".
 */
export type StartInterruption = "exited" | "timeout" | "load-failed";

export interface FailedStart {
  functionName: string;
  handler: string;
  memoryMb: number;
  sandboxed: boolean;
  oomKilled: boolean;
  exit: InstanceExit;
  why: StartInterruption;
  readyTimeoutMs: number;
  /** Who failed, for the message, in lower case; default `function "<functionName>"`. */
  subject?: string;
}

/** The error `start()` rejects with when the instance exited or never became ready. */
export function startFailure(failed: FailedStart): FuncdError {
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
  if (logs.some((line) => line.startsWith("bwrap:") || line.startsWith("funcd: cannot enter cgroup"))) {
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
  const how = describeExit(exit.code, exit.signal, failed.sandboxed);
  return new FuncdError("FUNCTION_CRASHED", `${Subject} exited while starting (${how})${output}`, extra);
}
