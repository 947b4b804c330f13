/**
 * The Docker driver: one container per instance, on a Docker engine (or Podman's compatible socket)
 * through the Engine API. An instance runs its revision's image (`spec.image`, the code inside at
 * /function) or, buildless, the runtime's prebuilt image with the function's folder mounted read-only at
 * /function. The container's shape — hardening, limits, network, labels — is `container-config.ts`;
 * following a running container and handling its exit is `container.ts`; taking over what a previous
 * daemon run left is `adopt.ts`; the warm pool's generic containers and their specialization are
 * `pool.ts`. This module is the `Driver`: the lifecycle around them.
 */
import { mkdir, readdir, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import type Docker from "dockerode";
import type { Logger } from "pino";
import type { Clock } from "../../shared/clock.js";
import { FuncdError, messageOf } from "../../shared/errors.js";
import type {
  Driver,
  DriverEvent,
  GenericInstance,
  GenericStartOptions,
  InstanceAddress,
  InstanceInfo,
  InstanceSpec,
  LogSink,
  StartOptions,
} from "../driver.js";
import { addressOf, reconcileContainers, socketAddress } from "./adopt.js";
import {
  type ContainerHost,
  type DockerInstance,
  type GenericState,
  isGone,
  removeContainer,
  removeVolume,
  snapshot,
  trackContainer,
} from "./container.js";
import { containerConfig, socketVolumeConfig, socketVolumeName } from "./container-config.js";
import type { Engine } from "./engine.js";
import { createFailure, Interrupted, imageMissing, startFailure } from "./failures.js";
import { ensureNetwork } from "./network.js";
import { specializationRefusal, specializeInto, takeOver } from "./pool.js";
import { waitUntilReady } from "./readiness.js";

export interface DockerDriverOptions {
  /** The engine to run containers on (`connectEngine()`). */
  engine: Engine;
  /**
   * This daemon's id, put on every container as `funcd.daemon`: stable per data dir, so a restarted
   * daemon recognises (and only touches) its own containers.
   */
  daemonId: string;
  logSink: LogSink;
  logger: Logger;
  /**
   * The prebuilt runtime image for buildless instances (no `spec.image`), e.g. by building the
   * template's `runtime` stage once. Rejects when it cannot be had.
   */
  runtimeImage: (runtime: string) => Promise<string>;
  /** The bridge network of instances (created when missing). Default `funcd`. */
  networkName?: string;
  /** Timestamps of log lines and instances (only `now()` is used). */
  clock?: Pick<Clock, "now">;
  /**
   * Turns the warm pool on (`startGeneric` / `specialize`): `slotsDir` is a daemon-private folder for
   * the generic containers' code slots (one sub-folder each, mounted read-only at /function);
   * `runtime(name)` says whether a runtime has a generic mode and which variables it reads only while
   * booting (template.yaml's `generic` and `bootEnv`, e.g. the process driver's `loadTemplate`); without
   * it every runtime counts as generic with no boot-only variables. Without `pool` there is no pool.
   */
  pool?: {
    slotsDir: string;
    runtime?: (name: string) => Promise<{ generic: boolean; bootEnv: readonly string[] }>;
  };
}

const INSTANCE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** dispose() is for daemon shutdown: the gateway has drained invocations, so a short grace will do. */
const DISPOSE_GRACE_MS = 1_000;

/** One hardened container per instance; see the module comment and `docs/runtime-contract.md`. */
export class DockerDriver implements Driver {
  readonly name = "docker";

  private readonly docker: Docker;
  private readonly logger: Logger;
  private readonly networkName: string;
  private readonly instances = new Map<string, DockerInstance>();
  /** Starts in progress, so stop() and dispose() can abort them and reconcile() leaves them alone. */
  private readonly starting = new Map<string, { abort: AbortController; done: Promise<unknown> }>();
  private readonly listeners = new Set<(event: DriverEvent) => void>();
  /** Image → its `USER`, asked once per image (tags are content hashes, so they do not change). */
  private readonly imageUsers = new Map<string, Promise<string | undefined>>();
  private network: Promise<string> | undefined;
  private disposed = false;
  private readonly host: ContainerHost;
  private readonly slotsDir: string | undefined;

  /** Present with the `pool` option: a generic container of `runtime` for the warm pool. */
  readonly startGeneric?: (runtime: string, options: GenericStartOptions) => Promise<GenericInstance>;
  /** Present with the `pool` option: turns a generic container into an instance of `spec`. */
  readonly specialize?: (poolId: string, spec: InstanceSpec, options?: StartOptions) => Promise<InstanceInfo>;

  constructor(private readonly options: DockerDriverOptions) {
    this.docker = options.engine.docker;
    this.logger = options.logger.child({ driver: "docker" });
    this.networkName = options.networkName ?? "funcd";
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(options.daemonId)) {
      throw new FuncdError(
        "CONFIG_INVALID",
        `Daemon id "${options.daemonId}" is not usable as a Docker label value`,
      );
    }
    this.host = {
      docker: this.docker,
      logger: this.logger,
      clock: options.clock ?? Date,
      instances: this.instances,
      listeners: this.listeners,
      logSink: (line) => this.options.logSink(line),
    };
    if (options.pool !== undefined) {
      this.slotsDir = resolve(options.pool.slotsDir);
      this.startGeneric = (runtime, generic) => this.startGenericContainer(runtime, generic);
      this.specialize = (poolId, spec, start) => this.specializeContainer(poolId, spec, start);
    }
  }

  async start(spec: InstanceSpec, options: StartOptions = {}): Promise<InstanceInfo> {
    if (this.disposed) throw new FuncdError("FUNCTION_UNAVAILABLE", "The docker driver has been disposed");
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
   * Starts a generic container of `runtime` for the warm pool: hardened and limited like any instance,
   * with its own empty slot folder at /function, the runtime in its generic mode.
   */
  private async startGenericContainer(
    runtime: string,
    options: GenericStartOptions,
  ): Promise<GenericInstance> {
    const { poolId, memoryMb } = options;
    if (this.disposed) throw new FuncdError("FUNCTION_UNAVAILABLE", "The docker driver has been disposed");
    if (!INSTANCE_ID.test(poolId)) {
      throw new FuncdError("BAD_REQUEST", `Pool instance id "${poolId}" is not a valid instance id`);
    }
    if (this.instances.has(poolId) || this.starting.has(poolId)) {
      throw new FuncdError("BAD_REQUEST", `Instance "${poolId}" is already running`);
    }
    if (!Number.isInteger(memoryMb) || memoryMb < 16) {
      throw new FuncdError("BAD_REQUEST", `A pool instance needs a memory limit in MiB, not ${memoryMb}`);
    }
    const template = await this.runtimeTraits(runtime);
    if (!template.generic) {
      throw new FuncdError("UNKNOWN_RUNTIME", `Runtime "${runtime}" has no generic mode for the warm pool`);
    }
    options.signal?.throwIfAborted();
    const slotDir = join(this.slotsDir as string, poolId);
    await mkdir(slotDir, { recursive: true, mode: 0o755 });
    const spec: InstanceSpec = {
      instanceId: poolId,
      functionName: "",
      revisionId: "",
      runtime,
      artifactDir: slotDir,
      handler: "",
      env: {},
      memoryMb,
      timeoutMs: 1,
    };
    try {
      await this.tracked(poolId, options.signal, (signal) =>
        this.launch(spec, options.readyTimeoutMs ?? 10_000, signal, { runtime, memoryMb }),
      );
    } catch (err) {
      await rm(slotDir, { recursive: true, force: true }).catch(() => undefined);
      throw err;
    }
    return { poolId };
  }

  /**
   * Turns the ready generic container `poolId` into an instance of `spec`: refuses (leaving it generic)
   * when runtime or memory limit differ, or the function needs what only its own container gives (its
   * image, no network, a boot-only variable); otherwise fills its slot and has the runtime load the
   * handler, re-keyed under `spec.instanceId`. Any failure from then on removes it.
   */
  private async specializeContainer(
    poolId: string,
    spec: InstanceSpec,
    options: StartOptions = {},
  ): Promise<InstanceInfo> {
    if (this.disposed) throw new FuncdError("FUNCTION_UNAVAILABLE", "The docker driver has been disposed");
    const inst = this.instances.get(poolId);
    const generic = inst?.generic;
    if (inst === undefined || generic === undefined || inst.stopRequested || inst.info.state !== "ready") {
      throw new FuncdError(
        "FUNCTION_UNAVAILABLE",
        `Pool instance "${poolId}" is not a ready generic instance`,
      );
    }
    const { bootEnv } = await this.runtimeTraits(spec.runtime);
    const refusal = specializationRefusal(generic, spec, bootEnv);
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
    takeOver(this.instances, inst, spec);
    return this.tracked(spec.instanceId, options.signal, (signal) =>
      specializeInto(inst, spec, options.readyTimeoutMs ?? 10_000, signal),
    );
  }

  /** What the pool needs to know of a runtime (see the `pool` option). */
  private async runtimeTraits(runtime: string): Promise<{ generic: boolean; bootEnv: readonly string[] }> {
    return (await this.options.pool?.runtime?.(runtime)) ?? { generic: true, bootEnv: [] };
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

  /**
   * Creates, starts and waits for one container (`generic`: a warm pool container, its slot folder as
   * `spec.artifactDir`); on any failure nothing of it is left.
   */
  private async launch(
    spec: InstanceSpec,
    readyTimeoutMs: number,
    signal: AbortSignal,
    generic?: GenericState,
  ): Promise<InstanceInfo> {
    const began = performance.now();
    const buildless = spec.image === undefined;
    const isolated = spec.network === "none";
    const image = spec.image ?? (await this.options.runtimeImage(spec.runtime));
    const [imageUser] = await Promise.all([
      this.imageUser(image, spec),
      isolated ? undefined : this.ensureNetwork(),
    ]);
    signal.throwIfAborted();
    const config = containerConfig({
      spec,
      image,
      imageUser,
      daemonId: this.options.daemonId,
      networkName: this.networkName,
      buildless,
      generic: generic !== undefined,
    });

    // network: none — the gateway's way in is a socket in a volume only this container mounts.
    let volume: string | undefined;
    let socket: InstanceAddress | undefined;
    if (isolated) {
      volume = socketVolumeName(spec.instanceId);
      await this.docker.createVolume(socketVolumeConfig(spec, this.options.daemonId, config.User ?? ""));
      socket = await socketAddress(this.docker, volume).catch(() => undefined);
      if (socket === undefined) {
        await removeVolume(this.host, volume);
        throw new FuncdError(
          "SANDBOX_UNAVAILABLE",
          `Function "${spec.functionName}" has network: none, which needs funcd on the engine's host with access to its volume dir (run funcd as root there), to reach the instance's socket`,
        );
      }
    }

    let container: Docker.Container;
    try {
      container = await this.docker.createContainer(config);
    } catch (err) {
      if (volume !== undefined) await removeVolume(this.host, volume);
      throw createFailure(err, spec, image, this.options.engine.endpoint);
    }
    const created = performance.now();
    try {
      signal.throwIfAborted();
      await container.start();
      signal.throwIfAborted();
    } catch (err) {
      await removeContainer(this.host, container, volume);
      if (signal.aborted) throw signal.reason;
      throw new FuncdError(
        "SANDBOX_UNAVAILABLE",
        `The container of function "${spec.functionName}" could not be started: ${messageOf(err)}`,
        { cause: err },
      );
    }
    const started = performance.now();

    const info: InstanceInfo = {
      instanceId: spec.instanceId,
      functionName: spec.functionName,
      revisionId: spec.revisionId,
      address: socket ?? { host: "127.0.0.1", port: 0 },
      state: "starting",
      startedAt: this.host.clock.now(),
    };
    const inst = trackContainer(this.host, spec, container, info, {
      volume,
      fromStart: true,
      announced: false,
      ...(generic === undefined ? {} : { generic, slotDir: spec.artifactDir }),
    });

    // Whatever ends the wait first: ready, exit, timeout, or the caller's abort.
    const wait = new AbortController();
    const relay = () => wait.abort(signal.reason);
    signal.addEventListener("abort", relay, { once: true });
    if (signal.aborted) relay();
    const timer = setTimeout(() => wait.abort(new Interrupted("timeout")), readyTimeoutMs);
    void inst.exitSeen.then(() => wait.abort(new Interrupted("exited")));
    try {
      if (socket === undefined) {
        const address = await addressOf(this.docker, await container.inspect(), spec.instanceId);
        // No port: it exited before the engine could publish one. Its exit ends the wait.
        if (address === undefined) await untilAborted(wait.signal);
        info.address = address ?? info.address;
      }
      await waitUntilReady(info.address, wait.signal, generic === undefined ? "ready" : "generic");
    } catch (err) {
      const why: unknown = wait.signal.aborted ? wait.signal.reason : err;
      if (!(why instanceof Interrupted && why.why === "exited")) await this.kill(inst);
      const exit = await inst.exited;
      // The caller's own abort reason is rethrown as is, as fetch() does.
      if (!(why instanceof Interrupted)) throw why;
      throw startFailure(spec, exit, why.why, inst.oomKilled, readyTimeoutMs);
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
        image,
        createMs: ms(began, created),
        startMs: ms(created, started),
        bootMs: ms(started, performance.now()),
      },
      generic === undefined ? "instance ready" : "generic container ready (warm pool)",
    );
    return snapshot(inst.info);
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
      // The engine sends SIGTERM (docker-init passes it to the runtime, which drains), then SIGKILL
      // after the grace — a handler may ignore or hang on SIGTERM, and a stop must end. Whole seconds.
      const t = Math.max(0, Math.ceil((options.graceMs ?? 5_000) / 1000));
      await inst.container.stop({ t }).catch((err: unknown) => {
        if (!isGone(err))
          this.logger.warn({ instance: instanceId, err: messageOf(err) }, "docker stop failed");
        return this.kill(inst);
      });
    }
    await inst.exited;
  }

  /** The instances serving (or starting for) functions, adopted ones included; not generic pool ones. */
  list(): InstanceInfo[] {
    return [...this.instances.values()]
      .filter((inst) => inst.generic === undefined)
      .map((inst) => snapshot(inst.info));
  }

  onEvent(listener: (event: DriverEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Takes over the healthy running instances a previous run of this daemon left (listed as `adopted`)
   * and removes the rest of what it left; see adopt.ts.
   */
  async reconcile(): Promise<{ removed: number }> {
    const { removed } = await reconcileContainers(
      this.host,
      this.options.daemonId,
      (instanceId) => this.instances.has(instanceId) || this.starting.has(instanceId),
    );
    // Pool slots whose container is gone (named by pool id; a specialized one keeps its slot).
    if (this.slotsDir !== undefined) {
      const live = new Set([
        ...[...this.instances.values()].flatMap((inst) => (inst.slotDir === undefined ? [] : [inst.slotDir])),
        ...[...this.starting.keys()].map((id) => join(this.slotsDir as string, id)),
      ]);
      for (const name of await readdir(this.slotsDir).catch(() => [])) {
        const dir = join(this.slotsDir, name);
        if (!live.has(dir)) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      }
    }
    return { removed };
  }

  /** Stops and removes every container of this driver (adopted ones too). The network stays. */
  async dispose(): Promise<void> {
    this.disposed = true;
    const reason = new FuncdError("FUNCTION_UNAVAILABLE", "The docker driver is shutting down");
    for (const { abort } of this.starting.values()) abort.abort(reason);
    await Promise.all([
      ...[...this.starting.values()].map(({ done }) => done.catch(() => undefined)),
      ...[...this.instances.keys()].map((id) => this.stop(id, { graceMs: DISPOSE_GRACE_MS })),
    ]);
    this.listeners.clear();
  }

  private async kill(inst: DockerInstance): Promise<void> {
    await inst.container.kill().catch(() => undefined);
  }

  private ensureNetwork(): Promise<string> {
    if (this.network === undefined) {
      const pending = ensureNetwork(this.docker, this.networkName);
      // A failure is not kept: the engine may be back on the next start.
      pending.catch(() => {
        if (this.network === pending) this.network = undefined;
      });
      this.network = pending;
    }
    return this.network;
  }

  /** The image's `USER`; rejects with `IMAGE_NOT_FOUND` when the engine does not have the image. */
  private imageUser(image: string, spec: InstanceSpec): Promise<string | undefined> {
    let pending = this.imageUsers.get(image);
    if (pending === undefined) {
      pending = this.docker
        .getImage(image)
        .inspect()
        .then(
          (details) => details.Config?.User || undefined,
          (err: unknown) => {
            throw isGone(err)
              ? imageMissing(spec, image, this.options.engine.endpoint, err)
              : new FuncdError("DOCKER_UNAVAILABLE", `Cannot inspect image "${image}": ${messageOf(err)}`, {
                  cause: err,
                });
          },
        );
      const kept = pending;
      kept.catch(() => {
        if (this.imageUsers.get(image) === kept) this.imageUsers.delete(image);
      });
      this.imageUsers.set(image, pending);
    }
    return pending;
  }
}

/** Rejects with `signal.reason` once `signal` aborts. */
function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
}
