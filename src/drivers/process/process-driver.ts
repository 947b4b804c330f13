/**
 * The process driver: one OS process per instance, running the runtime server of
 * `templates/<runtime>/` inside a bubblewrap sandbox (or, weaker, directly) as a per-function uid,
 * under a memory cgroup (or an RSS watchdog), reachable on a unix socket in its instance dir.
 * This module is the lifecycle; the pieces it assembles live beside it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readdir, rm, rmdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Logger } from "pino";
import type { Clock } from "../../shared/clock.js";
import { FuncdError, messageOf } from "../../shared/errors.js";
import type {
  Driver,
  DriverEvent,
  InstanceExit,
  InstanceInfo,
  InstanceSpec,
  LogLine,
  LogSink,
  StartOptions,
} from "../driver.js";
import { UidAccess } from "./access.js";
import { describeExit, exitReason, type StartInterruption, startFailure } from "./exit.js";
import { buildLaunch } from "./launch.js";
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
import { DEFAULT_UID_BASE, isRoot, type SandboxMode, uidFor } from "./sandbox.js";
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

interface Instance {
  spec: InstanceSpec;
  info: InstanceInfo;
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
  /** Settles after the exit has been recorded and everything cleaned up. */
  exited: Promise<InstanceExit>;
  /** stop() asked for this exit: no exit event, reason `stopped`. */
  stopRequested: boolean;
  oomByWatchdog: boolean;
  /** The memory limit killed it (known once it exited). */
  oomKilled: boolean;
  /** start() resolved: from now on an exit is news for the scaler. */
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
    const abort = new AbortController();
    const onCallerAbort = () => abort.abort(options.signal?.reason);
    options.signal?.addEventListener("abort", onCallerAbort, { once: true });
    const done = this.launch(spec, options.readyTimeoutMs ?? 10_000, abort.signal);
    this.starting.set(spec.instanceId, { abort, done });
    try {
      return await done;
    } finally {
      this.starting.delete(spec.instanceId);
      options.signal?.removeEventListener("abort", onCallerAbort);
    }
  }

  private async launch(
    spec: InstanceSpec,
    readyTimeoutMs: number,
    signal: AbortSignal,
  ): Promise<InstanceInfo> {
    const began = performance.now();
    const [template, sandbox, memory] = await Promise.all([
      this.template(spec.runtime),
      this.sandbox(),
      this.memory(),
      this.prepareRunDir(),
    ]);
    signal.throwIfAborted();
    const paths = instancePaths(this.runDir, spec.instanceId);
    if (Buffer.byteLength(paths.socketPath) > MAX_SOCKET_PATH) {
      throw new FuncdError(
        "CONFIG_INVALID",
        `The run dir ${this.runDir} is too long: the socket path ${paths.socketPath} exceeds ${MAX_SOCKET_PATH} bytes`,
      );
    }
    const uid = isRoot() ? uidFor(spec.functionName, this.uidBase) : undefined;
    const limitBytes = spec.memoryMb * 1024 * 1024;
    let cgroup: InstanceCgroup | undefined;
    try {
      const prefix = "interpreter" in template.program ? template.program.interpreter.prefix : undefined;
      const reachable = prefix === undefined ? [template.dir] : [template.dir, prefix];
      const access =
        uid === undefined ? undefined : { grant: this.access, uid, reachable, readable: spec.artifactDir };
      await prepareInstanceDir(paths, access);
      if (memory.kind === "cgroup") cgroup = await createInstanceCgroup(memory, spec.instanceId, limitBytes);
      await writeMeta(paths.meta, {
        instanceId: spec.instanceId,
        functionName: spec.functionName,
        revisionId: spec.revisionId,
        runtime: spec.runtime,
        createdAt: this.clock.now(),
        ...(cgroup === undefined ? {} : { cgroup: { version: cgroup.version, path: cgroup.path } }),
      });
    } catch (err) {
      await cgroup?.remove().catch(() => undefined);
      await rm(paths.dir, { recursive: true, force: true }).catch(() => undefined);
      throw err;
    }

    const { argv, env, cwd } = buildLaunch({ spec, template, sandbox, paths, uid, cgroup });
    const child = spawn(argv[0] as string, argv.slice(1), {
      env,
      cwd,
      stdio: ["ignore", "pipe", "pipe"],
      // Its own process group, so stop() can signal everything the runtime spawned (without bwrap).
      detached: true,
    });
    if (child.pid === undefined) {
      const err = await new Promise<Error>((resolve) => child.once("error", resolve));
      await cgroup?.remove().catch(() => undefined);
      await rm(paths.dir, { recursive: true, force: true });
      throw new FuncdError("SANDBOX_UNAVAILABLE", `Cannot run ${argv[0]}: ${messageOf(err)}`, { cause: err });
    }
    const spawned = performance.now();
    const inst = this.track(spec, child, child.pid, paths, sandbox.kind === "bwrap", cgroup);
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
      },
      "instance ready",
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
  ): Instance {
    const lastLines = new LastLines(50);
    const capture = (name: "stdout" | "stderr") => {
      const stream = child[name];
      if (stream === null) return Promise.resolve();
      return readLines(stream, (line) => {
        const { requestId, text } = parseTagged(line);
        lastLines.push(text);
        this.emitLog({
          time: this.clock.now(),
          functionName: spec.functionName,
          revisionId: spec.revisionId,
          instanceId: spec.instanceId,
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
      watchdog: undefined,
      lastLines,
      drained: Promise.all([capture("stdout"), capture("stderr")]).then(() => undefined),
      exitSeen: new Promise<void>((resolve) => {
        seen = resolve;
      }),
      exited: new Promise((resolve) => {
        child.once("exit", (code, signal) => {
          seen();
          resolve(this.onExit(inst, code, signal));
        });
      }),
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
    if (unasked === "OOMKilled" && !inst.oomByWatchdog) {
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
    this.instances.delete(inst.spec.instanceId);
    if (inst.announced && !inst.stopRequested) {
      const { instanceId, functionName } = inst.spec;
      this.logger.info(
        { instance: instanceId, function: functionName, reason, code, signal },
        "instance exited",
      );
      const event: DriverEvent = { type: "exit", instanceId, functionName, exit };
      for (const listener of this.listeners) {
        try {
          listener(event);
        } catch (err) {
          this.logger.error({ err }, "a driver event listener threw");
        }
      }
    }
    return exit;
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

  list(): InstanceInfo[] {
    return [...this.instances.values()].map((inst) => snapshot(inst.info));
  }

  onEvent(listener: (event: DriverEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async reconcile(): Promise<{ removed: number }> {
    const live = [...this.instances.keys(), ...this.starting.keys()];
    const ourDirs = new Set(live.map(instanceDirName));
    const ours = (name: string) => live.includes(name);
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
