/**
 * The process driver: one OS process per instance, running the runtime server of
 * `templates/<runtime>/` inside a bubblewrap sandbox (or, weaker, directly) as a per-function uid,
 * under a memory cgroup (or an RSS watchdog), reachable on a unix socket in its instance dir.
 * This module is the lifecycle; the pieces it assembles live beside it.
 *
 * For the warm pool it also starts *generic* instances (`startGeneric`): the same sandbox, cgroup and
 * explicit env, as a pool slot uid of their own, with an empty slot dir where the function's files would
 * be — and `specialize` later links a function's files into that slot and has the runtime load them.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readdir, rm, rmdir } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import type { Logger } from "pino";
import type { Clock } from "../../shared/clock.js";
import { FuncdError, messageOf } from "../../shared/errors.js";
import type {
  Driver,
  DriverEvent,
  GenericInstance,
  GenericStartOptions,
  InstanceExit,
  InstanceInfo,
  InstanceSpec,
  LogLine,
  LogSink,
  StartOptions,
} from "../driver.js";
import { UidAccess } from "./access.js";
import { describeExit, exitReason, type StartInterruption, startFailure } from "./exit.js";
import { buildLaunch, insidePaths, instanceEnv } from "./launch.js";
import { InstanceCgroup, listCgroups, type MemoryEnforcement, RssWatchdog } from "./memory.js";
import { LastLines, parseTagged, readLines } from "./output.js";
import {
  createInstanceCgroup,
  type MemoryPlan,
  resolveMemoryPlan,
  resolveSandboxPlan,
  type SandboxPlan,
} from "./plans.js";
import { processTree, readStat, signalAll, signalGroup } from "./proctree.js";
import { waitUntilReady } from "./readiness.js";
import {
  instanceDirName,
  instancePaths,
  prepareInstanceDir,
  prepareRunDir,
  removeLeftover,
  writeMeta,
  writePid,
} from "./rundir.js";
import { DEFAULT_UID_BASE, isRoot, PoolUids, type SandboxMode, uidFor } from "./sandbox.js";
import { fillSlot, requestSpecialization } from "./slot.js";
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

/** Longest unix socket path Linux accepts (sun_path is 108 bytes with the NUL). */
const MAX_SOCKET_PATH = 107;
const INSTANCE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** How long to wait for an exited instance's last output before reporting without it. */
const OUTPUT_DRAIN_MS = 500;
/** dispose() is for daemon shutdown: the gateway has drained invocations, so a short grace will do. */
const DISPOSE_GRACE_MS = 1_000;

/** What a generic (warm pool) instance was started as, until it is specialized. */
interface GenericState {
  runtime: string;
  memoryMb: number;
  /** The template's boot-only variables: a function setting one cannot use this instance. */
  bootEnv: string[];
}

interface Instance {
  /** The function it serves; a generic instance takes its function's spec at specialization. */
  spec: InstanceSpec;
  info: InstanceInfo;
  /** Set while it is a generic pool instance that nobody has started specializing. */
  generic: GenericState | undefined;
  /** The pool slot uid it runs as (started generic, root daemon); released when it has exited. */
  slotUid: number | undefined;
  paths: ReturnType<typeof instancePaths>;
  pid: number;
  sandboxed: boolean;
  cgroup: InstanceCgroup | undefined;
  watchdog: RssWatchdog | undefined;
  lastLines: LastLines;
  /** Output streams finished. */
  drained: Promise<void>;
  /** Resolves as soon as the first process exited (before the clean-up `exited` waits for). */
  exitSeen: Promise<void>;
  /** Set when `exitSeen` resolves: its pid may be reused from then on, so it must not be signalled. */
  processExited: boolean;
  /** Settles after the exit has been recorded and everything cleaned up. */
  exited: Promise<InstanceExit>;
  /** stop() asked for this exit: no exit event, reason `stopped`. */
  stopRequested: boolean;
  oomByWatchdog: boolean;
  /** The memory limit killed it (known once it exited). */
  oomKilled: boolean;
  /** start() resolved: from now on an exit is news for the scaler (for the pool, while generic). */
  announced: boolean;
}

/** Why the readiness wait was cut short (other than by the caller). */
class Interrupted {
  constructor(readonly why: StartInterruption) {}
}

/** One sandboxed OS process per instance; see the module comment and `docs/runtime-contract.md`. */
export class ProcessDriver implements Driver {
  readonly name = "process";

  private readonly runDir: string;
  private readonly templatesDir: string;
  private readonly logger: Logger;
  private readonly clock: Pick<Clock, "now">;
  private readonly uidBase: number;
  private readonly instances = new Map<string, Instance>();
  /** Starts in progress, so stop() and dispose() can abort them and reconcile() leaves them alone. */
  private readonly starting = new Map<string, { abort: AbortController; done: Promise<unknown> }>();
  private readonly listeners = new Set<(event: DriverEvent) => void>();
  private readonly templates = new Map<string, Promise<RuntimeTemplate>>();
  /** Pool slot uids of live generic or specialized-from-the-pool instances. */
  private readonly poolUids: PoolUids;
  private sandboxPlan: Promise<SandboxPlan> | undefined;
  private memoryPlan: Promise<MemoryPlan> | undefined;
  private runDirReady: Promise<void> | undefined;
  private disposed = false;
  /** Permissions granted to instance uids on the host (root only); remembered per driver. */
  private readonly access: UidAccess;

  constructor(private readonly options: ProcessDriverOptions) {
    this.runDir = resolve(options.runDir);
    this.templatesDir = resolve(options.templatesDir);
    this.logger = options.logger.child({ driver: "process" });
    this.clock = options.clock ?? Date;
    this.uidBase = options.uidBase ?? DEFAULT_UID_BASE;
    this.access = new UidAccess(this.logger);
    this.poolUids = new PoolUids(this.uidBase);
    if (!Number.isInteger(this.uidBase) || this.uidBase < 1000 || this.uidBase > 4_294_000_000) {
      throw new FuncdError(
        "CONFIG_INVALID",
        `uidBase ${this.uidBase} is not a uid between 1000 and 4294000000`,
      );
    }
  }

  async start(spec: InstanceSpec, options: StartOptions = {}): Promise<InstanceInfo> {
    if (this.disposed) throw new FuncdError("FUNCTION_UNAVAILABLE", "The process driver has been disposed");
    if (!INSTANCE_ID.test(spec.instanceId)) {
      throw new FuncdError("BAD_REQUEST", `Instance id "${spec.instanceId}" is not a valid instance id`);
    }
    if (this.instances.has(spec.instanceId) || this.starting.has(spec.instanceId)) {
      throw new FuncdError("BAD_REQUEST", `Instance "${spec.instanceId}" is already running`);
    }
    options.signal?.throwIfAborted();
    return this.tracked(spec.instanceId, options.signal, (signal) =>
      this.launch(spec, options.readyTimeoutMs ?? 10_000, signal),
    );
  }

  /**
   * Starts a generic instance of `runtime` for the warm pool: sandboxed and limited like any instance,
   * as a pool slot uid, with its empty slot dir at the function dir, the runtime in its generic mode.
   */
  async startGeneric(runtime: string, options: GenericStartOptions): Promise<GenericInstance> {
    const { poolId, memoryMb } = options;
    if (this.disposed) throw new FuncdError("FUNCTION_UNAVAILABLE", "The process driver has been disposed");
    if (!INSTANCE_ID.test(poolId)) {
      throw new FuncdError("BAD_REQUEST", `Pool instance id "${poolId}" is not a valid instance id`);
    }
    if (this.instances.has(poolId) || this.starting.has(poolId)) {
      throw new FuncdError("BAD_REQUEST", `Instance "${poolId}" is already running`);
    }
    if (!Number.isInteger(memoryMb) || memoryMb < 16) {
      throw new FuncdError("BAD_REQUEST", `A pool instance needs a memory limit in MiB, not ${memoryMb}`);
    }
    options.signal?.throwIfAborted();
    const paths = instancePaths(this.runDir, poolId);
    // Only what the launch needs: no function, no env; the slot dir stands where the artifact would.
    const spec: InstanceSpec = {
      instanceId: poolId,
      functionName: "",
      revisionId: "",
      runtime,
      artifactDir: paths.slotDir,
      handler: "",
      env: {},
      memoryMb,
      timeoutMs: 1,
    };
    const info = await this.tracked(poolId, options.signal, (signal) =>
      this.launch(spec, options.readyTimeoutMs ?? 10_000, signal, true),
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
    if (this.disposed) throw new FuncdError("FUNCTION_UNAVAILABLE", "The process driver has been disposed");
    const inst = this.instances.get(poolId);
    const generic = inst?.generic;
    if (inst === undefined || generic === undefined || inst.stopRequested || inst.info.state !== "ready") {
      throw new FuncdError(
        "FUNCTION_UNAVAILABLE",
        `Pool instance "${poolId}" is not a ready generic instance`,
      );
    }
    const bootOnly = Object.keys(spec.env).filter((name) => generic.bootEnv.includes(name));
    const refusal =
      spec.runtime !== generic.runtime
        ? `it runs runtime "${generic.runtime}", not "${spec.runtime}"`
        : spec.memoryMb !== generic.memoryMb
          ? `its memory limit is ${generic.memoryMb} MiB, not ${spec.memoryMb} MiB`
          : bootOnly.length > 0
            ? `the function sets ${bootOnly.join(", ")}, which the runtime reads only when it boots`
            : undefined;
    if (refusal !== undefined) {
      throw new FuncdError(
        "FUNCTION_UNAVAILABLE",
        `Function "${spec.functionName}" cannot be specialized from pool instance "${poolId}": ${refusal}`,
        { extra: { refused: true } },
      );
    }
    if (!INSTANCE_ID.test(spec.instanceId)) {
      throw new FuncdError("BAD_REQUEST", `Instance id "${spec.instanceId}" is not a valid instance id`);
    }
    if (this.instances.has(spec.instanceId) || this.starting.has(spec.instanceId)) {
      throw new FuncdError("BAD_REQUEST", `Instance "${spec.instanceId}" is already running`);
    }
    options.signal?.throwIfAborted();
    // From here on the instance is the function's: its output, its bookkeeping, its failure. Until
    // specialization succeeds it counts as starting, so an exit is a failed start, news to nobody.
    inst.generic = undefined;
    inst.spec = spec;
    inst.announced = false;
    inst.info = {
      ...inst.info,
      instanceId: spec.instanceId,
      functionName: spec.functionName,
      revisionId: spec.revisionId,
      state: "starting",
    };
    this.instances.delete(poolId);
    this.instances.set(spec.instanceId, inst);
    return this.tracked(spec.instanceId, options.signal, (signal) =>
      this.specializeInto(inst, options.readyTimeoutMs ?? 10_000, signal),
    );
  }

  /** Runs a start under an abort controller that stop() and dispose() can reach while it is pending. */
  private async tracked<T>(
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

  private async specializeInto(
    inst: Instance,
    readyTimeoutMs: number,
    signal: AbortSignal,
  ): Promise<InstanceInfo> {
    const began = performance.now();
    const spec = inst.spec;
    const wait = new AbortController();
    const relay = () => wait.abort(signal.reason);
    signal.addEventListener("abort", relay, { once: true });
    if (signal.aborted) relay();
    const timer = setTimeout(() => wait.abort(new Interrupted("timeout")), readyTimeoutMs);
    void inst.exitSeen.then(() => wait.abort(new Interrupted("exited")));
    let linkedMs = 0;
    try {
      await fillSlot(spec.artifactDir, inst.paths.slotDir, inst.slotUid);
      linkedMs = performance.now() - began;
      wait.signal.throwIfAborted();
      const env = instanceEnv(spec, insidePaths(inst.sandboxed, inst.paths.socketPath, inst.paths.slotDir));
      const answer = await requestSpecialization(
        inst.paths.socketPath,
        {
          handler: spec.handler,
          ...(spec.handlerStyle === undefined ? {} : { handlerStyle: spec.handlerStyle }),
          env,
          functionName: spec.functionName,
          revision: spec.revisionId,
          timeoutMs: spec.timeoutMs,
          memoryMb: spec.memoryMb,
        },
        wait.signal,
      );
      if (answer.status === 422) throw new Interrupted("load-failed");
      if (answer.status !== 200) {
        throw new Error(`the runtime answered its specialization with ${answer.status}: ${answer.text}`);
      }
    } catch (err) {
      const why: unknown =
        err instanceof Interrupted && err.why === "load-failed"
          ? err
          : wait.signal.aborted
            ? wait.signal.reason
            : err;
      // A runtime that could not load the handler exits (code 3) right after saying so: let it.
      if (why instanceof Interrupted && why.why === "load-failed") {
        await Promise.race([inst.exitSeen, new Promise((resolve) => setTimeout(resolve, 1_000))]);
      }
      if (!inst.processExited) await this.kill(inst);
      const exit = await inst.exited;
      if (signal.aborted) throw signal.reason;
      if (why instanceof Interrupted && why.why === "timeout") {
        throw new FuncdError(
          "FUNCTION_UNAVAILABLE",
          `Function "${spec.functionName}" did not load its handler within ${readyTimeoutMs} ms (specializing a warm pool instance) and was stopped`,
          { extra: { logs: exit.lastLogLines } },
        );
      }
      if (why instanceof Interrupted) {
        throw startFailure({
          ...spec,
          sandboxed: inst.sandboxed,
          oomKilled: inst.oomKilled,
          exit,
          why: why.why,
          readyTimeoutMs,
        });
      }
      throw new FuncdError(
        "FUNCTION_UNAVAILABLE",
        `Function "${spec.functionName}" could not be specialized from the warm pool: ${messageOf(why)}`,
        { cause: why, extra: { logs: exit.lastLogLines } },
      );
    } finally {
      clearTimeout(timer);
      signal.removeEventListener("abort", relay);
    }
    inst.info.state = "ready";
    inst.info.startedAt = this.clock.now();
    inst.announced = true;
    const ms = (value: number) => Math.round(value * 10) / 10;
    this.logger.debug(
      {
        instance: spec.instanceId,
        function: spec.functionName,
        pid: inst.pid,
        linkMs: ms(linkedMs),
        specializeMs: ms(performance.now() - began),
      },
      "instance ready (specialized from the warm pool)",
    );
    // Bookkeeping only (reconcile reads the cgroup from it, which has not changed): off the cold path.
    void this.writeMetaOf(inst).catch((err: unknown) =>
      this.logger.warn({ err, instance: spec.instanceId }, "cannot update an instance's meta.json"),
    );
    return snapshot(inst.info);
  }

  private writeMetaOf(inst: Instance): Promise<void> {
    const { spec, cgroup } = inst;
    return writeMeta(inst.paths.meta, {
      instanceId: spec.instanceId,
      functionName: spec.functionName,
      revisionId: spec.revisionId,
      runtime: spec.runtime,
      createdAt: this.clock.now(),
      ...(cgroup === undefined ? {} : { cgroup: { version: cgroup.version, path: cgroup.path } }),
      ...(inst.generic === undefined ? {} : { generic: inst.generic.runtime }),
    });
  }

  private async launch(
    spec: InstanceSpec,
    readyTimeoutMs: number,
    signal: AbortSignal,
    generic = false,
  ): Promise<InstanceInfo> {
    const began = performance.now();
    const [template, sandbox, memory] = await Promise.all([
      this.template(spec.runtime),
      this.sandbox(),
      this.memory(),
      this.prepareRunDir(),
    ]);
    signal.throwIfAborted();
    if (generic && !template.generic) {
      throw new FuncdError(
        "UNKNOWN_RUNTIME",
        `Runtime "${spec.runtime}" has no generic mode (its template.yaml does not declare "generic: true"), so the warm pool cannot pre-start it`,
        { extra: { generic: "unsupported" } },
      );
    }
    const paths = instancePaths(this.runDir, spec.instanceId);
    if (Buffer.byteLength(paths.socketPath) > MAX_SOCKET_PATH) {
      throw new FuncdError(
        "CONFIG_INVALID",
        `The run dir ${this.runDir} is too long: the socket path ${paths.socketPath} exceeds ${MAX_SOCKET_PATH} bytes`,
      );
    }
    // A pool instance gets a slot uid of its own (no function's uid: it may become any function).
    const slotUid = generic && isRoot() ? this.poolUids.take() : undefined;
    const uid = generic ? slotUid : isRoot() ? uidFor(spec.functionName, this.uidBase) : undefined;
    const releaseSlotUid = () => this.poolUids.release(slotUid);
    const limitBytes = spec.memoryMb * 1024 * 1024;
    let cgroup: InstanceCgroup | undefined;
    try {
      const prefix = "interpreter" in template.program ? template.program.interpreter.prefix : undefined;
      const reachable = prefix === undefined ? [template.dir] : [template.dir, prefix];
      const access =
        uid === undefined
          ? undefined
          : generic
            ? { grant: this.access, uid, reachable }
            : { grant: this.access, uid, reachable, readable: spec.artifactDir };
      await prepareInstanceDir(paths, access, generic);
      if (memory.kind === "cgroup") cgroup = await createInstanceCgroup(memory, spec.instanceId, limitBytes);
      await writeMeta(paths.meta, {
        instanceId: spec.instanceId,
        functionName: spec.functionName,
        revisionId: spec.revisionId,
        runtime: spec.runtime,
        createdAt: this.clock.now(),
        ...(cgroup === undefined ? {} : { cgroup: { version: cgroup.version, path: cgroup.path } }),
        ...(generic ? { generic: spec.runtime } : {}),
      });
    } catch (err) {
      releaseSlotUid();
      await cgroup?.remove().catch(() => undefined);
      await rm(paths.dir, { recursive: true, force: true }).catch(() => undefined);
      throw err;
    }

    const { argv, env, cwd } = buildLaunch({ spec, template, sandbox, paths, uid, cgroup, generic });
    const child = spawn(argv[0] as string, argv.slice(1), {
      env,
      cwd,
      stdio: ["ignore", "pipe", "pipe"],
      // Its own process group, so stop() can signal everything the runtime spawned (without bwrap).
      detached: true,
    });
    if (child.pid === undefined) {
      const err = await new Promise<Error>((resolve) => child.once("error", resolve));
      releaseSlotUid();
      await cgroup?.remove().catch(() => undefined);
      await rm(paths.dir, { recursive: true, force: true });
      throw new FuncdError("SANDBOX_UNAVAILABLE", `Cannot run ${argv[0]}: ${messageOf(err)}`, { cause: err });
    }
    const spawned = performance.now();
    const genericState = generic
      ? { runtime: spec.runtime, memoryMb: spec.memoryMb, bootEnv: template.bootEnv }
      : undefined;
    const inst = this.track(spec, child, child.pid, paths, sandbox.kind === "bwrap", cgroup, {
      generic: genericState,
      slotUid,
    });
    await writePid(paths.pid, inst.pid, (await readStat(inst.pid))?.startTime);
    if (memory.kind === "watchdog") {
      inst.watchdog = new RssWatchdog(inst.pid, limitBytes, (rss) => {
        inst.oomByWatchdog = true;
        const used = Math.round(rss / 1024 / 1024);
        this.system(
          inst,
          `funcd: instance killed: it used ${used} MiB, over its memory limit of ${spec.memoryMb} MiB`,
        );
        void this.kill(inst);
      });
    }

    // Whatever ends the wait first: ready, exit, timeout, or the caller's abort.
    const wait = new AbortController();
    const relay = () => wait.abort(signal.reason);
    signal.addEventListener("abort", relay, { once: true });
    if (signal.aborted) relay();
    const timer = setTimeout(() => wait.abort(new Interrupted("timeout")), readyTimeoutMs);
    void inst.exitSeen.then(() => wait.abort(new Interrupted("exited")));
    try {
      await waitUntilReady(paths.socketPath, wait.signal);
    } catch (err) {
      const why: unknown = wait.signal.aborted ? wait.signal.reason : err;
      if (!(why instanceof Interrupted && why.why === "exited")) await this.kill(inst);
      const exit = await inst.exited;
      // The caller's own abort reason is rethrown as is, as fetch() does.
      if (!(why instanceof Interrupted)) throw why;
      throw startFailure({
        ...spec,
        sandboxed: inst.sandboxed,
        oomKilled: inst.oomKilled,
        exit,
        why: why.why,
        readyTimeoutMs,
        ...(generic ? { subject: `a warm pool instance of runtime "${spec.runtime}"` } : {}),
      });
    } finally {
      clearTimeout(timer);
      signal.removeEventListener("abort", relay);
    }
    inst.info.state = "ready";
    inst.announced = true;
    const ms = (from: number, to: number) => Math.round((to - from) * 10) / 10;
    this.logger.debug(
      {
        instance: spec.instanceId,
        function: spec.functionName,
        pid: inst.pid,
        prepareMs: ms(began, spawned),
        bootMs: ms(spawned, performance.now()),
        ...(generic ? { generic: true } : {}),
      },
      generic ? "generic instance ready (warm pool)" : "instance ready",
    );
    return snapshot(inst.info);
  }

  /** Registers a spawned child: output capture, exit handling, bookkeeping. */
  private track(
    spec: InstanceSpec,
    child: ChildProcess,
    pid: number,
    paths: ReturnType<typeof instancePaths>,
    sandboxed: boolean,
    cgroup: InstanceCgroup | undefined,
    pool: { generic: GenericState | undefined; slotUid: number | undefined },
  ): Instance {
    const lastLines = new LastLines(50);
    const capture = (name: "stdout" | "stderr") => {
      const stream = child[name];
      if (stream === null) return Promise.resolve();
      return readLines(stream, (line) => {
        const { requestId, text } = parseTagged(line);
        lastLines.push(text);
        // A generic instance belongs to no function yet: its output is the daemon's.
        if (inst.generic !== undefined) {
          this.logger.info({ poolInstance: inst.info.instanceId, stream: name }, text);
          return;
        }
        // Read at each line: a specialized instance changes identity once.
        const { functionName, revisionId, instanceId } = inst.spec;
        this.emitLog({
          time: this.clock.now(),
          functionName,
          revisionId,
          instanceId,
          stream: name,
          ...(requestId === undefined ? {} : { requestId }),
          text,
        });
      });
    };
    let seen: () => void = () => undefined;
    const inst: Instance = {
      spec,
      info: {
        instanceId: spec.instanceId,
        functionName: spec.functionName,
        revisionId: spec.revisionId,
        address: { socketPath: paths.socketPath },
        state: "starting",
        startedAt: this.clock.now(),
        pid,
      },
      paths,
      pid,
      sandboxed,
      cgroup,
      generic: pool.generic,
      slotUid: pool.slotUid,
      watchdog: undefined,
      lastLines,
      drained: Promise.all([capture("stdout"), capture("stderr")]).then(() => undefined),
      exitSeen: new Promise<void>((resolve) => {
        seen = resolve;
      }),
      exited: new Promise((resolve) => {
        child.once("exit", (code, signal) => {
          inst.processExited = true;
          seen();
          resolve(this.onExit(inst, code, signal));
        });
      }),
      processExited: false,
      stopRequested: false,
      oomByWatchdog: false,
      oomKilled: false,
      announced: false,
    };
    child.on("error", (err) =>
      this.logger.error({ err, instance: spec.instanceId }, "instance process error"),
    );
    this.instances.set(spec.instanceId, inst);
    return inst;
  }

  /** Records an exit, removes the rest of the instance, and tells listeners when it was not asked for. */
  private async onExit(
    inst: Instance,
    code: number | null,
    signal: NodeJS.Signals | null,
  ): Promise<InstanceExit> {
    inst.watchdog?.stop();
    inst.oomKilled = inst.oomByWatchdog || ((await inst.cgroup?.oomKilled()) ?? false);
    // Whatever the runtime left running (children it spawned) goes with it. Its pid is reaped and could
    // in theory be reused, but a new process would lead a group of its own, not this one.
    signalGroup(inst.pid, "SIGKILL");
    await inst.cgroup?.kill();
    await Promise.race([inst.drained, new Promise((resolve) => setTimeout(resolve, OUTPUT_DRAIN_MS))]);
    const unasked = exitReason(code, signal, inst.oomKilled);
    const reason = inst.stopRequested ? "stopped" : inst.announced ? unasked : "start-failed";
    if (unasked === "OOMKilled" && !inst.oomByWatchdog && inst.announced) {
      this.system(inst, `funcd: instance killed: it reached its memory limit of ${inst.spec.memoryMb} MiB`);
    }
    if (reason !== "stopped" && reason !== "start-failed") {
      this.system(inst, `funcd: instance exited (${describeExit(code, signal, inst.sandboxed)})`);
    }
    const exit: InstanceExit = { reason, code, signal, lastLogLines: inst.lastLines.snapshot() };
    await inst.cgroup?.remove().catch((err: unknown) => {
      this.logger.warn({ err, cgroup: inst.cgroup?.path }, "cannot remove an instance cgroup");
    });
    await rm(inst.paths.dir, { recursive: true, force: true }).catch(() => undefined);
    inst.info.state = reason === "stopped" || reason === "exited" ? "stopped" : "failed";
    inst.info.exit = exit;
    // Keyed by its current id (a specialized instance was re-keyed); a newer entry is left alone.
    if (this.instances.get(inst.info.instanceId) === inst) this.instances.delete(inst.info.instanceId);
    // Only now that its processes are gone may another pool instance run as this uid.
    this.poolUids.release(inst.slotUid);
    if (inst.announced && !inst.stopRequested && inst.generic !== undefined) {
      const poolId = inst.info.instanceId;
      const { runtime } = inst.generic;
      this.logger.warn({ poolInstance: poolId, runtime, reason, code, signal }, "warm pool instance exited");
      this.notify({ type: "generic-exit", poolId, runtime, exit });
    } else if (inst.announced && !inst.stopRequested) {
      const { instanceId, functionName } = inst.spec;
      this.logger.info(
        { instance: instanceId, function: functionName, reason, code, signal },
        "instance exited",
      );
      this.notify({ type: "exit", instanceId, functionName, exit });
    }
    return exit;
  }

  private notify(event: DriverEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (err) {
        this.logger.error({ err }, "a driver event listener threw");
      }
    }
  }

  async stop(instanceId: string, options: { graceMs?: number } = {}): Promise<void> {
    const pending = this.starting.get(instanceId);
    if (pending !== undefined && !this.instances.get(instanceId)?.announced) {
      const reason = new FuncdError(
        "FUNCTION_UNAVAILABLE",
        `Instance "${instanceId}" was stopped while starting`,
      );
      pending.abort.abort(reason);
      await pending.done.catch(() => undefined);
      return;
    }
    const inst = this.instances.get(instanceId);
    if (inst === undefined) return;
    if (!inst.stopRequested) {
      inst.stopRequested = true;
      inst.info.state = "draining";
      await this.terminate(inst);
      // SIGKILL after the grace: a handler may ignore or hang on SIGTERM, and a stop must end.
      const timer = setTimeout(() => void this.kill(inst), options.graceMs ?? 5_000);
      void inst.exited.finally(() => clearTimeout(timer));
    }
    await inst.exited;
  }

  /**
   * SIGTERM to the runtime and what it spawned — not to bwrap's own processes: the outer one would die
   * of it and take the sandbox down with SIGKILL (--die-with-parent), skipping the runtime's drain.
   */
  private async terminate(inst: Instance): Promise<void> {
    if (!inst.sandboxed) {
      signalGroup(inst.pid, "SIGTERM");
      return;
    }
    const stats = await Promise.all((await processTree(inst.pid)).map(readStat));
    signalAll(
      stats.flatMap((s) => (s !== undefined && s.comm !== "bwrap" ? [s.pid] : [])),
      "SIGTERM",
    );
  }

  /** SIGKILL to everything of the instance: its process tree, its process group, its cgroup. */
  private async kill(inst: Instance): Promise<void> {
    signalAll(await processTree(inst.pid), "SIGKILL");
    signalGroup(inst.pid, "SIGKILL");
    await inst.cgroup?.kill();
  }

  /** The instances serving (or starting for) functions; generic pool instances are the pool's business. */
  list(): InstanceInfo[] {
    return [...this.instances.values()]
      .filter((inst) => inst.generic === undefined)
      .map((inst) => snapshot(inst.info));
  }

  onEvent(listener: (event: DriverEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async reconcile(): Promise<{ removed: number }> {
    // Named after the id an instance started with: a specialized pool instance keeps its pool id's.
    const starting = [...this.starting.keys()];
    const ourDirs = new Set([
      ...[...this.instances.values()].map((inst) => basename(inst.paths.dir)),
      ...starting.map(instanceDirName),
    ]);
    const ourCgroups = new Set([
      ...[...this.instances.values()].flatMap((inst) => (inst.cgroup ? [basename(inst.cgroup.path)] : [])),
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
    this.disposed = true;
    const reason = new FuncdError("FUNCTION_UNAVAILABLE", "The process driver is shutting down");
    for (const { abort } of this.starting.values()) abort.abort(reason);
    await Promise.all([
      ...[...this.starting.values()].map(({ done }) => done.catch(() => undefined)),
      ...[...this.instances.keys()].map((id) => this.stop(id, { graceMs: DISPOSE_GRACE_MS })),
    ]);
    this.listeners.clear();
    // Leave no empty parent cgroup behind; fails harmlessly while another driver on this run dir uses it.
    const memory = await this.memoryPlan?.catch(() => undefined);
    if (memory?.kind === "cgroup") await rmdir(memory.parent).catch(() => undefined);
  }

  private emitLog(line: LogLine): void {
    try {
      this.options.logSink(line);
    } catch (err) {
      this.logger.error({ err }, "the log sink threw");
    }
  }

  /** A line from the driver itself about an instance, kept with its output for crash reports. */
  private system(inst: Instance, text: string): void {
    inst.lastLines.push(text);
    if (inst.generic !== undefined) {
      this.logger.warn({ poolInstance: inst.info.instanceId }, text);
      return;
    }
    const { functionName, revisionId, instanceId } = inst.spec;
    this.emitLog({ time: this.clock.now(), functionName, revisionId, instanceId, stream: "system", text });
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

function snapshot(info: InstanceInfo): InstanceInfo {
  return {
    ...info,
    address: { ...info.address },
    ...(info.exit === undefined ? {} : { exit: { ...info.exit } }),
  };
}
