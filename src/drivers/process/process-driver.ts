/**
 * The process driver: one OS process per instance, running the runtime server of
 * `templates/<runtime>/` inside a bubblewrap sandbox (or, weaker, directly) as a per-function uid,
 * under a memory cgroup (or an RSS watchdog), reachable on a unix socket in its instance dir.
 * This module is the `Driver` (the lifecycle); the pieces it assembles live beside it: `start.ts` starts an
 * instance, `instance.ts` tracks it and handles its exit.
 *
 * For the warm pool it also starts *generic* instances (`startGeneric`): the same sandbox, cgroup and
 * explicit env, as a pool slot uid of their own, with an empty slot dir where the function's files would
 * be — and `specialize` later links a function's files into that slot and has the runtime load them
 * (`specialize.ts`).
 */
import { readdir, rmdir } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import type { Logger } from "pino";
import type { Clock } from "../../shared/clock.js";
import { FuncdError } from "../../shared/errors.js";
import { bootOnlyRefusal, genericSpec, poolMismatch } from "../common/generic.js";
import { InstanceRegistry } from "../common/registry.js";
import type {
  Driver,
  DriverEvent,
  GenericInstance,
  GenericStartOptions,
  InstanceInfo,
  InstanceSpec,
  LogSink,
  StartOptions,
} from "../driver.js";
import { UidAccess } from "./access.js";
import { type Instance, kill, terminate } from "./instance.js";
import { InstanceCgroup, listCgroups, type MemoryEnforcement } from "./memory.js";
import { type MemoryPlan, resolveMemoryPlan, resolveSandboxPlan, type SandboxPlan } from "./plans.js";
import { instanceDirName, instancePaths, prepareRunDir, removeLeftover } from "./rundir.js";
import { DEFAULT_UID_BASE, isRoot, PoolUids, type SandboxMode } from "./sandbox.js";
import { adopt, specializeInto } from "./specialize.js";
import { type LaunchHost, launchInstance } from "./start.js";
import { loadTemplate, type RuntimeTemplate } from "./template.js";

export interface ProcessDriverOptions {
  /** The folder holding `templates/<runtime>/`. */
  templatesDir: string;
  /** A daemon-private dir for one sub-dir per instance (its socket, pid and metadata). */
  runDir: string;
  logSink: LogSink;
  logger: Logger;
  sandbox: SandboxMode;
  /** Default `auto`: a memory cgroup when one is writable, else the RSS watchdog. */
  memoryEnforcement?: MemoryEnforcement;
  /** First uid of the per-function uid range used when the daemon runs as root (default 200000). */
  uidBase?: number;
  /** Timestamps of log lines and instances (only `now()` is used). */
  clock?: Pick<Clock, "now">;
}

/** One sandboxed OS process per instance; see the module comment and `docs/runtime-contract.md`. */
export class ProcessDriver implements Driver {
  readonly name = "process";

  private readonly runDir: string;
  private readonly templatesDir: string;
  private readonly logger: Logger;
  private readonly uidBase: number;
  /** Live instances, starts in progress, listeners. */
  private readonly registry = new InstanceRegistry<Instance>("process");
  private readonly templates = new Map<string, Promise<RuntimeTemplate>>();
  /** Pool slot uids of live generic or specialized-from-the-pool instances. */
  private readonly poolUids: PoolUids;
  private sandboxPlan: Promise<SandboxPlan> | undefined;
  private memoryPlan: Promise<MemoryPlan> | undefined;
  private runDirReady: Promise<void> | undefined;
  /** Permissions granted to instance uids on the host (root only); remembered per driver. */
  private readonly access: UidAccess;
  /** The state the start and exit functions share with the driver. */
  private readonly host: LaunchHost;

  constructor(private readonly options: ProcessDriverOptions) {
    this.runDir = resolve(options.runDir);
    this.templatesDir = resolve(options.templatesDir);
    this.logger = options.logger.child({ driver: "process" });
    this.uidBase = options.uidBase ?? DEFAULT_UID_BASE;
    // Modes change only in funcd's own folders: the data dir (around the run dir) and the templates.
    this.access = new UidAccess(this.logger, [dirname(this.runDir), this.templatesDir]);
    this.poolUids = new PoolUids(this.uidBase);
    if (!Number.isInteger(this.uidBase) || this.uidBase < 1000 || this.uidBase > 4_294_000_000) {
      throw new FuncdError(
        "CONFIG_INVALID",
        `uidBase ${this.uidBase} is not a uid between 1000 and 4294000000`,
      );
    }
    this.host = {
      runDir: this.runDir,
      uidBase: this.uidBase,
      logger: this.logger,
      clock: options.clock ?? Date,
      instances: this.registry.live,
      listeners: this.registry.listeners,
      poolUids: this.poolUids,
      access: this.access,
      logSink: (line) => this.options.logSink(line),
      template: (runtime) => this.template(runtime),
      sandbox: () => this.sandbox(),
      memory: () => this.memory(),
      prepareRunDir: () => this.prepareRunDir(),
    };
  }

  async start(spec: InstanceSpec, options: StartOptions = {}): Promise<InstanceInfo> {
    this.registry.checkOpen();
    this.registry.checkNewId(spec.instanceId);
    options.signal?.throwIfAborted();
    return this.registry.tracked(spec.instanceId, options.signal, (signal) =>
      launchInstance(this.host, spec, options.readyTimeoutMs ?? 10_000, signal),
    );
  }

  /**
   * Starts a generic instance of `runtime` for the warm pool: sandboxed and limited like any instance,
   * as a pool slot uid, with its empty slot dir at the function dir, the runtime in its generic mode.
   */
  async startGeneric(runtime: string, options: GenericStartOptions): Promise<GenericInstance> {
    const { poolId, memoryMb } = options;
    this.registry.checkGenericStart(options);
    options.signal?.throwIfAborted();
    const paths = instancePaths(this.runDir, poolId);
    const spec = genericSpec(poolId, runtime, memoryMb, paths.slotDir);
    const info = await this.registry.tracked(poolId, options.signal, (signal) =>
      launchInstance(this.host, spec, options.readyTimeoutMs ?? 10_000, signal, true),
    );
    return { poolId, ...(info.pid === undefined ? {} : { pid: info.pid }) };
  }

  /**
   * Turns the ready generic instance `poolId` into an instance of `spec`: refuses (leaving it generic)
   * when runtime or memory limit differ or the function sets a boot-only variable; otherwise links the
   * function's files into its slot, has the runtime load the handler with the function's env, and
   * re-keys it under `spec.instanceId`. Any failure from then on kills it, as a failed start would.
   */
  async specialize(poolId: string, spec: InstanceSpec, options: StartOptions = {}): Promise<InstanceInfo> {
    const inst = this.registry.readyGeneric(poolId);
    const refusal = poolMismatch(inst.generic, spec) ?? bootOnlyRefusal(spec, inst.generic.bootEnv);
    this.registry.checkSpecialization(poolId, spec, refusal);
    options.signal?.throwIfAborted();
    adopt(this.registry.live, inst, spec);
    return this.registry.tracked(spec.instanceId, options.signal, (signal) =>
      specializeInto(this.host, inst, options.readyTimeoutMs ?? 10_000, signal),
    );
  }

  async stop(instanceId: string, options: { graceMs?: number } = {}): Promise<void> {
    await this.registry.stop(instanceId, async (inst) => {
      await terminate(inst);
      // SIGKILL after the grace: a handler may ignore or hang on SIGTERM, and a stop must end.
      const timer = setTimeout(() => void kill(inst), options.graceMs ?? 5_000);
      void inst.exited.finally(() => clearTimeout(timer));
    });
  }

  /** The instances serving (or starting for) functions; generic pool instances are the pool's business. */
  list(): InstanceInfo[] {
    return this.registry.list();
  }

  onEvent(listener: (event: DriverEvent) => void): () => void {
    return this.registry.onEvent(listener);
  }

  async reconcile(): Promise<{ removed: number }> {
    // Named after the id an instance started with: a specialized pool instance keeps its pool id's.
    const starting = [...this.registry.starting.keys()];
    const live = [...this.registry.live.values()];
    const ourDirs = new Set([
      ...live.map((inst) => basename(inst.paths.dir)),
      ...starting.map(instanceDirName),
    ]);
    const ourCgroups = new Set([
      ...live.flatMap((inst) => (inst.cgroup ? [basename(inst.cgroup.path)] : [])),
      ...starting,
    ]);
    const ours = (name: string) => ourCgroups.has(name);
    let removed = 0;
    const entries = await readdir(this.runDir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      if (!entry.isDirectory() || ourDirs.has(entry.name)) continue;
      await removeLeftover(join(this.runDir, entry.name));
      removed++;
    }
    // Cgroups whose instance dir is gone (a daemon that died between the two removals).
    const memory = await this.memory().catch(() => undefined);
    if (memory?.kind === "cgroup") {
      for (const name of await listCgroups(memory.parent)) {
        // Dot names are the set-up probes of a driver starting on the same run dir right now.
        if (name.startsWith(".") || ours(name)) continue;
        const cgroup = InstanceCgroup.open(memory.version, join(memory.parent, name));
        await cgroup.kill();
        await cgroup.remove().catch((err: unknown) => {
          this.logger.warn({ err, cgroup: cgroup.path }, "cannot remove a stale cgroup");
        });
        removed++;
      }
    }
    if (removed > 0)
      this.logger.info({ removed, runDir: this.runDir }, "removed instances left by an earlier run");
    return { removed };
  }

  async dispose(): Promise<void> {
    await this.registry.dispose((id, options) => this.stop(id, options));
    // Leave no empty parent cgroup behind; fails harmlessly while another driver on this run dir uses it.
    const memory = await this.memoryPlan?.catch(() => undefined);
    if (memory?.kind === "cgroup") await rmdir(memory.parent).catch(() => undefined);
  }

  private template(runtime: string): Promise<RuntimeTemplate> {
    let pending = this.templates.get(runtime);
    if (pending === undefined) {
      pending = loadTemplate(this.templatesDir, runtime);
      // A failure is not kept: the operator may install the runtime and retry.
      pending.catch(() => this.templates.delete(runtime));
      this.templates.set(runtime, pending);
    }
    return pending;
  }

  private sandbox(): Promise<SandboxPlan> {
    this.sandboxPlan ??= resolveSandboxPlan(this.options.sandbox, this.uidBase, this.logger);
    return this.sandboxPlan;
  }

  private memory(): Promise<MemoryPlan> {
    this.memoryPlan ??= resolveMemoryPlan(this.options.memoryEnforcement ?? "auto", this.runDir, this.logger);
    return this.memoryPlan;
  }

  private prepareRunDir(): Promise<void> {
    this.runDirReady ??= prepareRunDir(this.runDir, isRoot() ? this.access : undefined);
    this.runDirReady.catch(() => {
      this.runDirReady = undefined;
    });
    return this.runDirReady;
  }
}
