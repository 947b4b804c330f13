/**
 * Telling a driver's listeners that an instance went away unasked, for both drivers: an `exit` for a
 * function's instance (the fleet's business), a `generic-exit` for a warm pool instance nobody
 * specialized (the pool's); nothing for a stop or a failed start.
 */
import type { Logger } from "pino";
import type { DriverEvent, InstanceExit, InstanceInfo } from "../driver.js";

export type DriverListener = (event: DriverEvent) => void;

/** Hands `event` to every listener; one that throws is logged and does not keep it from the others. */
export function notify(listeners: Iterable<DriverListener>, logger: Logger, event: DriverEvent): void {
  for (const listener of listeners) {
    try {
      listener(event);
    } catch (err) {
      logger.error({ err }, "a driver event listener threw");
    }
  }
}

/** What announcing an exit reads of the instance. */
export interface ExitingInstance {
  /** start() resolved (or reconcile adopted it): from then on an exit is news. */
  announced: boolean;
  /** stop() asked for this exit. */
  stopRequested: boolean;
  /** Set while it is a generic (warm pool) instance. */
  generic: { runtime: string } | undefined;
  info: InstanceInfo;
}

/**
 * Logs and announces `exit` when nobody asked for it (see the module comment); `kind` names the
 * instance in the log line ("warm pool container exited").
 */
export function announceExit(
  host: { logger: Logger; listeners: Iterable<DriverListener> },
  inst: ExitingInstance,
  exit: InstanceExit,
  kind: "instance" | "container",
): void {
  if (!inst.announced || inst.stopRequested) return;
  const { instanceId, functionName } = inst.info;
  const { reason, code, signal } = exit;
  if (inst.generic !== undefined) {
    const { runtime } = inst.generic;
    host.logger.warn({ poolInstance: instanceId, runtime, reason, code, signal }, `warm pool ${kind} exited`);
    notify(host.listeners, host.logger, { type: "generic-exit", poolId: instanceId, runtime, exit });
    return;
  }
  host.logger.info({ instance: instanceId, function: functionName, reason, code, signal }, "instance exited");
  notify(host.listeners, host.logger, { type: "exit", instanceId, functionName, exit });
}
