import type { EventEmitter } from "node:events";
import type { Pool } from "undici";
import type { FunctionSpec } from "../deploy/spec.js";
import { defaultConcurrency } from "../deploy/spec.js";
import type { Driver, DriverEvent, InstanceAddress, InstanceExit } from "../drivers/driver.js";
import type { DaemonMetrics } from "../observability/metrics.js";
import type { Clock } from "../shared/clock.js";
import { FuncdError, messageOf } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import { ConcurrencyMeter, DEFAULT_AUTOSCALE, decide, type ScaleState } from "./autoscaler.js";
import { type BackoffPolicy, crashBackoff } from "./backoff.js";

/** The revision a function serves, ready to start instances from. */
export interface ServableRevision {
  id: string;
  number: number;
  artifactDir: string;
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

interface Waiter {
  resolve(lease: Lease): void;
  reject(err: Error): void;
  cancel(): void;
  queuedAt: number;
}

interface Unit {
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
}

export interface FleetOptions {
  driver: Driver;
  clock: Clock;
  logger: Logger;
  metrics: DaemonMetrics;
  /** Opens the keep-alive pool the gateway proxies through. */
  connect: (address: InstanceAddress, connections: number) => Pool;
  /** Writes a lifecycle line into the function's logs (stream "system"). */
  systemLog: (functionName: string, revisionId: string, instanceId: string, text: string) => void;
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

/** A crash-looping function is one whose instances died this many times in a row. */
const FAILING_AFTER_CRASHES = 3;

/**
 * The fleet holds every function's instances and hands requests a ready one
 * with spare concurrency, starting instances on demand (scale from zero),
 * holding requests while they start (the activator role), restarting after
 * crashes with backoff, draining old revisions and reaping idle instances.
 * The autoscaling issue replaces "start one more when nothing is free" with
 * concurrency-based decisions; the seam is `#wantMore`.
 */
export class Fleet {
  readonly #units = new Map<string, Unit>();
  readonly #byInstance = new Map<string, LiveInstance>();
  readonly #o: FleetOptions;
  readonly #backoff: BackoffPolicy;
  readonly #unsubscribe: () => void;
  readonly #reaper: { cancel(): void };
  readonly #health: { cancel(): void } | null;
  #counter = 0;
  #disposed = false;
  /** Recent unrequested exits by instance id, so the gateway can say why a request's instance died. */
  readonly #recentExits = new Map<string, LastExit>();
  readonly #exitWaiters = new Map<string, ((exit: LastExit) => void)[]>();

  constructor(options: FleetOptions) {
    this.#o = options;
    this.#backoff = options.backoff ?? crashBackoff;
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
    const checks: Promise<void>[] = [];
    for (const unit of this.#units.values()) {
      for (const instance of unit.instances.values()) {
        if (instance.state !== "ready" || instance.inFlight > 0 || !instance.upstream) continue;
        const upstream = instance.upstream;
        checks.push(
          upstream
            .request({ method: "GET", path: "/healthz", headersTimeout: 2000, bodyTimeout: 2000 })
            .then(async (res) => {
              await res.body.dump();
              if (res.statusCode !== 200) throw new Error(`/healthz answered ${res.statusCode}`);
            })
            .catch((err: unknown) => {
              if (instance.state !== "ready" || !this.#byInstance.has(instance.id)) return;
              const text = `health check failed (${messageOf(err)}), replacing the instance`;
              this.#o.systemLog(unit.name, instance.revisionId, instance.id, text);
              this.#o.logger.warn({ function: unit.name, instance: instance.id }, text);
              void this.#stop(instance, 0);
              this.#recordCrash(unit, {
                instanceId: instance.id,
                at: this.#o.clock.now(),
                reason: "unhealthy",
                code: null,
                signal: null,
                lastLogLines: [],
              });
            }),
        );
      }
    }
    await Promise.all(checks);
  }

  /** Registers or updates a function's spec (routes, scale, limits) without touching its revision. */
  upsert(name: string, spec: FunctionSpec): void {
    const unit = this.#units.get(name);
    if (unit) {
      unit.spec = spec;
      this.#ensureMin(unit);
      return;
    }
    this.#units.set(name, {
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
      meter: new ConcurrencyMeter(this.#o.clock.now(), 3_600_000),
      scaleState: { panicUntil: 0, panicDesired: 0 },
      desired: spec.scale.min,
      panic: false,
      lastRequestAt: 0,
      inFlight: 0,
    });
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
      await this.#startInto(instance, spec, revision);
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
   * instances of other revisions drain (finish what they hold, then stop).
   */
  activate(name: string, spec: FunctionSpec, revision: ServableRevision, warm?: LiveInstance): void {
    this.upsert(name, spec);
    const unit = this.#unit(name);
    unit.revision = revision;
    unit.consecutiveCrashes = 0;
    unit.backoffUntil = 0;
    unit.lastStartError = null;
    if (warm) {
      unit.instances.set(warm.id, warm);
      // The deploy's proving instance stays warm for an idle timeout, as if it had just served.
      unit.lastRequestAt = this.#o.clock.now();
    }
    for (const instance of unit.instances.values()) {
      if (instance.revisionId !== revision.id) this.#drain(instance);
    }
    this.#ensureMin(unit);
    this.#dispatch(unit);
    this.#publishGauges(unit);
  }

  /** Stops a function's instances and forgets it; waiting requests get a 404. */
  async remove(name: string): Promise<void> {
    const unit = this.#units.get(name);
    if (!unit) return;
    this.#units.delete(name);
    unit.restartTimer?.cancel();
    for (const waiter of unit.waiters.splice(0)) {
      waiter.reject(new FuncdError("FUNCTION_NOT_FOUND", `Function "${name}" was deleted`));
    }
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
    const free = this.#pickReady(unit);
    if (free) return this.#lease(unit, free, false);
    if (unit.consecutiveCrashes >= FAILING_AFTER_CRASHES && this.#o.clock.now() < unit.backoffUntil) {
      throw this.#failingError(unit);
    }
    const maxQueued = this.#o.maxQueuedPerFunction ?? 1000;
    if (unit.waiters.length >= maxQueued) {
      throw new FuncdError(
        "QUEUE_FULL",
        `Function "${name}" already has ${unit.waiters.length} requests waiting for an instance (the limit is ${maxQueued})`,
        { retryAfter: 1 },
      );
    }
    return new Promise<Lease>((resolve, reject) => {
      const timer = this.#o.clock.setTimeout(() => {
        remove();
        reject(
          new FuncdError(
            "FUNCTION_UNAVAILABLE",
            `Function "${name}" had no instance ready within ${this.#o.coldStartWaitMs} ms` +
              (unit.lastStartError ? `: ${unit.lastStartError.message}` : ""),
            { retryAfter: 1 },
          ),
        );
      }, this.#o.coldStartWaitMs);
      const onAbort = () => {
        remove();
        reject(new FuncdError("BAD_REQUEST", "The client went away while waiting for an instance"));
      };
      const waiter: Waiter = {
        queuedAt: this.#o.clock.now(),
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
        this.#measure(unit);
      };
      cancel?.once("abort", onAbort);
      unit.waiters.push(waiter);
      this.#measure(unit);
      this.#wantMore(unit);
    });
  }

  /**
   * Why an instance exited, waiting up to `waitMs` for the driver's event (a
   * request usually sees its connection drop a moment before the exit is
   * reported). Undefined when it did not exit (or not within the wait).
   */
  exitOf(instanceId: string, waitMs: number): Promise<LastExit | undefined> {
    const known = this.#recentExits.get(instanceId);
    if (known) return Promise.resolve(known);
    return new Promise((resolve) => {
      const timer = this.#o.clock.setTimeout(() => {
        const list = this.#exitWaiters.get(instanceId) ?? [];
        const at = list.indexOf(done);
        if (at >= 0) list.splice(at, 1);
        if (list.length === 0) this.#exitWaiters.delete(instanceId);
        resolve(undefined);
      }, waitMs);
      const done = (exit: LastExit) => {
        timer.cancel();
        resolve(exit);
      };
      const list = this.#exitWaiters.get(instanceId) ?? [];
      list.push(done);
      this.#exitWaiters.set(instanceId, list);
    });
  }

  /** What `describe` shows about a function's instances. */
  status(name: string): FunctionStatus | undefined {
    const unit = this.#units.get(name);
    if (!unit) return undefined;
    return {
      status: !unit.revision
        ? "no-revision"
        : unit.consecutiveCrashes >= FAILING_AFTER_CRASHES
          ? "failing"
          : "ready",
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
    for (const unit of this.#units.values()) {
      unit.meter.sample(now);
      if (!unit.revision) continue;
      const serving = this.#serving(unit);
      const scale = unit.spec.scale;
      const decision = decide(
        unit.meter.samples,
        now,
        serving.length,
        {
          concurrency: defaultConcurrency(unit.spec),
          targetUtilization: scale.targetUtilization ?? DEFAULT_AUTOSCALE.targetUtilization,
          min: scale.min,
          max: scale.max,
          stableWindowMs: scale.stableWindow ?? DEFAULT_AUTOSCALE.stableWindowMs,
          panicWindowMs: scale.panicWindow ?? DEFAULT_AUTOSCALE.panicWindowMs,
          panicThreshold: DEFAULT_AUTOSCALE.panicThreshold,
        },
        unit.scaleState,
      );
      unit.scaleState = decision.state;
      const busy = unit.inFlight > 0 || unit.waiters.length > 0;
      const recentlyUsed = busy || now - unit.lastRequestAt < scale.idleTimeout;
      // Past idleTimeout without a request the window's leftovers no longer matter: go down to min.
      const desired = recentlyUsed
        ? Math.min(scale.max, Math.max(decision.desired, scale.min, 1))
        : scale.min;
      if (desired !== unit.desired || decision.panic !== unit.panic) {
        this.#o.logger.info(
          {
            function: unit.name,
            desired,
            current: serving.length,
            panic: decision.panic,
            stableConcurrency: Number(decision.stableConcurrency.toFixed(2)),
            panicConcurrency: Number(decision.panicConcurrency.toFixed(2)),
          },
          "autoscaler decision",
        );
      }
      unit.desired = desired;
      unit.panic = decision.panic;
      this.#o.metrics.desiredInstances.set({ function: unit.name }, desired);
      this.#o.metrics.panicMode.set({ function: unit.name }, decision.panic ? 1 : 0);
      this.#o.metrics.queueDepth.set({ function: unit.name }, unit.waiters.length);

      if (serving.length < desired && now >= unit.backoffUntil) {
        for (let n = serving.length; n < desired; n++) this.#launch(unit, unit.revision, false);
      } else if (serving.length > desired) {
        const idle = serving
          .filter((i) => i.state === "ready" && i.inFlight === 0)
          .sort((a, b) => a.lastUsedAt - b.lastUsedAt);
        const excess = serving.length - desired;
        for (const instance of idle.slice(0, Math.ceil(excess / 2))) {
          this.#o.systemLog(
            unit.name,
            instance.revisionId,
            instance.id,
            "instance not needed, stopping (scale down)",
          );
          this.#drain(instance);
        }
      }
    }
  }

  /** Kept for callers of the pre-autoscaler API: one autoscaler round. */
  reapIdle(): void {
    this.tick();
  }

  async dispose(): Promise<void> {
    this.#disposed = true;
    this.#reaper.cancel();
    this.#health?.cancel();
    this.#unsubscribe();
    for (const unit of this.#units.values()) {
      unit.restartTimer?.cancel();
      for (const waiter of unit.waiters.splice(0)) {
        waiter.reject(new FuncdError("FUNCTION_UNAVAILABLE", "funcd is shutting down", { retryAfter: 5 }));
      }
    }
    await Promise.all([...this.#byInstance.values()].map((i) => this.#stop(i, 3000)));
  }

  // ── internals ────────────────────────────────────────────────────────────

  #unit(name: string): Unit {
    const unit = this.#units.get(name);
    if (!unit) throw new FuncdError("FUNCTION_NOT_FOUND", `No function named "${name}"`);
    return unit;
  }

  #newInstance(name: string, revisionId: string): LiveInstance {
    const now = this.#o.clock.now();
    this.#counter++;
    return {
      id: `${name}-${revisionId.slice(0, 8)}-${now.toString(36)}${this.#counter.toString(36)}`,
      functionName: name,
      revisionId,
      state: "starting",
      address: null,
      upstream: null,
      pid: undefined,
      inFlight: 0,
      served: 0,
      startedAt: now,
      readyAt: null,
      lastUsedAt: now,
    };
  }

  async #startInto(instance: LiveInstance, spec: FunctionSpec, revision: ServableRevision): Promise<void> {
    const started = this.#o.clock.now();
    const info = await this.#o.driver.start({
      instanceId: instance.id,
      functionName: instance.functionName,
      revisionId: revision.id,
      runtime: spec.runtime,
      artifactDir: revision.artifactDir,
      handler: spec.handler,
      handlerStyle: spec.handlerStyle,
      env: spec.env,
      memoryMb: spec.memory,
      timeoutMs: spec.timeout,
    });
    instance.address = info.address;
    instance.pid = info.pid;
    instance.upstream = this.#o.connect(info.address, defaultConcurrency(spec));
    instance.state = "ready";
    instance.readyAt = this.#o.clock.now();
    instance.lastUsedAt = instance.readyAt;
    this.#o.metrics.coldStartDuration.observe(
      { function: instance.functionName },
      (instance.readyAt - started) / 1000,
    );
    this.#o.systemLog(
      instance.functionName,
      revision.id,
      instance.id,
      `instance ready in ${instance.readyAt - started} ms (revision #${revision.number})`,
    );
  }

  #pickReady(unit: Unit): LiveInstance | undefined {
    const limit = defaultConcurrency(unit.spec);
    let best: LiveInstance | undefined;
    for (const instance of unit.instances.values()) {
      if (
        instance.state !== "ready" ||
        instance.revisionId !== unit.revision?.id ||
        instance.inFlight >= limit
      )
        continue;
      if (!best || instance.inFlight < best.inFlight) best = instance;
    }
    return best;
  }

  #lease(unit: Unit, instance: LiveInstance, coldStart: boolean): Lease {
    instance.inFlight++;
    instance.served++;
    instance.lastUsedAt = this.#o.clock.now();
    unit.inFlight++;
    this.#measure(unit);
    let released = false;
    return {
      instance,
      coldStart,
      release: (outcome = {}) => {
        if (released) return;
        released = true;
        instance.inFlight--;
        instance.lastUsedAt = this.#o.clock.now();
        unit.inFlight--;
        this.#measure(unit);
        if (outcome.kill) {
          this.#o.systemLog(
            unit.name,
            instance.revisionId,
            instance.id,
            "instance did not answer in time, killing it",
          );
          void this.#stop(instance, 0);
        } else if (outcome.broken && instance.state !== "draining") {
          // Its process is most likely gone and the driver's exit event (with the real reason: crashed,
          // OOMKilled) is on its way. Stop routing to it now; stop it ourselves only if no exit comes.
          instance.state = "draining";
          this.#o.clock.setTimeout(() => {
            if (this.#byInstance.has(instance.id)) void this.#stop(instance, 0);
          }, 2000);
        } else if (outcome.recycle && instance.state === "ready") {
          this.#o.systemLog(
            unit.name,
            instance.revisionId,
            instance.id,
            "handler timed out, recycling the instance",
          );
          this.#drain(instance);
        } else if (instance.state === "draining" && instance.inFlight === 0) {
          void this.#stop(instance, 5000);
        } else if (instance.state === "ready") {
          // A request went through: whatever crashed before is behind us.
          if (unit.consecutiveCrashes > 0 && !outcome.recycle) unit.consecutiveCrashes = 0;
        }
        this.#dispatch(unit);
      },
    };
  }

  /** Gives waiting requests to free instances, and asks for more if some still wait. */
  #dispatch(unit: Unit): void {
    while (unit.waiters.length > 0) {
      const free = this.#pickReady(unit);
      if (!free) break;
      const waiter = unit.waiters.shift();
      waiter?.resolve(this.#lease(unit, free, free.served === 0));
      this.#measure(unit);
    }
    if (unit.waiters.length > 0) this.#wantMore(unit);
  }

  /**
   * Starts instances while the waiting requests exceed what starting
   * instances will be able to take, up to `scale.max`.
   */
  #wantMore(unit: Unit): void {
    const revision = unit.revision;
    if (!revision || this.#disposed) return;
    const now = this.#o.clock.now();
    if (now < unit.backoffUntil) {
      this.#scheduleRestart(unit, unit.backoffUntil - now);
      return;
    }
    const limit = defaultConcurrency(unit.spec);
    const current = [...unit.instances.values()].filter(
      (i) => i.revisionId === revision.id && i.state !== "draining",
    );
    const starting = current.filter((i) => i.state === "starting").length;
    const needed = Math.ceil(unit.waiters.length / limit) - starting;
    const room = unit.spec.scale.max - current.length;
    for (let n = 0; n < Math.min(needed, room); n++) this.#launch(unit, revision, true);
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
    this.#startInto(instance, unit.spec, revision).then(
      () => {
        if (unit.revision?.id !== revision.id || this.#units.get(unit.name) !== unit) {
          this.#drain(instance);
        }
        unit.lastStartError = null;
        this.#publishGauges(unit);
        this.#dispatch(unit);
      },
      (err: unknown) => {
        unit.instances.delete(instance.id);
        this.#byInstance.delete(instance.id);
        const error =
          err instanceof FuncdError ? err : new FuncdError("FUNCTION_UNAVAILABLE", messageOf(err));
        unit.lastStartError = error;
        this.#o.logger.warn(
          { function: unit.name, instance: instance.id, err: error.message },
          "instance failed to start",
        );
        this.#o.systemLog(unit.name, revision.id, instance.id, `instance failed to start: ${error.message}`);
        this.#recordCrash(unit, {
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

  #scheduleRestart(unit: Unit, delayMs: number): void {
    if (unit.restartTimer) return;
    unit.restartTimer = this.#o.clock.setTimeout(() => {
      unit.restartTimer = null;
      this.#ensureMin(unit);
      if (unit.waiters.length > 0) this.#wantMore(unit);
    }, delayMs);
  }

  #recordCrash(unit: Unit, exit: LastExit): void {
    unit.lastExit = exit;
    unit.consecutiveCrashes++;
    const delay = this.#backoff(unit.consecutiveCrashes);
    unit.backoffUntil = this.#o.clock.now() + delay;
    if (unit.consecutiveCrashes >= FAILING_AFTER_CRASHES) {
      this.#o.logger.error(
        { function: unit.name, crashes: unit.consecutiveCrashes },
        "function is crash-looping",
      );
      for (const waiter of unit.waiters.splice(0)) waiter.reject(this.#failingError(unit));
    }
    const wanted = unit.waiters.length > 0 || this.#servingCount(unit) < unit.spec.scale.min;
    if (wanted) this.#scheduleRestart(unit, delay);
  }

  /** Memory reserved by every instance that is starting or running, in MiB. */
  #reservedMb(): number {
    let total = this.#o.reservedElsewhereMb?.() ?? 0;
    for (const instance of this.#byInstance.values()) {
      total += this.#units.get(instance.functionName)?.spec.memory ?? 0;
    }
    return total;
  }

  /** Instances of the serving revision that are starting or ready (not draining). */
  #serving(unit: Unit): LiveInstance[] {
    return [...unit.instances.values()].filter(
      (i) => i.revisionId === unit.revision?.id && i.state !== "draining",
    );
  }

  #measure(unit: Unit): void {
    unit.meter.change(this.#o.clock.now(), unit.inFlight + unit.waiters.length);
  }

  #servingCount(unit: Unit): number {
    return [...unit.instances.values()].filter(
      (i) => i.revisionId === unit.revision?.id && i.state !== "draining",
    ).length;
  }

  #failingError(unit: Unit): FuncdError {
    const retryAfter = Math.max(1, Math.ceil((unit.backoffUntil - this.#o.clock.now()) / 1000));
    const exit = unit.lastExit;
    return new FuncdError(
      "FUNCTION_FAILING",
      `Function "${unit.name}" is failing: its instances exited ${unit.consecutiveCrashes} times in a row` +
        (exit ? ` (last: ${exit.reason}${exit.code === null ? "" : `, exit code ${exit.code}`})` : ""),
      { retryAfter, extra: { logs: exit?.lastLogLines ?? [] } },
    );
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
    this.#recentExits.set(instance.id, exit);
    if (this.#recentExits.size > 1000) {
      const oldest = this.#recentExits.keys().next().value;
      if (oldest !== undefined) this.#recentExits.delete(oldest);
    }
    for (const notify of this.#exitWaiters.get(instance.id) ?? []) notify(exit);
    this.#exitWaiters.delete(instance.id);
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
    this.#recordCrash(unit, exit);
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
