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
import { genericSpec } from "../common/generic.js";
import { waitUntilReady } from "../common/readiness.js";
import { abandonStart, ReadyWait } from "../common/ready-wait.js";
import { InstanceRegistry, snapshot } from "../common/registry.js";
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
  trackContainer,
} from "./container.js";
import { containerConfig, socketVolumeConfig, socketVolumeName } from "./container-config.js";
import type { Engine } from "./engine.js";
import { createFailure, imageMissing, startFailure } from "./failures.js";
import { ensureNetwork } from "./network.js";
import { specializationRefusal, specializeInto, takeOver } from "./pool.js";

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
  /**
   * The time of the newest stored log line of an instance: an adopted container's output is followed
   * from there, so what it wrote while no daemon ran reaches the log store too. Without it, adopted
   * containers are followed from the moment they are adopted.
   */
  lastLogAt?: (functionName: string, instanceId: string) => number | undefined;
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

/** One hardened container per instance; see the module comment and `docs/runtime-contract.md`. */
export class DockerDriver implements Driver {
  readonly name = "docker";

  private readonly docker: Docker;
  private readonly logger: Logger;
  private readonly networkName: string;
  /** Live containers, starts in progress, listeners. */
  private readonly registry = new InstanceRegistry<DockerInstance>("docker");
  /** Image → its `USER`, asked once per image (tags are content hashes, so they do not change). */
  private readonly imageUsers = new Map<string, Promise<string | undefined>>();
  private network: Promise<string> | undefined;
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
      instances: this.registry.live,
      listeners: this.registry.listeners,
      logSink: (line) => this.options.logSink(line),
      settle: (cleanup) => this.registry.settle(cleanup),
      ...(options.lastLogAt === undefined ? {} : { lastLogAt: options.lastLogAt }),
    };
    if (options.pool !== undefined) {
      this.slotsDir = resolve(options.pool.slotsDir);
      this.startGeneric = (runtime, generic) => this.startGenericContainer(runtime, generic);
      this.specialize = (poolId, spec, start) => this.specializeContainer(poolId, spec, start);
    }
  }

  async start(spec: InstanceSpec, options: StartOptions = {}): Promise<InstanceInfo> {
    this.registry.checkOpen();
    this.registry.checkNewId(spec.instanceId);
    options.signal?.throwIfAborted();
    return this.registry.tracked(spec.instanceId, options.signal, (signal) =>
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
    this.registry.checkGenericStart(options);
    const template = await this.runtimeTraits(runtime);
    if (!template.generic) {
      throw new FuncdError("UNKNOWN_RUNTIME", `Runtime "${runtime}" has no generic mode for the warm pool`);
    }
    options.signal?.throwIfAborted();
    const slotDir = join(this.slotsDir as string, poolId);
    await mkdir(slotDir, { recursive: true, mode: 0o755 });
    const spec = genericSpec(poolId, runtime, memoryMb, slotDir);
    try {
      await this.registry.tracked(poolId, options.signal, (signal) =>
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
    const inst = this.registry.readyGeneric(poolId);
    const { bootEnv } = await this.runtimeTraits(spec.runtime);
    this.registry.checkSpecialization(poolId, spec, specializationRefusal(inst.generic, spec, bootEnv));
    options.signal?.throwIfAborted();
    takeOver(this.registry.live, inst, spec);
    return this.registry.tracked(spec.instanceId, options.signal, (signal) =>
      specializeInto(inst, spec, options.readyTimeoutMs ?? 10_000, signal),
    );
  }

  /** What the pool needs to know of a runtime (see the `pool` option). */
  private async runtimeTraits(runtime: string): Promise<{ generic: boolean; bootEnv: readonly string[] }> {
    return (await this.options.pool?.runtime?.(runtime)) ?? { generic: true, bootEnv: [] };
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
      from: "start",
      announced: false,
      ...(generic === undefined ? {} : { generic, slotDir: spec.artifactDir }),
    });

    // Whatever ends the wait first: ready, exit, timeout, or the caller's abort.
    const wait = new ReadyWait(signal, readyTimeoutMs, inst.exitSeen);
    try {
      if (socket === undefined) {
        const address = await addressOf(this.docker, await container.inspect(), spec.instanceId);
        // No port: it exited before the engine could publish one. Its exit ends the wait.
        if (address === undefined) await untilAborted(wait.signal);
        info.address = address ?? info.address;
      }
      await waitUntilReady(info.address, wait.signal, { want: generic === undefined ? "ready" : "generic" });
    } catch (err) {
      await abandonStart(
        wait.reason(err),
        { kill: () => this.kill(inst), exited: inst.exited },
        (exit, why) => startFailure(spec, exit, why, inst.oomKilled, readyTimeoutMs),
      );
    } finally {
      wait.close();
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
    await this.registry.stop(instanceId, async (inst) => {
      // The engine sends SIGTERM (docker-init passes it to the runtime, which drains), then SIGKILL
      // after the grace — a handler may ignore or hang on SIGTERM, and a stop must end. Whole seconds.
      const t = Math.max(0, Math.ceil((options.graceMs ?? 5_000) / 1000));
      await inst.container.stop({ t }).catch((err: unknown) => {
        if (!isGone(err))
          this.logger.warn({ instance: instanceId, err: messageOf(err) }, "docker stop failed");
        return this.kill(inst);
      });
    });
  }

  /** The instances serving (or starting for) functions, adopted ones included; not generic pool ones. */
  list(): InstanceInfo[] {
    return this.registry.list();
  }

  onEvent(listener: (event: DriverEvent) => void): () => void {
    return this.registry.onEvent(listener);
  }

  /**
   * Takes over the healthy running instances a previous run of this daemon left (listed as `adopted`)
   * and removes the rest of what it left; see adopt.ts.
   */
  async reconcile(): Promise<{ removed: number }> {
    const { removed } = await reconcileContainers(
      this.host,
      this.options.daemonId,
      (instanceId) => this.registry.live.has(instanceId) || this.registry.starting.has(instanceId),
    );
    // Pool slots whose container is gone (named by pool id; a specialized one keeps its slot).
    if (this.slotsDir !== undefined) {
      const live = new Set([
        ...[...this.registry.live.values()].flatMap((inst) =>
          inst.slotDir === undefined ? [] : [inst.slotDir],
        ),
        ...[...this.registry.starting.keys()].map((id) => join(this.slotsDir as string, id)),
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
    await this.registry.dispose((id, options) => this.stop(id, options));
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
