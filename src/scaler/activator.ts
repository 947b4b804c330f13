import type { EventEmitter } from "node:events";
import { defaultConcurrency } from "../deploy/spec.js";
import { FuncdError } from "../shared/errors.js";
import { type FleetHost, type Lease, measure, pickReady, type Unit, type Waiter } from "./unit.js";

/**
 * The activator role: requests that find no free instance wait in the
 * function's queue (bounded, with a cold-start deadline and client abort)
 * while instances start, and are handed out as instances become free.
 */

/**
 * Queues a request until an instance is free. Throws `QUEUE_FULL` at once
 * when `maxQueuedPerFunction` requests already wait; the promise rejects with
 * `FUNCTION_UNAVAILABLE` after `coldStartWaitMs`, or `BAD_REQUEST` when the
 * client aborts.
 */
export function waitForInstance(
  host: Pick<FleetHost, "clock" | "coldStartWaitMs" | "maxQueuedPerFunction" | "wantMore">,
  unit: Unit,
  cancel?: EventEmitter,
): Promise<Lease> {
  const name = unit.name;
  const maxQueued = host.maxQueuedPerFunction;
  if (unit.waiters.length >= maxQueued) {
    throw new FuncdError(
      "QUEUE_FULL",
      `Function "${name}" already has ${unit.waiters.length} requests waiting for an instance (the limit is ${maxQueued})`,
      { retryAfter: 1 },
    );
  }
  return new Promise<Lease>((resolve, reject) => {
    const timer = host.clock.setTimeout(() => {
      remove();
      reject(
        new FuncdError(
          "FUNCTION_UNAVAILABLE",
          `Function "${name}" had no instance ready within ${host.coldStartWaitMs} ms` +
            (unit.lastStartError ? `: ${unit.lastStartError.message}` : ""),
          { retryAfter: 1 },
        ),
      );
    }, host.coldStartWaitMs);
    const onAbort = () => {
      remove();
      reject(new FuncdError("BAD_REQUEST", "The client went away while waiting for an instance"));
    };
    const waiter: Waiter = {
      queuedAt: host.clock.now(),
      resolve: (lease) => {
        cleanup();
        resolve(lease);
      },
      reject: (err) => {
        cleanup();
        reject(err);
      },
      cancel: () => cleanup(),
    };
    const cleanup = () => {
      timer.cancel();
      cancel?.off("abort", onAbort);
    };
    const remove = () => {
      cleanup();
      const at = unit.waiters.indexOf(waiter);
      if (at >= 0) unit.waiters.splice(at, 1);
      measure(unit, host.clock.now());
    };
    cancel?.once("abort", onAbort);
    unit.waiters.push(waiter);
    measure(unit, host.clock.now());
    host.wantMore(unit);
  });
}

/** Gives waiting requests to free instances, and asks for more if some still wait. */
export function dispatch(host: Pick<FleetHost, "clock" | "lease" | "wantMore">, unit: Unit): void {
  while (unit.waiters.length > 0) {
    const free = pickReady(unit);
    if (!free) break;
    const waiter = unit.waiters.shift();
    waiter?.resolve(host.lease(unit, free, free.served === 0));
    measure(unit, host.clock.now());
  }
  if (unit.waiters.length > 0) host.wantMore(unit);
}

/**
 * Starts instances while the waiting requests exceed what starting
 * instances will be able to take, up to `scale.max`.
 */
export function wantMore(
  host: Pick<FleetHost, "clock" | "isDisposed" | "launch" | "scheduleRestart">,
  unit: Unit,
): void {
  const revision = unit.revision;
  if (!revision || host.isDisposed()) return;
  const now = host.clock.now();
  if (now < unit.backoffUntil) {
    host.scheduleRestart(unit, unit.backoffUntil - now);
    return;
  }
  const limit = defaultConcurrency(unit.spec);
  const current = [...unit.instances.values()].filter(
    (i) => i.revisionId === revision.id && i.state !== "draining",
  );
  const starting = current.filter((i) => i.state === "starting").length;
  const needed = Math.ceil(unit.waiters.length / limit) - starting;
  const room = unit.spec.scale.max - current.length;
  for (let n = 0; n < Math.min(needed, room); n++) host.launch(unit, revision, true);
}

/** Rejects every waiting request of the function with `err` (deleted, failing, shutting down). */
export function rejectWaiters(unit: Unit, err: () => Error): void {
  for (const waiter of unit.waiters.splice(0)) waiter.reject(err());
}
