import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type {
  DriverEvent,
  GenericInstance,
  GenericStartOptions,
  InstanceInfo,
  InstanceSpec,
  StartOptions,
} from "../drivers/driver.js";
import { DaemonMetrics } from "../observability/metrics.js";
import { FuncdError } from "../shared/errors.js";
import { ManualClock } from "../shared/manual-clock.js";
import { type PoolCapableDriver, PooledDriver } from "./pool.js";

/**
 * An in-memory pool-capable driver: generic starts finish when the test says so (or at once), and
 * specializations answer what the test scripts. The pool's decisions are under test here; the process
 * driver's real generic instances have their own conformance cases.
 */
class ScriptedDriver implements PoolCapableDriver {
  readonly name = "scripted";
  readonly started: InstanceSpec[] = [];
  readonly generics: { runtime: string; options: GenericStartOptions }[] = [];
  readonly specialized: { poolId: string; spec: InstanceSpec }[] = [];
  readonly stopped: string[] = [];
  /** Generic instances alive (started, not stopped or specialized). */
  readonly live = new Set<string>();
  readonly #pending = new Map<string, { resolve: () => void; reject: (err: Error) => void }>();
  readonly #listeners = new Set<(e: DriverEvent) => void>();
  autoReady = true;
  genericFailure: Error | undefined;
  specializeFailure: Error | undefined;

  start(spec: InstanceSpec, options?: StartOptions): Promise<InstanceInfo> {
    this.started.push(spec);
    // Like a real driver: a start whose signal is aborted brings nothing up.
    if (options?.signal?.aborted) return Promise.reject(options.signal.reason);
    return Promise.resolve(info(spec));
  }

  startGeneric(runtime: string, options: GenericStartOptions): Promise<GenericInstance> {
    this.generics.push({ runtime, options });
    if (this.genericFailure) return Promise.reject(this.genericFailure);
    const done = () => {
      this.live.add(options.poolId);
      return { poolId: options.poolId };
    };
    if (this.autoReady) return Promise.resolve(done());
    return new Promise((resolve, reject) => {
      this.#pending.set(options.poolId, { resolve: () => resolve(done()), reject });
      options.signal?.addEventListener("abort", () => reject(options.signal?.reason));
    });
  }

  finishGenericStarts(): void {
    for (const [id, pending] of this.#pending) {
      this.#pending.delete(id);
      pending.resolve();
    }
  }

  async specialize(poolId: string, spec: InstanceSpec): Promise<InstanceInfo> {
    this.specialized.push({ poolId, spec });
    if (this.specializeFailure) {
      const refused = this.specializeFailure instanceof FuncdError && this.specializeFailure.extra.refused;
      if (!refused) this.live.delete(poolId);
      throw this.specializeFailure;
    }
    this.live.delete(poolId);
    return info(spec);
  }

  async stop(id: string): Promise<void> {
    this.stopped.push(id);
    this.live.delete(id);
  }

  list(): InstanceInfo[] {
    return [];
  }

  onEvent(listener: (e: DriverEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  emit(event: DriverEvent): void {
    for (const listener of this.#listeners) listener(event);
  }

  async reconcile() {
    return { removed: 0 };
  }

  async dispose(): Promise<void> {}
}

function info(spec: InstanceSpec): InstanceInfo {
  return {
    instanceId: spec.instanceId,
    functionName: spec.functionName,
    revisionId: spec.revisionId,
    address: { socketPath: `/fake/${spec.instanceId}` },
    state: "ready",
    startedAt: 0,
  };
}

let specs = 0;
function specOf(overrides: Partial<InstanceSpec> = {}): InstanceSpec {
  specs++;
  return {
    instanceId: `fn-${specs}`,
    functionName: "fn",
    revisionId: "rev1",
    runtime: "nodejs20",
    artifactDir: "/x",
    handler: "handler.main",
    env: {},
    memoryMb: 256,
    timeoutMs: 1000,
    ...overrides,
  };
}

/** Lets promise callbacks (generic starts, specializations) run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

function setup(size = 2) {
  const clock = new ManualClock();
  const driver = new ScriptedDriver();
  const metrics = new DaemonMetrics();
  const systemLines: string[] = [];
  const pool = new PooledDriver(driver, {
    size,
    memoryMb: 256,
    clock,
    logger: pino({ level: "silent" }),
    metrics,
    systemLog: (_fn, _rev, _id, text) => systemLines.push(text),
  });
  return { clock, driver, pool, metrics, systemLines };
}

describe("PooledDriver", () => {
  it("keeps size generic instances for each runtime in use and none for the others", async () => {
    const { driver, pool } = setup(2);
    expect(driver.generics).toEqual([]);
    pool.setRuntimesInUse(["nodejs20", "nodejs20"]);
    await settle();
    expect(driver.generics.map((g) => g.runtime)).toEqual(["nodejs20", "nodejs20"]);
    expect(driver.generics.every((g) => g.options.memoryMb === 256)).toBe(true);
    expect(pool.stats()).toEqual([{ runtime: "nodejs20", starting: 0, ready: 2 }]);

    pool.setRuntimesInUse(["nodejs20", "other"]);
    await settle();
    expect(pool.stats()).toEqual([
      { runtime: "nodejs20", starting: 0, ready: 2 },
      { runtime: "other", starting: 0, ready: 2 },
    ]);

    // Nothing uses nodejs20 any more: its generic instances are stopped, none replaces them.
    pool.setRuntimesInUse(["other"]);
    await settle();
    expect(driver.stopped).toHaveLength(2);
    expect(pool.stats()).toEqual([{ runtime: "other", starting: 0, ready: 2 }]);
    pool.setRuntimesInUse([]);
    await settle();
    expect(pool.stats()).toEqual([]);
    expect(driver.live.size).toBe(0);
  });

  it("start() specializes a ready generic instance and refills the pool after a take", async () => {
    const { clock, driver, pool, metrics, systemLines } = setup(2);
    pool.setRuntimesInUse(["nodejs20"]);
    await settle();
    const spec = specOf();
    const started = await pool.start(spec);
    expect(started.instanceId).toBe(spec.instanceId);
    expect(driver.specialized).toHaveLength(1);
    expect(driver.specialized[0]?.spec).toBe(spec);
    expect(driver.started).toEqual([]);
    expect(
      systemLines.some((line) => /^instance ready in [\d.]+ ms \(from the warm pool\)$/.test(line)),
    ).toBe(true);
    expect(pool.stats()).toEqual([{ runtime: "nodejs20", starting: 0, ready: 1 }]);
    // The refill waits a moment, so it does not compete with the cold start that took the instance.
    clock.advance(100);
    await settle();
    expect(driver.generics).toHaveLength(3);
    expect(pool.stats()).toEqual([{ runtime: "nodejs20", starting: 0, ready: 2 }]);
    const takes = await metrics.registry.getSingleMetricAsString("funcd_pool_takes_total");
    expect(takes).toContain('funcd_pool_takes_total{runtime="nodejs20",outcome="specialized"} 1');
    const gauge = await metrics.registry.getSingleMetricAsString("funcd_pool_instances");
    expect(gauge).toContain('funcd_pool_instances{runtime="nodejs20",state="ready"} 2');
  });

  it("two concurrent starts never take the same generic instance", async () => {
    const { driver, pool } = setup(2);
    pool.setRuntimesInUse(["nodejs20"]);
    await settle();
    await Promise.all([pool.start(specOf()), pool.start(specOf()), pool.start(specOf())]);
    const taken = driver.specialized.map((s) => s.poolId);
    expect(new Set(taken).size).toBe(2);
    // The third found the pool empty and started normally.
    expect(driver.started).toHaveLength(1);
  });

  it("falls back to a normal start when the pool is empty, still starting, or the memory differs", async () => {
    const { driver, pool, metrics } = setup(1);
    // Nothing in use yet: no pool at all.
    await pool.start(specOf());
    expect(driver.started).toHaveLength(1);

    driver.autoReady = false;
    pool.setRuntimesInUse(["nodejs20"]);
    await settle();
    expect(pool.stats()).toEqual([{ runtime: "nodejs20", starting: 1, ready: 0 }]);
    await pool.start(specOf());
    expect(driver.started).toHaveLength(2);

    driver.finishGenericStarts();
    await settle();
    await pool.start(specOf({ memoryMb: 512 }));
    expect(driver.started).toHaveLength(3);
    expect(driver.specialized).toEqual([]);
    const takes = await metrics.registry.getSingleMetricAsString("funcd_pool_takes_total");
    expect(takes).toContain('outcome="empty"} 1');
    expect(takes).toContain('outcome="mismatch"} 1');
  });

  it("a specialization that fails for a pool reason falls back to a normal start", async () => {
    const { driver, pool } = setup(1);
    pool.setRuntimesInUse(["nodejs20"]);
    await settle();
    driver.specializeFailure = new FuncdError("FUNCTION_UNAVAILABLE", "the generic instance died");
    const spec = specOf();
    const started = await pool.start(spec);
    expect(started.instanceId).toBe(spec.instanceId);
    expect(driver.specialized).toHaveLength(1);
    expect(driver.started).toEqual([spec]);
  });

  it("a refused specialization puts the generic instance back and starts normally", async () => {
    const { driver, pool } = setup(1);
    pool.setRuntimesInUse(["nodejs20"]);
    await settle();
    driver.specializeFailure = new FuncdError("FUNCTION_UNAVAILABLE", "sets NODE_OPTIONS", {
      extra: { refused: true },
    });
    await pool.start(specOf({ env: { NODE_OPTIONS: "--inspect" } }));
    expect(driver.started).toHaveLength(1);
    expect(pool.stats()).toEqual([{ runtime: "nodejs20", starting: 0, ready: 1 }]);
    driver.specializeFailure = undefined;
    await pool.start(specOf());
    expect(driver.specialized).toHaveLength(2);
    expect(driver.specialized[0]?.poolId).toBe(driver.specialized[1]?.poolId);
  });

  it("stop() during a start that falls back to a normal start aborts it: nothing comes up", async () => {
    const { driver, pool } = setup(1);
    pool.setRuntimesInUse(["nodejs20"]);
    await settle();
    driver.specializeFailure = new FuncdError("FUNCTION_UNAVAILABLE", "needs its own image", {
      extra: { refused: true },
    });
    const spec = specOf();
    const starting = pool.start(spec);
    await pool.stop(spec.instanceId);
    await expect(starting).rejects.toThrow(/stopped while starting/);
    expect(driver.stopped).toContain(spec.instanceId);
  });

  it("rethrows HANDLER_LOAD_FAILED: the function's fault, not the pool's", async () => {
    const { driver, pool } = setup(1);
    pool.setRuntimesInUse(["nodejs20"]);
    await settle();
    driver.specializeFailure = new FuncdError("HANDLER_LOAD_FAILED", "SyntaxError in handler.js", {
      extra: { logs: ["SyntaxError"] },
    });
    await expect(pool.start(specOf())).rejects.toMatchObject({ code: "HANDLER_LOAD_FAILED" });
    expect(driver.started).toEqual([]);
  });

  it("a runtime without a generic mode gets no pool, and is not asked again", async () => {
    const { driver, pool } = setup(2);
    driver.genericFailure = new FuncdError("UNKNOWN_RUNTIME", 'Runtime "python3" has no generic mode');
    pool.setRuntimesInUse(["python3"]);
    await settle();
    expect(driver.generics).toHaveLength(2);
    pool.setRuntimesInUse(["python3"]);
    await settle();
    expect(driver.generics).toHaveLength(2);
    expect(pool.stats()).toEqual([]);
    await pool.start(specOf({ runtime: "python3" }));
    expect(driver.started).toHaveLength(1);
  });

  it("backs off before replacing generic instances that fail to start or die", async () => {
    const { clock, driver, pool } = setup(1);
    driver.genericFailure = new FuncdError("SANDBOX_UNAVAILABLE", "bwrap failed");
    pool.setRuntimesInUse(["nodejs20"]);
    await settle();
    expect(driver.generics).toHaveLength(1);
    clock.advance(500);
    await settle();
    expect(driver.generics).toHaveLength(1);
    clock.advance(600);
    await settle();
    expect(driver.generics).toHaveLength(2);
    // Then twice as long.
    clock.advance(1_500);
    await settle();
    expect(driver.generics).toHaveLength(2);
    driver.genericFailure = undefined;
    clock.advance(600);
    await settle();
    expect(driver.generics).toHaveLength(3);
    expect(pool.stats()).toEqual([{ runtime: "nodejs20", starting: 0, ready: 1 }]);

    // A ready generic instance that dies is replaced (after the backoff), and its exit is not the fleet's.
    const fleetEvents: DriverEvent[] = [];
    pool.onEvent((event) => fleetEvents.push(event));
    const poolId = driver.generics[2]?.options.poolId ?? "";
    driver.emit({
      type: "generic-exit",
      poolId,
      runtime: "nodejs20",
      exit: { reason: "crashed", code: 1, signal: null, lastLogLines: [] },
    });
    expect(pool.stats()).toEqual([{ runtime: "nodejs20", starting: 0, ready: 0 }]);
    expect(fleetEvents).toEqual([]);
    clock.advance(1_100);
    await settle();
    expect(driver.generics).toHaveLength(4);
  });

  it("dispose() stops the generic instances and starts no more", async () => {
    const { clock, driver, pool } = setup(2);
    pool.setRuntimesInUse(["nodejs20"]);
    await settle();
    await pool.start(specOf());
    await pool.dispose();
    clock.advance(1_000);
    await settle();
    expect(driver.generics).toHaveLength(2);
    expect(driver.live.size).toBe(0);
  });

  it("with size 0 every start is a normal one", async () => {
    const { driver, pool } = setup(0);
    pool.setRuntimesInUse(["nodejs20"]);
    await settle();
    await pool.start(specOf());
    expect(driver.generics).toEqual([]);
    expect(driver.started).toHaveLength(1);
  });
});
