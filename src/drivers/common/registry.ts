/**
 * The bookkeeping both drivers keep alike: their live instances by id, the starts in progress (so stop()
 * and dispose() can abort them and reconcile() leaves them alone), the event listeners, and the parts of
 * the `Driver` lifecycle that do not depend on where an instance runs — the checks before a start or a
 * specialization, stop's outline, list, onEvent, dispose.
 */
import { FuncdError } from "../../shared/errors.js";
import type { GenericStartOptions, InstanceExit, InstanceInfo, InstanceSpec } from "../driver.js";
import type { DriverListener, ExitingInstance } from "./exit-events.js";

/** What the registry reads and changes of a driver's instance. */
export interface RegisteredInstance extends ExitingInstance {
  /** Settles once the instance is gone (recorded and cleaned up). */
  exited: Promise<InstanceExit>;
}

interface PendingStart {
  abort: AbortController;
  done: Promise<unknown>;
}

const INSTANCE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** dispose() is for daemon shutdown: the gateway has drained invocations, so a short grace will do. */
const DISPOSE_GRACE_MS = 1_000;

/** One driver's instances, starts and listeners; see the module comment. */
export class InstanceRegistry<I extends RegisteredInstance> {
  /** Live instances by their current id (a specialized pool instance is re-keyed). */
  readonly live = new Map<string, I>();
  /** Starts in progress by instance (or pool) id. */
  readonly starting = new Map<string, PendingStart>();
  readonly listeners = new Set<DriverListener>();
  /** Clean-ups still under way after their exit was announced, which dispose() waits for. */
  readonly #settling = new Set<Promise<unknown>>();
  #disposed = false;

  /** `driverName` names the driver in errors ("The docker driver has been disposed"). */
  constructor(private readonly driverName: string) {}

  /** Throws once the driver has been disposed. */
  checkOpen(): void {
    if (this.#disposed) {
      throw new FuncdError("FUNCTION_UNAVAILABLE", `The ${this.driverName} driver has been disposed`);
    }
  }

  /** Throws `BAD_REQUEST` unless `id` is a well-formed id no live or starting instance has. */
  checkNewId(id: string, label = "Instance id"): void {
    if (!INSTANCE_ID.test(id))
      throw new FuncdError("BAD_REQUEST", `${label} "${id}" is not a valid instance id`);
    if (this.live.has(id) || this.starting.has(id)) {
      throw new FuncdError("BAD_REQUEST", `Instance "${id}" is already running`);
    }
  }

  /** The checks before a start of a generic (warm pool) instance. */
  checkGenericStart({ poolId, memoryMb }: GenericStartOptions): void {
    this.checkOpen();
    this.checkNewId(poolId, "Pool instance id");
    if (!Number.isInteger(memoryMb) || memoryMb < 16) {
      throw new FuncdError("BAD_REQUEST", `A pool instance needs a memory limit in MiB, not ${memoryMb}`);
    }
  }

  /** The generic instance `poolId` if it is ready to be specialized; throws `FUNCTION_UNAVAILABLE` if not. */
  readyGeneric(poolId: string): I & { generic: NonNullable<I["generic"]> } {
    this.checkOpen();
    const inst = this.live.get(poolId);
    if (
      inst === undefined ||
      inst.generic === undefined ||
      inst.stopRequested ||
      inst.info.state !== "ready"
    ) {
      throw new FuncdError(
        "FUNCTION_UNAVAILABLE",
        `Pool instance "${poolId}" is not a ready generic instance`,
      );
    }
    return inst as I & { generic: NonNullable<I["generic"]> };
  }

  /**
   * The checks between a specialization's refusal check and its start: the error a refusal (`refusal`
   * set) rejects with — `extra.refused`, so the caller starts normally — then the new id's.
   */
  checkSpecialization(poolId: string, spec: InstanceSpec, refusal: string | undefined): void {
    if (refusal !== undefined) {
      throw new FuncdError(
        "FUNCTION_UNAVAILABLE",
        `Function "${spec.functionName}" cannot be specialized from pool instance "${poolId}": ${refusal}`,
        { extra: { refused: true } },
      );
    }
    this.checkNewId(spec.instanceId);
  }

  /** Runs a start under an abort controller that stop() and dispose() can reach while it is pending. */
  async tracked<T>(
    id: string,
    callerSignal: AbortSignal | undefined,
    run: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const abort = new AbortController();
    const onCallerAbort = () => abort.abort(callerSignal?.reason);
    callerSignal?.addEventListener("abort", onCallerAbort, { once: true });
    const done = run(abort.signal);
    this.starting.set(id, { abort, done });
    try {
      return await done;
    } finally {
      this.starting.delete(id);
      callerSignal?.removeEventListener("abort", onCallerAbort);
    }
  }

  /**
   * stop()'s outline: a start still pending is aborted (and leaves nothing); a live instance is marked
   * draining and handed once to `terminate` (the driver's own SIGTERM → grace → SIGKILL); either way it
   * resolves when the instance is gone.
   */
  async stop(id: string, terminate: (inst: I) => Promise<void>): Promise<void> {
    const pending = this.starting.get(id);
    if (pending !== undefined && !this.live.get(id)?.announced) {
      pending.abort.abort(
        new FuncdError("FUNCTION_UNAVAILABLE", `Instance "${id}" was stopped while starting`),
      );
      await pending.done.catch(() => undefined);
      return;
    }
    const inst = this.live.get(id);
    if (inst === undefined) return;
    if (!inst.stopRequested) {
      inst.stopRequested = true;
      inst.info.state = "draining";
      await terminate(inst);
    }
    await inst.exited;
  }

  /** The instances serving (or starting for) functions; generic pool instances are the pool's business. */
  list(): InstanceInfo[] {
    return [...this.live.values()]
      .filter((inst) => inst.generic === undefined)
      .map((inst) => snapshot(inst.info));
  }

  onEvent(listener: DriverListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Has dispose() wait for `cleanup`, a clean-up that goes on after its instance left `live`. */
  settle(cleanup: Promise<unknown>): void {
    const kept = cleanup.catch(() => undefined).finally(() => this.#settling.delete(kept));
    this.#settling.add(kept);
  }

  /**
   * dispose()'s outline: no more starts, the pending ones aborted, every live instance stopped with a
   * short grace through the driver's `stop`, the clean-ups waited for, the listeners dropped.
   */
  async dispose(stop: (id: string, options: { graceMs: number }) => Promise<void>): Promise<void> {
    this.#disposed = true;
    const reason = new FuncdError("FUNCTION_UNAVAILABLE", `The ${this.driverName} driver is shutting down`);
    for (const { abort } of this.starting.values()) abort.abort(reason);
    await Promise.all([
      ...[...this.starting.values()].map(({ done }) => done.catch(() => undefined)),
      ...[...this.live.keys()].map((id) => stop(id, { graceMs: DISPOSE_GRACE_MS })),
    ]);
    await Promise.all([...this.#settling]);
    this.listeners.clear();
  }
}

/** A copy of an instance's info for callers, who must not change ours. */
export function snapshot(info: InstanceInfo): InstanceInfo {
  return {
    ...info,
    address: { ...info.address },
    ...(info.exit === undefined ? {} : { exit: { ...info.exit } }),
  };
}
