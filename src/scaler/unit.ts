import type { Pool } from "undici";
import type { FunctionSpec } from "../deploy/spec.js";
import { defaultConcurrency } from "../deploy/spec.js";
import type { Driver, InstanceAddress, InstanceExit } from "../drivers/driver.js";
import type { DaemonMetrics } from "../observability/metrics.js";
import type { Clock } from "../shared/clock.js";
import type { FuncdError } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import { ConcurrencyMeter, type ScaleState } from "./autoscaler.js";
import type { BackoffPolicy } from "./backoff.js";

/**
 * The fleet's shared vocabulary: the public instance/lease/status types, the
 * per-function `Unit` record, and `FleetHost`, the narrow view of the fleet
 * the helper modules (activator, crashes, health, autoscale round, lease) are
 * handed instead of the class's private state.
 */

/** The revision a function serves, ready to start instances from. */
export interface ServableRevision {
  id: string;
  number: number;
  artifactDir: string;
  /** The revision's image (docker driver, image mode); absent: the driver runs `artifactDir`. */
  image?: string;
}

export type LiveState = "starting" | "ready" | "draining";

/** An instance as the scaler and gateway see it: driver info plus load. */
export interface LiveInstance {
  readonly id: string;
  readonly functionName: string;
  readonly revisionId: string;
  state: LiveState;
  address: InstanceAddress | null;
  /** Keep-alive connection pool to the instance, owned by the fleet. */
  upstream: Pool | null;
  pid: number | undefined;
  inFlight: number;
  served: number;
  startedAt: number;
  readyAt: number | null;
  lastUsedAt: number;
}

/** What a request holds while it is proxied; `release` must be called exactly once. */
export interface Lease {
  instance: LiveInstance;
  /** True when the request waited for an instance to start. */
  coldStart: boolean;
  /**
   * `recycle`: the runtime asked to be replaced (handler timeout) — drain it.
   * `broken`: the connection died mid-request — stop routing to it at once.
   * `kill`: it went silent past the timeout — kill it.
   */
  release(outcome?: { recycle?: boolean; broken?: boolean; kill?: boolean }): void;
}

export interface LastExit extends InstanceExit {
  instanceId: string;
  at: number;
}

export interface FunctionStatus {
  status: "ready" | "failing" | "no-revision";
  instances: {
    instanceId: string;
    revisionId: string;
    state: LiveState;
    inFlight: number;
    served: number;
    startedAt: number;
    pid?: number;
  }[];
  waiting: number;
  desired: number;
  panic: boolean;
  lastExit: LastExit | null;
}

export interface Waiter {
  resolve(lease: Lease): void;
  reject(err: Error): void;
  cancel(): void;
  queuedAt: number;
}

export interface Unit {
  name: string;
  spec: FunctionSpec;
  revision: ServableRevision | null;
  instances: Map<string, LiveInstance>;
  waiters: Waiter[];
  consecutiveCrashes: number;
  backoffUntil: number;
  restartTimer: { cancel(): void } | null;
  lastExit: LastExit | null;
  lastStartError: FuncdError | null;
  /** Time-weighted concurrency (in flight + waiting), sampled each tick for the autoscaler. */
  meter: ConcurrencyMeter;
  scaleState: ScaleState;
  desired: number;
  panic: boolean;
  /** When the last request arrived; scale to zero waits `idleTimeout` after it. */
  lastRequestAt: number;
  inFlight: number;
  /**
   * Ids of instances that were starting when the function was recycled (a secret changed): they hold
   * the old values, so they drain as soon as they are ready.
   */
  stale: Set<string>;
}

/** Writes a lifecycle line into the function's logs (stream "system"). */
export type SystemLog = (functionName: string, revisionId: string, instanceId: string, text: string) => void;

/**
 * What the fleet lends its helper modules: its collaborators and the
 * operations that touch its own bookkeeping. Each module asks for a `Pick` of
 * it, so its dependencies are written in its signature.
 */
export interface FleetHost {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics: DaemonMetrics;
  readonly driver: Driver;
  readonly connect: (address: InstanceAddress, connections: number) => Pool;
  readonly systemLog: SystemLog;
  /**
   * The values of the named secrets, for an instance about to start; throws `SECRET_NOT_FOUND` naming
   * a missing one. Values go to the driver only, never into a log or record.
   */
  readonly secrets: (names: readonly string[]) => Record<string, Buffer>;
  readonly backoff: BackoffPolicy;
  readonly coldStartWaitMs: number;
  readonly maxQueuedPerFunction: number;
  isDisposed(): boolean;
  /** True while the fleet still tracks the instance (it has not been stopped or exited). */
  isTracked(instanceId: string): boolean;
  launch(unit: Unit, revision: ServableRevision, cold: boolean): void;
  ensureMin(unit: Unit): void;
  wantMore(unit: Unit): void;
  dispatch(unit: Unit): void;
  lease(unit: Unit, instance: LiveInstance, coldStart: boolean): Lease;
  drain(instance: LiveInstance): void;
  stop(instance: LiveInstance, graceMs: number): Promise<void>;
  recordCrash(unit: Unit, exit: LastExit): void;
  scheduleRestart(unit: Unit, delayMs: number): void;
}

export function newUnit(name: string, spec: FunctionSpec, now: number): Unit {
  return {
    name,
    spec,
    revision: null,
    instances: new Map(),
    waiters: [],
    consecutiveCrashes: 0,
    backoffUntil: 0,
    restartTimer: null,
    lastExit: null,
    lastStartError: null,
    meter: new ConcurrencyMeter(now, 3_600_000),
    scaleState: { panicUntil: 0, panicDesired: 0 },
    desired: spec.scale.min,
    panic: false,
    lastRequestAt: 0,
    inFlight: 0,
    stale: new Set(),
  };
}

/** Instances of the serving revision that are starting or ready (not draining). */
export function serving(unit: Unit): LiveInstance[] {
  return [...unit.instances.values()].filter(
    (i) => i.revisionId === unit.revision?.id && i.state !== "draining",
  );
}

export function measure(unit: Unit, now: number): void {
  unit.meter.change(now, unit.inFlight + unit.waiters.length);
}

/** The least-loaded ready instance of the serving revision with spare concurrency. */
export function pickReady(unit: Unit): LiveInstance | undefined {
  const limit = defaultConcurrency(unit.spec);
  let best: LiveInstance | undefined;
  for (const instance of unit.instances.values()) {
    if (instance.state !== "ready" || instance.revisionId !== unit.revision?.id || instance.inFlight >= limit)
      continue;
    if (!best || instance.inFlight < best.inFlight) best = instance;
  }
  return best;
}
