/**
 * Explaining why an instance went away: the exit reason for events, and the error a failed start
 * rejects with (which the deploy shows the user, so it carries the instance's last output).
 */
import type { FuncdError } from "../../shared/errors.js";
import type { StartInterruption } from "../common/ready-wait.js";
import { startFailureError } from "../common/start-failure.js";
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

/**
 * The error `start()` rejects with when the instance exited or never became ready (worded as the Docker
 * driver's, in `../common/start-failure.ts`); output from bwrap or the cgroup step means the sandbox
 * could not be set up.
 */
export function startFailure(failed: FailedStart): FuncdError {
  const { exit } = failed;
  return startFailureError({
    functionName: failed.functionName,
    handler: failed.handler,
    memoryMb: failed.memoryMb,
    oomKilled: failed.oomKilled,
    exit,
    why: failed.why,
    readyTimeoutMs: failed.readyTimeoutMs,
    how: describeExit(exit.code, exit.signal, failed.sandboxed),
    sandboxFailed: exit.lastLogLines.some(
      (line) => line.startsWith("bwrap:") || line.startsWith("funcd: cannot enter cgroup"),
    ),
    ...(failed.subject === undefined ? {} : { subject: failed.subject }),
  });
}
