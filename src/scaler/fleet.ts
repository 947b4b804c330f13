import type { EventEmitter } from "node:events";
import type { Pool } from "undici";
import type { FunctionSpec } from "../deploy/spec.js";
import type { Driver, DriverEvent, InstanceAddress } from "../drivers/driver.js";
import type { DaemonMetrics } from "../observability/metrics.js";
import type { Clock } from "../shared/clock.js";
import { FuncdError, messageOf } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import { dispatch, rejectWaiters, waitForInstance, wantMore } from "./activator.js";
import { autoscaleRound } from "./autoscale-round.js";
import { type BackoffPolicy, crashBackoff } from "./backoff.js";
import { failingError, isFailing, recordCrash, scheduleRestart } from "./crashes.js";
import { ExitLog } from "./exits.js";
import { checkHealth } from "./health.js";
import { adoptedInstance, newInstance, startInstance } from "./instance.js";
import { lease } from "./lease.js";
import {
  type FleetHost,
  type FunctionStatus,
  type LastExit,
  type Lease,
  type LiveInstance,
  type LiveState,
  newUnit,
  pickReady,
  type ServableRevision,
  type Unit,
} from "./unit.js";

export type { FunctionStatus, LastExit, Lease, LiveInstance, LiveState, ServableRevision } from "./unit.js";

export interface FleetOptions {
  driver: Driver;
  clock: Clock;
  logger: Logger;
  metrics: DaemonMetrics;
  /** Opens the keep-alive pool the gateway proxies through. */
  connect: (address: InstanceAddress, connections: number) => Pool;
  /** Writes a lifecycle line into the function's logs (stream "system"). */
  systemLog: (functionName: string, revisionId: string, instanceId: string, text: string) => void;
  /**
   * Resolves secret values at each instance start (throws `SECRET_NOT_FOUND`); without it, a function
   * that names secrets cannot start.
   */
  secrets?: (names: readonly string[]) => Record<string, Buffer>;
  /** Longest a request waits for capacity before a 503. */
  coldStartWaitMs: number;
  backoff?: BackoffPolicy;
  /** How often the autoscaler samples and decides (and idle instances are looked for). */
  reapEveryMs?: number;
  /** Requests that may wait per function before new ones get 429. */
  maxQueuedPerFunction?: number;
  /** Memory (MiB) all instances together may reserve; starts beyond it wait. */
  maxReservedMemoryMb?: number;
  /** Memory (MiB) reserved outside the fleet (the warm pool's generic instances), counted against the cap. */
  reservedElsewhereMb?: () => number;
  /** How often idle ready instances get a `/healthz` check (0 turns checks off). */
  healthEveryMs?: number;
}

/**
 * The fleet holds every function's instances and hands requests a ready one
 * with spare concurrency, starting instances on demand (scale from zero),
 * holding requests while they start (the activator role), restarting after
 * crashes with backoff, draining old revisions and reaping idle instances.
 * The autoscaling issue replaces "start one more when nothing is free" with
 * concurrency-based decisions; the seam is `wantMore` (activator.ts).
 *
 * The class owns the bookkeeping (which units and instances exist) and the
 * instance lifecycle; the activator queue, lease, crash accounting, health
 * checks and autoscaling round live in their own modules and reach the fleet
 * through `#host` (see `FleetHost` in unit.ts).
 */
export class Fleet {
  readonly #units = new Map<string, Unit>();
  readonly #byInstance = new Map<string, LiveInstance>();
  readonly #o: FleetOptions;
  readonly #host: FleetHost;
  readonly #unsubscribe: () => void;
  readonly #reaper: { cancel(): void };
  readonly #health: { cancel(): void } | null;
  #counter = 0;
  #disposed = false;
  /** Recent unrequested exits by instance id, so the gateway can say why a request's instance died. */
  readonly #exits: ExitLog;

  constructor(options: FleetOptions) {
    this.#o = options;
    this.#exits = new ExitLog(options.clock);
    const host: FleetHost = {
      clock: options.clock,
      logger: options.logger,
      metrics: options.metrics,
      driver: options.driver,
      connect: options.connect,
      systemLog: options.systemLog,
      secrets: options.secrets ?? noSecrets,
      backoff: options.backoff ?? crashBackoff,
      coldStartWaitMs: options.coldStartWaitMs,
      maxQueuedPerFunction: options.maxQueuedPerFunction ?? 1000,
      isDisposed: () => this.#disposed,
      isTracked: (instanceId) => this.#byInstance.has(instanceId),
      launch: (unit, revision, cold) => this.#launch(unit, revision, cold),
      ensureMin: (unit) => this.#ensureMin(unit),
      wantMore: (unit) => wantMore(host, unit),
      dispatch: (unit) => dispatch(host, unit),
      lease: (unit, instance, coldStart) => lease(host, unit, instance, coldStart),
      drain: (instance) => this.#drain(instance),
      stop: (instance, graceMs) => this.#stop(instance, graceMs),
      recordCrash: (unit, exit) => recordCrash(host, unit, exit),
      scheduleRestart: (unit, delayMs) => scheduleRestart(host, unit, delayMs),
    };
    this.#host = host;
    this.#unsubscribe = options.driver.onEvent((event) => this.#onDriverEvent(event));
    this.#reaper = options.clock.setInterval(() => this.tick(), options.reapEveryMs ?? 1000);
    const healthEvery = options.healthEveryMs ?? 10_000;
    this.#health =
      healthEvery > 0 ? options.clock.setInterval(() => void this.checkHealth(), healthEvery) : null;
  }

  /**
   * Asks every idle ready instance for `/healthz`. One that does not answer 200
   * within two seconds is stopped and counted like a crash, so a hung instance
   * is replaced before a request finds it. Busy instances are left alone: the
   * gateway's own timeout watches them.
   */
  async checkHealth(): Promise<void> {
    await checkHealth(this.#host, this.#units.values());
  }

  /** Registers or updates a function's spec (routes, scale, limits) without touching its revision. */
  upsert(name: string, spec: FunctionSpec): void {
    const unit = this.#units.get(name);
    if (unit) {
      unit.spec = spec;
      this.#ensureMin(unit);
      return;
    }
    this.#units.set(name, newUnit(name, spec, this.#o.clock.now()));
  }

  has(name: string): boolean {
    return this.#units.has(name);
  }

  /** The function's per-invocation timeout, from memory (the gateway asks on every request). */
  timeoutOf(name: string): number {
    return this.#units.get(name)?.spec.timeout ?? 30_000;
  }

  /**
   * Starts an instance of a revision that does not serve yet — the deploy's
   * proof that the handler loads. Rejects with the driver's error; nothing is
   * left running then.
   */
  async prepare(name: string, spec: FunctionSpec, revision: ServableRevision): Promise<LiveInstance> {
    const instance = this.#newInstance(name, revision.id);
    this.#byInstance.set(instance.id, instance);
    try {
      await startInstance(this.#host, instance, spec, revision);
      return instance;
    } catch (err) {
      this.#byInstance.delete(instance.id);
      throw err;
    }
  }

  /** Stops a prepared instance that will not serve (the deploy failed after preparing it). */
  async discard(instance: LiveInstance): Promise<void> {
    await this.#stop(instance, 1000);
  }

  /**
   * Makes `revision` the one that serves: a prepared instance joins the pool,
   * instances the driver adopted from a previous daemon run for this revision
   * join it too (instead of new ones starting), instances of other revisions
   * drain (finish what they hold, then stop).
   */
  activate(name: string, spec: FunctionSpec, revision: ServableRevision, warm?: LiveInstance): void {
    this.upsert(name, spec);
    const unit = this.#unit(name);
    unit.revision = revision;
    unit.consecutiveCrashes = 0;
    unit.backoffUntil = 0;
    unit.lastStartError = null;
    this.#claimAdopted(unit, revision);
    if (warm) {
      unit.instances.set(warm.id, warm);
      // The deploy's proving instance stays warm for an idle timeout, as if it had just served.
      unit.lastRequestAt = this.#o.clock.now();
    }
    for (const instance of unit.instances.values()) {
      if (instance.revisionId !== revision.id) this.#drain(instance);
    }
    this.#ensureMin(unit);
    dispatch(this.#host, unit);
    this.#publishGauges(unit);
  }

  /**
   * Stops the instances the driver adopted from a previous daemon run that no
   * `activate` claimed (their function is gone, or serves another revision now).
   * Called once after the restore; resolves with how many it stopped.
   */
  async stopUnclaimedAdopted(): Promise<number> {
    const unclaimed = this.#o.driver.list().filter((i) => i.adopted && !this.#byInstance.has(i.instanceId));
    await Promise.all(
      unclaimed.map(async (info) => {
        this.#o.logger.info(
          { function: info.functionName, instance: info.instanceId, revision: info.revisionId },
          "stopping an instance of a previous run that no active revision claims",
        );
        await this.#o.driver.stop(info.instanceId, { graceMs: 5000 }).catch((err: unknown) => {
          this.#o.logger.warn(
            { instance: info.instanceId, err: messageOf(err) },
            "stopping an instance failed",
          );
        });
      }),
    );
    return unclaimed.length;
  }

  /**
   * Replaces a function's instances without a new revision (a secret it uses changed): every instance
   * drains — finishes what it holds, then stops — and new ones start as `scale.min` and requests ask,
   * reading the values afresh. Instances still starting drain once ready. Returns how many were drained.
   */
  recycle(name: string): number {
    const unit = this.#units.get(name);
    if (!unit) return 0;
    let drained = 0;
    for (const instance of unit.instances.values()) {
      if (instance.state === "starting") unit.stale.add(instance.id);
      else if (instance.state === "ready") {
        this.#drain(instance);
        drained++;
      }
    }
    this.#ensureMin(unit);
    // Requests waiting for capacity the drained instances would have freed get new instances instead.
    dispatch(this.#host, unit);
    this.#publishGauges(unit);
    return drained;
  }

  /** Stops a function's instances and forgets it; waiting requests get a 404. */
  async remove(name: string): Promise<void> {
    const unit = this.#units.get(name);
    if (!unit) return;
    this.#units.delete(name);
    unit.restartTimer?.cancel();
    rejectWaiters(unit, () => new FuncdError("FUNCTION_NOT_FOUND", `Function "${name}" was deleted`));
    await Promise.all([...unit.instances.values()].map((i) => this.#stop(i, 2000)));
    this.#o.metrics.instances.remove({ function: name, state: "ready" });
  }

  /** Hands out a ready instance with spare concurrency, starting one and waiting when none is free. */
  acquire(name: string, cancel?: EventEmitter): Promise<Lease> | Lease {
    const unit = this.#units.get(name);
    if (!unit) throw new FuncdError("FUNCTION_NOT_FOUND", `No function named "${name}"`);
    if (!unit.revision) {
      throw new FuncdError("FUNCTION_UNAVAILABLE", `Function "${name}" has no ready revision yet`, {
        retryAfter: 1,
      });
    }
    unit.lastRequestAt = this.#o.clock.now();
    const free = pickReady(unit);
    if (free) return lease(this.#host, unit, free, false);
    if (isFailing(unit) && this.#o.clock.now() < unit.backoffUntil) {
      throw failingError(unit, this.#o.clock.now());
    }
    return waitForInstance(this.#host, unit, cancel);
  }

  /**
   * Why an instance exited, waiting up to `waitMs` for the driver's event (a
   * request usually sees its connection drop a moment before the exit is
   * reported). Undefined when it did not exit (or not within the wait).
   */
  exitOf(instanceId: string, waitMs: number): Promise<LastExit | undefined> {
    return this.#exits.exitOf(instanceId, waitMs);
  }

  /** What `describe` shows about a function's instances. */
  status(name: string): FunctionStatus | undefined {
    const unit = this.#units.get(name);
    if (!unit) return undefined;
    return {
      status: !unit.revision ? "no-revision" : isFailing(unit) ? "failing" : "ready",
      instances: [...unit.instances.values()].map((i) => ({
        instanceId: i.id,
        revisionId: i.revisionId,
        state: i.state,
        inFlight: i.inFlight,
        served: i.served,
        startedAt: i.startedAt,
        ...(i.pid === undefined ? {} : { pid: i.pid }),
      })),
      waiting: unit.waiters.length,
      desired: unit.desired,
      panic: unit.panic,
      lastExit: unit.lastExit,
    };
  }

  /**
   * One autoscaler round per function: sample the concurrency it saw, decide
   * how many instances it wants (see autoscaler.ts), start the missing ones and
   * stop idle extras — gradually, half the excess per round at most, and only
   * instances with nothing in flight. The last instance goes only after
   * `idleTimeout` without a request (scale to zero); `min` always stays.
   */
  tick(): void {
    const now = this.#o.clock.now();
    for (const unit of this.#units.values()) autoscaleRound(this.#host, unit, now);
  }

  async dispose(): Promise<void> {
    this.#disposed = true;
    this.#reaper.cancel();
    this.#health?.cancel();
    this.#unsubscribe();
    for (const unit of this.#units.values()) {
      unit.restartTimer?.cancel();
      rejectWaiters(
        unit,
        () => new FuncdError("FUNCTION_UNAVAILABLE", "funcd is shutting down", { retryAfter: 5 }),
      );
    }
    await Promise.all([...this.#byInstance.values()].map((i) => this.#stop(i, 3000)));
  }

  // ── internals: bookkeeping and instance lifecycle ─────────────────────────

  #unit(name: string): Unit {
    const unit = this.#units.get(name);
    if (!unit) throw new FuncdError("FUNCTION_NOT_FOUND", `No function named "${name}"`);
    return unit;
  }

  #newInstance(name: string, revisionId: string): LiveInstance {
    this.#counter++;
    return newInstance(name, revisionId, this.#o.clock.now(), this.#counter);
  }

  /** Takes the driver's adopted, ready instances of `revision` into the unit, as if just started. */
  #claimAdopted(unit: Unit, revision: ServableRevision): void {
    for (const info of this.#o.driver.list()) {
      if (!info.adopted || info.state !== "ready" || this.#byInstance.has(info.instanceId)) continue;
      if (info.functionName !== unit.name || info.revisionId !== revision.id) continue;
      const instance = adoptedInstance(this.#host, info, unit.spec, this.#o.clock.now());
      unit.instances.set(instance.id, instance);
      this.#byInstance.set(instance.id, instance);
      this.#o.systemLog(unit.name, revision.id, instance.id, "instance adopted from the previous daemon run");
      // Its idle timeout starts over, as for a deploy's warm instance: scale to zero waits a full one.
      unit.lastRequestAt = this.#o.clock.now();
    }
  }

  #ensureMin(unit: Unit): void {
    const revision = unit.revision;
    if (!revision || this.#disposed) return;
    const current = [...unit.instances.values()].filter(
      (i) => i.revisionId === revision.id && i.state !== "draining",
    );
    for (let n = current.length; n < unit.spec.scale.min; n++) this.#launch(unit, revision, false);
  }

  #launch(unit: Unit, revision: ServableRevision, cold: boolean): void {
    const cap = this.#o.maxReservedMemoryMb;
    if (cap !== undefined && this.#reservedMb() + unit.spec.memory > cap) {
      // The machine is full: waiting requests time out with 503 rather than the host running out of memory.
      this.#o.logger.warn(
        { function: unit.name, reservedMb: this.#reservedMb(), capMb: cap },
        "not starting an instance: the memory all instances reserve would exceed the cap",
      );
      return;
    }
    const instance = this.#newInstance(unit.name, revision.id);
    unit.instances.set(instance.id, instance);
    this.#byInstance.set(instance.id, instance);
    if (cold) this.#o.metrics.coldStarts.inc({ function: unit.name });
    this.#publishGauges(unit);
    startInstance(this.#host, instance, unit.spec, revision).then(
      () => {
        const stale = unit.stale.delete(instance.id);
        if (stale || unit.revision?.id !== revision.id || this.#units.get(unit.name) !== unit) {
          this.#drain(instance);
          // It started with secret values that changed meanwhile: one with the new values replaces it.
          if (stale) this.#ensureMin(unit);
        }
        unit.lastStartError = null;
        this.#publishGauges(unit);
        dispatch(this.#host, unit);
      },
      (err: unknown) => {
        unit.stale.delete(instance.id);
        unit.instances.delete(instance.id);
        this.#byInstance.delete(instance.id);
        // Deleted meanwhile (remove() aborted this start): not a crash, and nothing may restart it.
        if (this.#units.get(unit.name) !== unit) return;
        const error =
          err instanceof FuncdError ? err : new FuncdError("FUNCTION_UNAVAILABLE", messageOf(err));
        unit.lastStartError = error;
        this.#o.logger.warn(
          { function: unit.name, instance: instance.id, err: error.message },
          "instance failed to start",
        );
        this.#o.systemLog(unit.name, revision.id, instance.id, `instance failed to start: ${error.message}`);
        recordCrash(this.#host, unit, {
          instanceId: instance.id,
          at: this.#o.clock.now(),
          reason: "start-failed",
          code: null,
          signal: null,
          lastLogLines: Array.isArray(error.extra.logs) ? (error.extra.logs as string[]) : [],
        });
        this.#publishGauges(unit);
      },
    );
  }

  /** Memory reserved by every instance that is starting or running, in MiB. */
  #reservedMb(): number {
    let total = this.#o.reservedElsewhereMb?.() ?? 0;
    for (const instance of this.#byInstance.values()) {
      total += this.#units.get(instance.functionName)?.spec.memory ?? 0;
    }
    return total;
  }

  #drain(instance: LiveInstance): void {
    if (instance.state === "draining") return;
    instance.state = "draining";
    if (instance.inFlight === 0) void this.#stop(instance, 5000);
  }

  async #stop(instance: LiveInstance, graceMs: number): Promise<void> {
    instance.state = "draining";
    const unit = this.#units.get(instance.functionName);
    try {
      await this.#o.driver.stop(instance.id, { graceMs });
    } catch (err) {
      this.#o.logger.warn({ instance: instance.id, err: messageOf(err) }, "stopping an instance failed");
    }
    this.#forget(instance);
    if (unit) this.#publishGauges(unit);
  }

  #forget(instance: LiveInstance): void {
    this.#byInstance.delete(instance.id);
    this.#units.get(instance.functionName)?.instances.delete(instance.id);
    const upstream = instance.upstream;
    instance.upstream = null;
    if (upstream) void upstream.close().catch(() => upstream.destroy());
  }

  #onDriverEvent(event: DriverEvent): void {
    if (event.type !== "exit" || event.exit.reason === "stopped") return;
    const instance = this.#byInstance.get(event.instanceId);
    if (!instance) return;
    this.#forget(instance);
    const exit: LastExit = { ...event.exit, instanceId: instance.id, at: this.#o.clock.now() };
    this.#exits.record(exit);
    const unit = this.#units.get(event.functionName);
    this.#o.metrics.instanceExits.inc({ function: event.functionName, reason: event.exit.reason });
    const how = `${event.exit.reason}${event.exit.code === null ? "" : ` (exit code ${event.exit.code})`}${event.exit.signal ? ` (signal ${event.exit.signal})` : ""}`;
    this.#o.systemLog(event.functionName, instance.revisionId, instance.id, `instance exited: ${how}`);
    this.#o.logger.warn(
      { function: event.functionName, instance: instance.id, reason: event.exit.reason },
      "instance exited",
    );
    // Crashes of an old revision's draining instances say nothing about the revision that serves now.
    if (!unit || instance.revisionId !== unit.revision?.id) return;
    recordCrash(this.#host, unit, exit);
    this.#publishGauges(unit);
  }

  #publishGauges(unit: Unit): void {
    const counts: Record<LiveState, number> = { starting: 0, ready: 0, draining: 0 };
    for (const instance of unit.instances.values()) counts[instance.state]++;
    for (const [state, value] of Object.entries(counts)) {
      this.#o.metrics.instances.set({ function: unit.name, state }, value);
    }
  }
}

/** The fleet's secret resolver when none is given: any secret is missing. */
function noSecrets(names: readonly string[]): Record<string, Buffer> {
  throw new FuncdError(
    "SECRET_NOT_FOUND",
    `Secret "${names[0]}" cannot be read: this daemon has no secret store`,
  );
}
