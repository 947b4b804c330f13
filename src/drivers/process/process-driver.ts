/**
 * The process driver: one OS process per instance, running the runtime server of
 * `templates/<runtime>/` inside a bubblewrap sandbox (or, weaker, directly) as a per-function uid,
 * under a memory cgroup (or an RSS watchdog), reachable on a unix socket in its instance dir.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, chown, mkdir, readdir, rm, rmdir, stat } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
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
import {
  findCgroupRoot,
  heapFlags,
  InstanceCgroup,
  listCgroups,
  type MemoryEnforcement,
  prepareCgroupParent,
  RssWatchdog,
} from "./memory.js";
import { LastLines, parseTagged, readLines } from "./output.js";
import { processTree, readStat, signalAll, signalGroup } from "./proctree.js";
import { waitUntilReady } from "./readiness.js";
import { instancePaths, removeLeftover, writeMeta, writePid } from "./rundir.js";
import {
  bwrapArgs,
  DEFAULT_UID_BASE,
  dropPrivilegesArgs,
  ensureReadable,
  ensureTraversable,
  findTools,
  isRoot,
  probeBwrap,
  SANDBOX_PATHS,
  type SandboxMode,
  uidFor,
} from "./sandbox.js";
import { commandLine, loadTemplate, type RuntimeTemplate } from "./template.js";

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

/** The environment every instance gets besides its function's env and the contract variables. */
const BASE_ENV = { PATH: "/usr/local/bin:/usr/bin:/bin", HOME: "/tmp", NODE_ENV: "production" } as const;
/** Longest unix socket path Linux accepts (sun_path is 108 bytes with the NUL). */
const MAX_SOCKET_PATH = 107;
const INSTANCE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** How long to wait for an exited instance's last output before reporting without it. */
const OUTPUT_DRAIN_MS = 500;

type SandboxPlan = { kind: "bwrap"; bwrap: string; setpriv?: string } | { kind: "none"; setpriv?: string };
type MemoryPlan = { kind: "cgroup"; version: 1 | 2; parent: string } | { kind: "watchdog" };

interface Instance {
  spec: InstanceSpec;
  info: InstanceInfo;
  paths: ReturnType<typeof instancePaths>;
  child: ChildProcess;
  pid: number;
  sandboxed: boolean;
  cgroup: InstanceCgroup | undefined;
  watchdog: RssWatchdog | undefined;
  lastLines: LastLines;
  /** Output streams finished (or given up on). */
  drained: Promise<void>;
  /** Resolves as soon as the first process exited (before the clean-up `exited` waits for). */
  exitSeen: Promise<void>;
  /** stop() asked for this exit: no exit event, reason `stopped`. */
  stopRequested: boolean;
  oomByWatchdog: boolean;
  /** The memory limit killed it (known once it exited). */
  oomKilled: boolean;
  /** start() resolved: from now on an exit is news for the scaler. */
  announced: boolean;
  /** Settles after the exit has been recorded and everything cleaned up. */
  exited: Promise<InstanceExit>;
}

/** Why the readiness wait was cut short. */
class StartInterrupted {
  constructor(readonly why: "exited" | "timeout") {}
}

/** One OS process per instance; see the module comment and `docs/runtime-contract.md`. */
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

  constructor(private readonly options: ProcessDriverOptions) {
    this.runDir = resolve(options.runDir);
    this.templatesDir = resolve(options.templatesDir);
    this.logger = options.logger.child({ driver: "process" });
    this.clock = options.clock ?? Date;
    this.uidBase = options.uidBase ?? DEFAULT_UID_BASE;
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
    const done = this.startInstance(spec, options.readyTimeoutMs ?? 10_000, abort.signal);
    this.starting.set(spec.instanceId, { abort, done });
    try {
      return await done;
    } finally {
      this.starting.delete(spec.instanceId);
      options.signal?.removeEventListener("abort", onCallerAbort);
    }
  }

  private async startInstance(
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
      await this.prepareInstanceDir(spec, template, paths, uid);
      if (memory.kind === "cgroup") {
        cgroup = await this.createCgroup(memory, spec.instanceId, limitBytes);
      }
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

    const sandboxed = sandbox.kind === "bwrap";
    const interpreter = "interpreter" in template.program ? template.program.interpreter : undefined;
    let argv = commandLine(
      template,
      sandboxed ? SANDBOX_PATHS.runtime : template.dir,
      interpreter === undefined ? [] : heapFlags(interpreter.name, spec.memoryMb),
    );
    if (sandbox.kind === "bwrap") {
      argv = [
        ...bwrapArgs(sandbox.bwrap, {
          templateDir: template.dir,
          artifactDir: spec.artifactDir,
          socketDir: paths.socketDir,
          tmpBytes: limitBytes,
          ...(interpreter?.prefix === undefined ? {} : { interpreterPrefix: interpreter.prefix }),
        }),
        ...argv,
      ];
    }
    if (uid !== undefined && sandbox.setpriv !== undefined)
      argv = [...dropPrivilegesArgs(sandbox.setpriv, uid), ...argv];
    if (cgroup !== undefined) argv = cgroup.wrap(argv);

    const inside = sandboxed
      ? { listen: `${SANDBOX_PATHS.run}/sock`, functionDir: SANDBOX_PATHS.function }
      : { listen: paths.socketPath, functionDir: spec.artifactDir };
    // Never the daemon's environment: it holds secrets, and e.g. NODE_EXTRA_CA_CERTS costs every start.
    const env: Record<string, string> = {
      ...BASE_ENV,
      ...spec.env,
      FUNCD_LISTEN: inside.listen,
      FUNCD_FUNCTION_DIR: inside.functionDir,
      FUNCD_HANDLER: spec.handler,
      FUNCD_FUNCTION_NAME: spec.functionName,
      FUNCD_REVISION: spec.revisionId,
      FUNCD_RUNTIME: spec.runtime,
      FUNCD_TIMEOUT_MS: String(spec.timeoutMs),
      FUNCD_MEMORY_LIMIT_MB: String(spec.memoryMb),
    };

    const child = spawn(argv[0] as string, argv.slice(1), {
      env,
      cwd: sandboxed ? "/" : spec.artifactDir,
      stdio: ["ignore", "pipe", "pipe"],
      // Its own process group, so stop() can signal everything the runtime spawned (without bwrap).
      detached: true,
    });
    if (child.pid === undefined) {
      const err = await new Promise<Error>((resolve) => child.once("error", resolve));
      await cgroup?.remove().catch(() => undefined);
      await rm(paths.dir, { recursive: true, force: true });
      throw new FuncdError("SANDBOX_UNAVAILABLE", `Cannot start "${argv[0]}": ${messageOf(err)}`, {
        cause: err,
      });
    }
    const pid = child.pid;
    const spawned = performance.now();
    const inst = this.track(spec, child, pid, paths, sandboxed, cgroup);
    await writePid(paths.pid, pid, (await readStat(pid))?.startTime);
    if (memory.kind === "watchdog") {
      inst.watchdog = new RssWatchdog(pid, limitBytes, (rss) => {
        inst.oomByWatchdog = true;
        this.system(
          inst,
          `funcd: instance killed: it used ${mib(rss)} MiB, over its memory limit of ${spec.memoryMb} MiB`,
        );
        void this.kill(inst);
      });
    }

    // Whatever ends the wait first: ready, exit, timeout, or the caller's abort.
    const wait = new AbortController();
    const relay = () => wait.abort(signal.reason);
    signal.addEventListener("abort", relay, { once: true });
    if (signal.aborted) relay();
    const timer = setTimeout(() => wait.abort(new StartInterrupted("timeout")), readyTimeoutMs);
    void inst.exitSeen.then(() => wait.abort(new StartInterrupted("exited")));
    try {
      await waitUntilReady(paths.socketPath, wait.signal);
    } catch (err) {
      const why: unknown = wait.signal.aborted ? wait.signal.reason : err;
      if (!(why instanceof StartInterrupted && why.why === "exited")) await this.kill(inst);
      const exit = await inst.exited;
      throw this.startError(inst, exit, why, readyTimeoutMs);
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
        pid,
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
    const outputs = Promise.all([capture("stdout"), capture("stderr")]).then(() => undefined);
    let exitSeen!: () => void;
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
      child,
      pid,
      sandboxed,
      cgroup,
      watchdog: undefined,
      lastLines,
      drained: outputs,
      stopRequested: false,
      oomByWatchdog: false,
      oomKilled: false,
      announced: false,
      exitSeen: new Promise<void>((resolve) => {
        exitSeen = resolve;
      }),
      exited: new Promise((resolve) => {
        child.once("exit", (code, signal) => {
          exitSeen();
          resolve(this.onExit(inst, code, signal));
        });
      }),
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
    const oom = inst.oomByWatchdog || ((await inst.cgroup?.oomKilled()) ?? false);
    inst.oomKilled = oom;
    // Whatever the runtime left running (children it spawned) goes with it.
    await this.killLeftovers(inst);
    await Promise.race([inst.drained, new Promise((resolve) => setTimeout(resolve, OUTPUT_DRAIN_MS))]);
    const clean = code === 0 && signal === null;
    const reason = inst.stopRequested
      ? "stopped"
      : oom && !clean
        ? "OOMKilled"
        : clean
          ? "exited"
          : "crashed";
    if (reason === "OOMKilled" && !inst.oomByWatchdog) {
      this.system(inst, `funcd: instance killed: it reached its memory limit of ${inst.spec.memoryMb} MiB`);
    }
    const exit: InstanceExit = {
      reason: inst.announced ? reason : inst.stopRequested ? "stopped" : "start-failed",
      code,
      signal,
      lastLogLines: inst.lastLines.snapshot(),
    };
    if (inst.announced && reason !== "stopped") {
      this.system(inst, `funcd: instance exited (${describeExit(code, signal, inst.sandboxed)})`);
      exit.lastLogLines = inst.lastLines.snapshot();
    }
    await inst.cgroup?.remove().catch((err: unknown) => {
      this.logger.warn({ err, cgroup: inst.cgroup?.path }, "cannot remove an instance cgroup");
    });
    await rm(inst.paths.dir, { recursive: true, force: true }).catch(() => undefined);
    inst.info.state = reason === "stopped" || reason === "exited" ? "stopped" : "failed";
    inst.info.exit = exit;
    this.instances.delete(inst.spec.instanceId);
    if (inst.announced && !inst.stopRequested) {
      this.logger.info(
        {
          instance: inst.spec.instanceId,
          function: inst.spec.functionName,
          reason: exit.reason,
          code,
          signal,
        },
        "instance exited",
      );
      const event: DriverEvent = {
        type: "exit",
        instanceId: inst.spec.instanceId,
        functionName: inst.spec.functionName,
        exit,
      };
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

  private startError(inst: Instance, exit: InstanceExit, why: unknown, readyTimeoutMs: number): unknown {
    const { functionName, handler, memoryMb } = inst.spec;
    const logs = exit.lastLogLines;
    const output = logs.length > 0 ? `:\n${logs.join("\n")}` : " (it wrote no output)";
    const extra = { extra: { logs } };
    if (!(why instanceof StartInterrupted)) return why; // The caller's abort reason, as fetch() does.
    if (why.why === "timeout") {
      return new FuncdError(
        "FUNCTION_UNAVAILABLE",
        `Function "${functionName}" did not answer /healthz within ${readyTimeoutMs} ms and was stopped${output}`,
        extra,
      );
    }
    if (exit.code === 3) {
      return new FuncdError(
        "HANDLER_LOAD_FAILED",
        `Function "${functionName}" failed to start: its handler "${handler}" could not be loaded${output}`,
        extra,
      );
    }
    if (logs.some((line) => line.startsWith("bwrap:") || line.startsWith("funcd: cannot enter cgroup"))) {
      return new FuncdError(
        "SANDBOX_UNAVAILABLE",
        `The sandbox for function "${functionName}" could not be set up${output}`,
        extra,
      );
    }
    if (inst.oomKilled) {
      return new FuncdError(
        "FUNCTION_CRASHED",
        `Function "${functionName}" was killed at its memory limit of ${memoryMb} MiB while starting${output}`,
        extra,
      );
    }
    return new FuncdError(
      "FUNCTION_CRASHED",
      `Function "${functionName}" exited while starting (${describeExit(exit.code, exit.signal, inst.sandboxed)})${output}`,
      extra,
    );
  }

  async stop(instanceId: string, options: { graceMs?: number } = {}): Promise<void> {
    const pending = this.starting.get(instanceId);
    if (pending !== undefined && !this.instances.get(instanceId)?.announced) {
      pending.abort.abort(
        new FuncdError("FUNCTION_UNAVAILABLE", `Instance "${instanceId}" was stopped while starting`),
      );
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
    const tree = await processTree(inst.pid);
    const stats = await Promise.all(tree.map(readStat));
    signalAll(
      stats.flatMap((s) => (s !== undefined && s.comm !== "bwrap" ? [s.pid] : [])),
      "SIGTERM",
    );
  }

  /** SIGKILL to everything of the instance: its cgroup, its process tree, its process group. */
  private async kill(inst: Instance): Promise<void> {
    signalAll(await processTree(inst.pid), "SIGKILL");
    signalGroup(inst.pid, "SIGKILL");
    await inst.cgroup?.kill();
  }

  /** After the first process exited: kill what is left of the instance (its group, its cgroup). */
  private async killLeftovers(inst: Instance): Promise<void> {
    // The leader is reaped, so its pid could in theory be reused; a new process would have its own
    // group though, and Linux hands out pids in order, so this targets the instance's group only.
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
    let removed = 0;
    const entries = await readdir(this.runDir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      if (!entry.isDirectory() || this.instances.has(entry.name) || this.starting.has(entry.name)) continue;
      await removeLeftover(`${this.runDir}/${entry.name}`);
      removed++;
    }
    const memory = await this.memory().catch(() => undefined);
    if (memory?.kind === "cgroup") {
      for (const name of await listCgroups(memory.parent)) {
        if (this.instances.has(name) || this.starting.has(name)) continue;
        const cgroup = InstanceCgroup.open(memory.version, `${memory.parent}/${name}`);
        await cgroup.kill();
        await cgroup
          .remove()
          .catch((err: unknown) =>
            this.logger.warn({ err, cgroup: cgroup.path }, "cannot remove a stale cgroup"),
          );
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
      // A short grace: the daemon is going away, in-flight invocations have been drained by the gateway.
      ...[...this.instances.keys()].map((id) => this.stop(id, { graceMs: 1_000 })),
    ]);
    this.listeners.clear();
    // Leave no empty parent cgroup behind; fails harmlessly while another driver on this run dir uses it.
    const memory = await this.memoryPlan?.catch(() => undefined);
    if (memory?.kind === "cgroup") await rmdir(memory.parent).catch(() => undefined);
  }

  /** Creates an instance cgroup, re-creating the parent once if another driver on this run dir removed it. */
  private async createCgroup(
    memory: Extract<MemoryPlan, { kind: "cgroup" }>,
    instanceId: string,
    limitBytes: number,
  ): Promise<InstanceCgroup> {
    try {
      return await InstanceCgroup.create(memory.version, memory.parent, instanceId, limitBytes);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      const root = await findCgroupRoot();
      if (root === undefined) throw err;
      await prepareCgroupParent(root, basename(memory.parent));
      return InstanceCgroup.create(memory.version, memory.parent, instanceId, limitBytes);
    }
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
    this.emitLog({
      time: this.clock.now(),
      functionName: inst.spec.functionName,
      revisionId: inst.spec.revisionId,
      instanceId: inst.spec.instanceId,
      stream: "system",
      text,
    });
  }

  private template(runtime: string): Promise<RuntimeTemplate> {
    let pending = this.templates.get(runtime);
    if (pending === undefined) {
      pending = loadTemplate(this.templatesDir, runtime);
      pending.catch(() => this.templates.delete(runtime));
      this.templates.set(runtime, pending);
    }
    return pending;
  }

  private sandbox(): Promise<SandboxPlan> {
    this.sandboxPlan ??= this.resolveSandbox();
    return this.sandboxPlan;
  }

  private async resolveSandbox(): Promise<SandboxPlan> {
    const { setpriv } = await findTools();
    const root = isRoot();
    if (root && setpriv === undefined) {
      throw new FuncdError(
        "SANDBOX_UNAVAILABLE",
        "The daemon runs as root but setpriv (util-linux) is missing, so functions cannot be run as an unprivileged uid",
      );
    }
    const drop = setpriv === undefined ? {} : { setpriv };
    const weaker =
      "functions run as plain processes: they see the host's file system (limited by file permissions) and its processes";
    if (this.options.sandbox === "none") {
      this.logger.warn(`Sandbox disabled (sandbox: none): ${weaker}`);
      return { kind: "none", ...drop };
    }
    const probe = await probeBwrap(root ? this.uidBase : undefined);
    if (probe.ok) return { kind: "bwrap", bwrap: probe.bwrap, ...drop };
    if (this.options.sandbox === "bwrap") {
      throw new FuncdError(
        "SANDBOX_UNAVAILABLE",
        `The bubblewrap sandbox was requested but does not work here: ${probe.reason}`,
      );
    }
    this.logger.warn(
      `Running without the bubblewrap sandbox (${probe.reason}); isolation is weaker: ${weaker}`,
    );
    return { kind: "none", ...drop };
  }

  private memory(): Promise<MemoryPlan> {
    this.memoryPlan ??= this.resolveMemory();
    return this.memoryPlan;
  }

  private async resolveMemory(): Promise<MemoryPlan> {
    const wanted = this.options.memoryEnforcement ?? "auto";
    if (wanted === "watchdog") return { kind: "watchdog" };
    let problem: string;
    try {
      const root = await findCgroupRoot();
      if (root !== undefined) {
        const runKey = createHash("sha256").update(this.runDir).digest("hex").slice(0, 12);
        const parent = await prepareCgroupParent(root, runKey);
        this.logger.debug({ cgroup: parent, version: root.version }, "memory limits enforced by cgroup");
        return { kind: "cgroup", version: root.version, parent };
      }
      problem = "no writable memory cgroup (v2 with the memory controller, or v1 memory)";
    } catch (err) {
      problem = `the memory cgroup cannot be used: ${messageOf(err)}`;
    }
    if (wanted === "cgroup")
      throw new FuncdError("SANDBOX_UNAVAILABLE", `Memory limits by cgroup were requested but ${problem}`);
    this.logger.warn(`Memory limits are enforced by polling RSS every 250 ms, because there is ${problem}`);
    return { kind: "watchdog" };
  }

  /** Creates the run dir once; searchable by instance uids (not listable) when running as root. */
  private prepareRunDir(): Promise<void> {
    this.runDirReady ??= (async () => {
      await mkdir(this.runDir, { recursive: true, mode: 0o700 });
      if (isRoot()) {
        const { mode } = await stat(this.runDir);
        await chmod(this.runDir, (mode & 0o7777) | 0o711);
        await ensureTraversable([dirname(this.runDir)], this.logger);
      }
    })();
    this.runDirReady.catch(() => {
      this.runDirReady = undefined;
    });
    return this.runDirReady;
  }

  /**
   * Creates `<runDir>/<id>/` (bookkeeping, daemon-only) and `run/` inside it owned by the instance uid,
   * and makes the template, interpreter and function files reachable and readable by that uid.
   */
  private async prepareInstanceDir(
    spec: InstanceSpec,
    template: RuntimeTemplate,
    paths: ReturnType<typeof instancePaths>,
    uid: number | undefined,
  ): Promise<void> {
    // A dir of the same name is a leftover of a crashed daemon whose reconcile has not run yet.
    await rm(paths.dir, { recursive: true, force: true });
    await mkdir(paths.socketDir, { recursive: true, mode: 0o700 });
    if (uid === undefined) return;
    await chmod(paths.dir, 0o711);
    await chown(paths.socketDir, uid, uid);
    const interpreter = "interpreter" in template.program ? template.program.interpreter : undefined;
    await ensureTraversable(
      [
        template.dir,
        dirname(spec.artifactDir),
        ...(interpreter?.prefix === undefined ? [] : [interpreter.prefix]),
      ],
      this.logger,
    );
    await ensureReadable(spec.artifactDir, uid);
  }
}

function snapshot(info: InstanceInfo): InstanceInfo {
  return {
    ...info,
    address: { ...info.address },
    ...(info.exit === undefined ? {} : { exit: { ...info.exit } }),
  };
}

function mib(bytes: number): number {
  return Math.round(bytes / 1024 / 1024);
}

/** "code 1", "signal SIGKILL"; bwrap reports a killed runtime as 128 + the signal number. */
function describeExit(code: number | null, signal: string | null, sandboxed: boolean): string {
  if (signal !== null) return `signal ${signal}`;
  if (sandboxed && code !== null && code > 128 && code < 160)
    return `code ${code}, i.e. killed by signal ${code - 128}`;
  return `code ${code}`;
}
