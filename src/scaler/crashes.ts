import { FuncdError } from "../shared/errors.js";
import { rejectWaiters } from "./activator.js";
import { type FleetHost, type LastExit, serving, type Unit } from "./unit.js";

/**
 * Crash accounting: consecutive crashes push the next start back (see
 * backoff.ts), and past `FAILING_AFTER_CRASHES` the function is "failing" —
 * waiting requests are turned away with the last exit's reason and logs.
 */

/** A crash-looping function is one whose instances died this many times in a row. */
export const FAILING_AFTER_CRASHES = 3;

export function isFailing(unit: Unit): boolean {
  return unit.consecutiveCrashes >= FAILING_AFTER_CRASHES;
}

export function recordCrash(
  host: Pick<FleetHost, "clock" | "logger" | "backoff" | "scheduleRestart">,
  unit: Unit,
  exit: LastExit,
): void {
  unit.lastExit = exit;
  unit.consecutiveCrashes++;
  const delay = host.backoff(unit.consecutiveCrashes);
  unit.backoffUntil = host.clock.now() + delay;
  if (unit.consecutiveCrashes >= FAILING_AFTER_CRASHES) {
    host.logger.error({ function: unit.name, crashes: unit.consecutiveCrashes }, "function is crash-looping");
    rejectWaiters(unit, () => failingError(unit, host.clock.now()));
  }
  const wanted = unit.waiters.length > 0 || serving(unit).length < unit.spec.scale.min;
  if (wanted) host.scheduleRestart(unit, delay);
}

/** Starts again after the backoff: the `min` instances, and more if requests wait. */
export function scheduleRestart(
  host: Pick<FleetHost, "clock" | "ensureMin" | "wantMore">,
  unit: Unit,
  delayMs: number,
): void {
  if (unit.restartTimer) return;
  unit.restartTimer = host.clock.setTimeout(() => {
    unit.restartTimer = null;
    host.ensureMin(unit);
    if (unit.waiters.length > 0) host.wantMore(unit);
  }, delayMs);
}

export function failingError(unit: Unit, now: number): FuncdError {
  const retryAfter = Math.max(1, Math.ceil((unit.backoffUntil - now) / 1000));
  const exit = unit.lastExit;
  return new FuncdError(
    "FUNCTION_FAILING",
    `Function "${unit.name}" is failing: its instances exited ${unit.consecutiveCrashes} times in a row` +
      (exit ? ` (last: ${exit.reason}${exit.code === null ? "" : `, exit code ${exit.code}`})` : ""),
    { retryAfter, extra: { logs: exit?.lastLogLines ?? [] } },
  );
}
