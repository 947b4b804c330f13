/**
 * Test doubles for the scaler's unit tests (not used by the daemon).
 */
import { pino } from "pino";
import type { Pool } from "undici";
import type { Driver, DriverEvent, InstanceInfo, InstanceSpec } from "../drivers/driver.js";
import { DaemonMetrics } from "../observability/metrics.js";
import type { Clock } from "../shared/clock.js";
import { ManualClock } from "../shared/manual-clock.js";
import { Fleet, type FleetOptions } from "./fleet.js";

/**
 * An in-memory driver: the fleet's decisions are under test here, not process
 * handling (the process driver has its own conformance suite). Starts finish
 * when the test says so, so "starting" is a state the tests can hold.
 */
export class ScriptedDriver implements Driver {
  readonly name = "scripted";
  readonly started: InstanceSpec[] = [];
  readonly stopped: string[] = [];
  /** Instances reconcile() took over from a previous daemon run (what list() reports as adopted). */
  adopted: InstanceInfo[] = [];
  readonly #pending = new Map<string, { done: (info: InstanceInfo) => void; fail: (err: Error) => void }>();
  readonly #listeners = new Set<(e: DriverEvent) => void>();
  autoReady = true;

  start(spec: InstanceSpec): Promise<InstanceInfo> {
    this.started.push(spec);
    const info: InstanceInfo = {
      instanceId: spec.instanceId,
      functionName: spec.functionName,
      revisionId: spec.revisionId,
      address: { socketPath: `/fake/${spec.instanceId}` },
      state: "ready",
      startedAt: 0,
    };
    if (this.autoReady) return Promise.resolve(info);
    return new Promise((resolve, reject) =>
      this.#pending.set(spec.instanceId, { done: () => resolve(info), fail: reject }),
    );
  }
  finishStarts(): void {
    for (const [id, pending] of this.#pending) {
      this.#pending.delete(id);
      pending.done({} as InstanceInfo);
    }
  }
  async stop(id: string): Promise<void> {
    this.stopped.push(id);
    // Like a real driver: stopping an instance that is still starting aborts its start.
    this.#pending.get(id)?.fail(new Error(`instance ${id} was stopped while starting`));
    this.#pending.delete(id);
    this.adopted = this.adopted.filter((i) => i.instanceId !== id);
  }
  list(): InstanceInfo[] {
    return [...this.adopted];
  }
  onEvent(listener: (e: DriverEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  async reconcile() {
    return { removed: 0 };
  }
  async dispose(): Promise<void> {}
}

/** An undici pool that is never used: scripted instances have no address to reach. */
export const fakePool = () => ({ close: async () => {}, destroy: async () => {} }) as unknown as Pool;

/** A fleet over `driver` with quiet defaults for tests (no health checks, a 5 s cold-start wait). */
export function testFleet(
  driver: Driver,
  options: Partial<FleetOptions> & { clock?: Clock } = {},
): { fleet: Fleet; clock: Clock } {
  const clock = options.clock ?? new ManualClock();
  const fleet = new Fleet({
    driver,
    clock,
    logger: pino({ level: "silent" }),
    metrics: new DaemonMetrics(),
    connect: fakePool,
    systemLog: () => {},
    coldStartWaitMs: 5000,
    healthEveryMs: 0,
    ...options,
  });
  return { fleet, clock };
}
