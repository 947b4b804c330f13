/**
 * The warm pool: generic runtime instances started ahead of need, so a cold start costs loading a
 * function's code into a booted, sandboxed runtime rather than booting one. It is a Driver decorator:
 * the fleet asks `start(spec)` as always, and `PooledDriver` answers from the pool when it can (a ready
 * generic instance of the function's runtime and memory limit, specialized into it) and from the driver
 * it wraps otherwise. The fleet never knows the difference.
 *
 * Sizing: `size` generic instances for every runtime in use (the app says which, after restore and after
 * each deploy or delete), none for the others. A take is refilled in the background. A runtime whose
 * template has no generic mode is left out; generic instances that fail to start or die are replaced
 * after a backoff, so a broken sandbox does not become a busy loop.
 */
import type { Driver, DriverEvent, InstanceInfo, InstanceSpec, StartOptions } from "../drivers/driver.js";
import type { DaemonMetrics } from "../observability/metrics.js";
import type { Clock } from "../shared/clock.js";
import { FuncdError, isFuncdError, messageOf } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";

/** A driver that can run generic instances and specialize them. */
export type PoolCapableDriver = Driver & Required<Pick<Driver, "startGeneric" | "specialize">>;

/** True when `driver` has the optional pool members. */
export function supportsPool(driver: Driver): driver is PoolCapableDriver {
  return typeof driver.startGeneric === "function" && typeof driver.specialize === "function";
}

export interface PoolOptions {
  /** Generic instances kept per runtime in use. 0 keeps none (every start is a normal one). */
  size: number;
  /** The memory limit (MiB) generic instances run with; only functions with this limit use the pool. */
  memoryMb: number;
  clock: Clock;
  logger: Logger;
  metrics?: DaemonMetrics;
  /** Writes a lifecycle line into a function's logs (stream "system"). */
  systemLog?: (functionName: string, revisionId: string, instanceId: string, text: string) => void;
  /**
   * How long after a take the refill starts (default 20 ms): booting a runtime costs CPU, which on a
   * small machine is better spent first on the cold start that took the instance.
   */
  refillDelayMs?: number;
  /** Delay before retrying a runtime whose generic instances failed `failures` times in a row. */
  backoff?: (failures: number) => number;
}

export interface PoolStats {
  runtime: string;
  starting: number;
  ready: number;
}

interface Slot {
  poolId: string;
  runtime: string;
  state: "starting" | "ready";
  abort: AbortController;
}

/** 1 s, 2 s, 4 s … up to 30 s: a generic instance failing says the host has a problem, not a function. */
const poolBackoff = (failures: number) => Math.min(30_000, 1000 * 2 ** Math.max(0, failures - 1));

/** A Driver that serves starts from a warm pool of generic instances of the driver it wraps. */
export class PooledDriver implements Driver {
  readonly name: string;
  readonly #inner: PoolCapableDriver;
  readonly #o: PoolOptions;
  readonly #slots = new Map<string, Slot>();
  /** Starts in progress through the pool, so stop() can abort one the driver does not know yet. */
  readonly #starting = new Map<string, AbortController>();
  #inUse = new Set<string>();
  /** Runtimes without a generic mode: never asked again. */
  readonly #unsupported = new Set<string>();
  readonly #failures = new Map<string, number>();
  readonly #backoffUntil = new Map<string, number>();
  readonly #timers = new Map<string, { cancel(): void }>();
  /** Runtimes whose gauges were ever set, so they can go back to 0. */
  readonly #published = new Set<string>();
  readonly #unsubscribe: () => void;
  #counter = 0;
  #disposed = false;

  constructor(inner: PoolCapableDriver, options: PoolOptions) {
    this.#inner = inner;
    this.#o = options;
    this.name = inner.name;
    this.#unsubscribe = inner.onEvent((event) => {
      if (event.type === "generic-exit") this.#onGenericExit(event.poolId, event.exit.reason);
    });
  }

  /**
   * The runtimes functions use now: each gets `size` generic instances, every other runtime none
   * (its generic instances are stopped).
   */
  setRuntimesInUse(runtimes: Iterable<string>): void {
    this.#inUse = new Set(runtimes);
    for (const slot of [...this.#slots.values()]) {
      if (!this.#inUse.has(slot.runtime)) this.#drop(slot);
    }
    for (const runtime of this.#inUse) this.#fill(runtime);
    this.#publish();
  }

  /** Generic instances per runtime (those in use, and any still going away). */
  stats(): PoolStats[] {
    const byRuntime = new Map<string, PoolStats>();
    for (const runtime of this.#inUse) {
      if (!this.#unsupported.has(runtime)) byRuntime.set(runtime, { runtime, starting: 0, ready: 0 });
    }
    for (const slot of this.#slots.values()) {
      const stats = byRuntime.get(slot.runtime) ?? { runtime: slot.runtime, starting: 0, ready: 0 };
      stats[slot.state]++;
      byRuntime.set(slot.runtime, stats);
    }
    return [...byRuntime.values()].sort((a, b) => a.runtime.localeCompare(b.runtime));
  }

  /**
   * From the pool when a ready generic instance fits (same runtime, same memory limit), else a normal
   * start. A specialization that fails for a pool reason falls back to a normal start; one whose
   * handler does not load is the function's failure and is rethrown as it is.
   */
  async start(spec: InstanceSpec, options?: StartOptions): Promise<InstanceInfo> {
    // A stop() that arrives while this start is between the pool and the driver (a refused
    // specialization falling back to a normal start) would find nothing to stop in the driver; it
    // aborts the start instead, so no instance comes up after its function let go of it.
    const abort = new AbortController();
    const onCallerAbort = () => abort.abort(options?.signal?.reason);
    options?.signal?.addEventListener("abort", onCallerAbort, { once: true });
    this.#starting.set(spec.instanceId, abort);
    try {
      return await this.#start(spec, { ...options, signal: abort.signal });
    } finally {
      this.#starting.delete(spec.instanceId);
      options?.signal?.removeEventListener("abort", onCallerAbort);
    }
  }

  async #start(spec: InstanceSpec, options: StartOptions): Promise<InstanceInfo> {
    const slot = this.#take(spec);
    if (slot === undefined) return this.#inner.start(spec, options);
    this.#scheduleFill(spec.runtime, this.#o.refillDelayMs ?? 20);
    const began = performance.now();
    try {
      const info = await this.#inner.specialize(slot.poolId, spec, options);
      this.#o.metrics?.poolTakes.inc({ runtime: spec.runtime, outcome: "specialized" });
      const ms = Math.round((performance.now() - began) * 10) / 10;
      this.#o.systemLog?.(
        spec.functionName,
        spec.revisionId,
        spec.instanceId,
        `instance ready in ${ms} ms (from the warm pool)`,
      );
      return { ...info, fromPool: true };
    } catch (err) {
      if (isFuncdError(err, "HANDLER_LOAD_FAILED")) throw err;
      if (options.signal?.aborted) throw options.signal.reason;
      if (this.#disposed) throw err;
      if (isFuncdError(err) && err.extra.refused === true && !this.#disposed) {
        // Still generic and ready: back into the pool, for a function it fits.
        this.#slots.set(slot.poolId, slot);
        this.#publish();
      } else {
        // Whatever is left of it (normally nothing) goes; the refill replaces it.
        void this.#inner.stop(slot.poolId, { graceMs: 0 }).catch(() => undefined);
      }
      this.#o.metrics?.poolTakes.inc({ runtime: spec.runtime, outcome: "fallback" });
      // A refusal is the driver saying "this function needs a fresh start" (its own image, a boot-only
      // variable): expected, so not a warning. Anything else is the pool failing, which is one.
      const refused = isFuncdError(err) && err.extra.refused === true;
      this.#o.logger[refused ? "debug" : "warn"](
        { function: spec.functionName, instance: spec.instanceId, err: messageOf(err) },
        "cannot start from the warm pool; starting the instance normally",
      );
      return this.#inner.start(spec, options);
    }
  }

  stop(instanceId: string, options?: { graceMs?: number }): Promise<void> {
    this.#starting
      .get(instanceId)
      ?.abort(new FuncdError("FUNCTION_UNAVAILABLE", `Instance "${instanceId}" was stopped while starting`));
    return this.#inner.stop(instanceId, options);
  }

  list(): InstanceInfo[] {
    return this.#inner.list();
  }

  /** Exits of instances the fleet knows; generic instances' exits are the pool's business. */
  onEvent(listener: (event: DriverEvent) => void): () => void {
    return this.#inner.onEvent((event) => {
      if (event.type === "exit") listener(event);
    });
  }

  reconcile(): Promise<{ removed: number }> {
    return this.#inner.reconcile();
  }

  /** Stops the generic instances, then disposes of the wrapped driver (and so of every instance). */
  async dispose(): Promise<void> {
    this.#disposed = true;
    for (const timer of this.#timers.values()) timer.cancel();
    this.#timers.clear();
    this.#unsubscribe();
    for (const slot of [...this.#slots.values()]) this.#drop(slot);
    this.#publish();
    await this.#inner.dispose();
  }

  // ── internals ────────────────────────────────────────────────────────────

  #pooled(runtime: string): boolean {
    return this.#o.size > 0 && this.#inUse.has(runtime) && !this.#unsupported.has(runtime);
  }

  /** Takes the oldest ready generic instance that fits `spec`, counting how the pool served it. */
  #take(spec: InstanceSpec): Slot | undefined {
    if (this.#disposed || !this.#pooled(spec.runtime)) return undefined;
    const count = (outcome: string) => this.#o.metrics?.poolTakes.inc({ runtime: spec.runtime, outcome });
    // A generic instance has no secrets mounted (the driver would refuse it): such functions start normally.
    if (spec.memoryMb !== this.#o.memoryMb || (spec.secrets && Object.keys(spec.secrets).length > 0)) {
      count("mismatch");
      return undefined;
    }
    for (const slot of this.#slots.values()) {
      if (slot.runtime !== spec.runtime || slot.state !== "ready") continue;
      this.#slots.delete(slot.poolId);
      this.#publish();
      return slot;
    }
    count("empty");
    return undefined;
  }

  /** Starts generic instances until `runtime` has `size` (starting or ready), unless backing off. */
  #fill(runtime: string): void {
    if (this.#disposed || !this.#pooled(runtime)) return;
    const wait = (this.#backoffUntil.get(runtime) ?? 0) - this.#o.clock.now();
    if (wait > 0) {
      this.#scheduleFill(runtime, wait);
      return;
    }
    let have = 0;
    for (const slot of this.#slots.values()) if (slot.runtime === runtime) have++;
    for (; have < this.#o.size; have++) this.#startSlot(runtime);
  }

  #scheduleFill(runtime: string, delayMs: number): void {
    if (this.#disposed || this.#timers.has(runtime)) return;
    this.#timers.set(
      runtime,
      this.#o.clock.setTimeout(() => {
        this.#timers.delete(runtime);
        this.#fill(runtime);
      }, delayMs),
    );
  }

  #startSlot(runtime: string): void {
    this.#counter++;
    const poolId = `pool-${runtime}-${this.#o.clock.now().toString(36)}${this.#counter.toString(36)}`;
    const slot: Slot = { poolId, runtime, state: "starting", abort: new AbortController() };
    this.#slots.set(poolId, slot);
    this.#publish();
    this.#inner.startGeneric(runtime, { poolId, memoryMb: this.#o.memoryMb, signal: slot.abort.signal }).then(
      () => {
        if (this.#slots.get(poolId) !== slot) {
          // Dropped while it started (runtime no longer in use, or shutdown).
          void this.#inner.stop(poolId, { graceMs: 0 }).catch(() => undefined);
          return;
        }
        slot.state = "ready";
        this.#failures.delete(runtime);
        this.#backoffUntil.delete(runtime);
        this.#publish();
      },
      (err: unknown) => {
        if (this.#slots.get(poolId) === slot) this.#slots.delete(poolId);
        this.#publish();
        if (slot.abort.signal.aborted || this.#disposed) return;
        if (isFuncdError(err, "UNKNOWN_RUNTIME")) {
          this.#unsupported.add(runtime);
          this.#o.logger.info(
            { runtime, reason: messageOf(err) },
            "no warm pool for this runtime: its instances start normally",
          );
          this.#publish();
          return;
        }
        this.#failed(runtime, messageOf(err));
      },
    );
  }

  #onGenericExit(poolId: string, reason: string): void {
    const slot = this.#slots.get(poolId);
    if (slot === undefined) return;
    this.#slots.delete(poolId);
    this.#publish();
    this.#failed(slot.runtime, `a generic instance exited (${reason})`);
  }

  /** Backs off before the runtime's next generic start. */
  #failed(runtime: string, why: string): void {
    const failures = (this.#failures.get(runtime) ?? 0) + 1;
    this.#failures.set(runtime, failures);
    const delay = (this.#o.backoff ?? poolBackoff)(failures);
    this.#backoffUntil.set(runtime, this.#o.clock.now() + delay);
    this.#o.logger.warn({ runtime, failures, retryInMs: delay, err: why }, "warm pool instance failed");
    this.#scheduleFill(runtime, delay);
  }

  #drop(slot: Slot): void {
    this.#slots.delete(slot.poolId);
    if (slot.state === "starting") slot.abort.abort(new Error("the warm pool no longer wants it"));
    else void this.#inner.stop(slot.poolId, { graceMs: 1_000 }).catch(() => undefined);
  }

  #publish(): void {
    const gauge = this.#o.metrics?.poolInstances;
    if (gauge === undefined) return;
    const stats = this.stats();
    for (const { runtime, starting, ready } of stats) {
      this.#published.add(runtime);
      gauge.set({ runtime, state: "starting" }, starting);
      gauge.set({ runtime, state: "ready" }, ready);
    }
    for (const runtime of this.#published) {
      if (stats.some((s) => s.runtime === runtime)) continue;
      gauge.set({ runtime, state: "starting" }, 0);
      gauge.set({ runtime, state: "ready" }, 0);
    }
  }
}
