/**
 * The swarm driver: instances as tasks of Swarm services on a Docker Swarm, driven through a manager's
 * Engine API. One instance = one service with one task (`service-spec.ts`); the swarm's scheduler places
 * it on a node, the node pulls its image from the registry by digest (`images.ts`), and the gateway
 * reaches it at its node's address and the host-mode port the node published (`tasks.ts`). Why one
 * service per instance and not one per revision: Swarm cannot stop a chosen task of a replicated
 * service (scaling down picks its own), while funcd's fleet drains and stops the instance it chose; see
 * docs/architecture.md.
 *
 * Swarm restarts nothing (restart condition `none`): a task that ends — crash, memory limit, node lost —
 * is an `exit` event, and the fleet starts a replacement, which the scheduler puts on a live node.
 */
import { mkdir } from "node:fs/promises";
import type Docker from "dockerode";
import type { Logger } from "pino";
import type { Clock } from "../../shared/clock.js";
import { FuncdError, messageOf } from "../../shared/errors.js";
import type { Engine } from "../common/engine.js";
import { LABELS } from "../common/engine.js";
import { announceExit } from "../common/exit-events.js";
import { outputLine, systemLine } from "../common/instance-lines.js";
import { LastLines, readLogStream } from "../common/log-stream.js";
import { waitUntilReady } from "../common/readiness.js";
import { abandonStart, ReadyWait } from "../common/ready-wait.js";
import { InstanceRegistry, type RegisteredInstance, snapshot } from "../common/registry.js";
import { startFailureError } from "../common/start-failure.js";
import type {
  Driver,
  DriverEvent,
  ExitReason,
  InstanceExit,
  InstanceInfo,
  InstanceSpec,
  LogSink,
  StartOptions,
} from "../driver.js";
import { RegistryImages } from "./images.js";
import { type MountedSecret, serviceSpec, swarmSecretName, TASK_PORT } from "./service-spec.js";
import {
  Nodes,
  newestTask,
  publishedPort,
  type SwarmTask,
  taskEnded,
  taskStopped,
  tasksOf,
} from "./tasks.js";

/** How often the manager is asked about tasks while instances run. */
const POLL_MS = 400;
/** After a task ended, how long its last lines get to arrive through the service log stream. */
const LOG_SETTLE_MS = 600;

export interface SwarmDriverOptions {
  /** A manager of the swarm (`assertSwarmManager`). */
  engine: Engine;
  daemonId: string;
  /** `host:port[/path]` every node can pull from (and the manager push to). */
  registry: string;
  logSink: LogSink;
  logger: Logger;
  /** The runtime's image for buildless functions (built on the manager's engine). */
  runtimeImage: (runtime: string) => Promise<string>;
  /** A folder for code-image build contexts. */
  workDir: string;
  clock?: Pick<Clock, "now">;
}

interface SwarmInstance extends RegisteredInstance {
  serviceId: string;
  lastLines: LastLines;
  logs: AbortController;
  secrets: MountedSecret[];
  /** The task the instance is (set once the scheduler made it). */
  taskId?: string;
  exitSeen: Promise<void>;
  finish: (exit: InstanceExit) => void;
  ending: boolean;
  /** Set by stop(): past it (grace + a margin), the task counts as gone even if no node confirms it. */
  stopDeadline?: number;
  generic: undefined;
}

/** Rejects with SWARM_UNAVAILABLE unless the engine is a manager of an active swarm. */
export async function assertSwarmManager(engine: Engine): Promise<void> {
  const info = (await engine.docker.info()) as {
    Swarm?: { LocalNodeState?: string; ControlAvailable?: boolean };
  };
  const state = info.Swarm?.LocalNodeState ?? "inactive";
  if (state !== "active" || info.Swarm?.ControlAvailable !== true) {
    throw new FuncdError(
      "SWARM_UNAVAILABLE",
      state === "active"
        ? `The engine at ${engine.endpoint} is a swarm worker, not a manager: point DOCKER_HOST at a manager of the swarm`
        : `The engine at ${engine.endpoint} is not part of a swarm (state: ${state}): run \`docker swarm init\` on it (or scripts/swarm-lab.sh up for a 3-node lab) and set DOCKER_HOST to a manager`,
    );
  }
}

export class SwarmDriver implements Driver {
  readonly name = "swarm";
  private readonly docker: Docker;
  private readonly logger: Logger;
  private readonly clock: Pick<Clock, "now">;
  private readonly registry = new InstanceRegistry<SwarmInstance>("swarm");
  private readonly images: RegistryImages;
  private readonly nodes: Nodes;
  private readonly imageFacts = new Map<string, Promise<{ user?: string; command: string[] }>>();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;

  constructor(private readonly options: SwarmDriverOptions) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,40}$/.test(options.daemonId)) {
      throw new FuncdError("CONFIG_INVALID", `Daemon id "${options.daemonId}" is not usable in Swarm names`);
    }
    this.docker = options.engine.docker;
    this.logger = options.logger.child({ driver: "swarm" });
    this.clock = options.clock ?? Date;
    this.images = new RegistryImages(this.docker, options.registry, options.daemonId, options.workDir);
    this.nodes = new Nodes(this.docker);
  }

  async start(spec: InstanceSpec, options: StartOptions = {}): Promise<InstanceInfo> {
    this.registry.checkOpen();
    this.registry.checkNewId(spec.instanceId);
    options.signal?.throwIfAborted();
    return this.registry.tracked(spec.instanceId, options.signal, (signal) =>
      this.launch(spec, options.readyTimeoutMs ?? 60_000, signal),
    );
  }

  private async launch(
    spec: InstanceSpec,
    readyTimeoutMs: number,
    signal: AbortSignal,
  ): Promise<InstanceInfo> {
    if (spec.network === "none") {
      throw new FuncdError(
        "SANDBOX_UNAVAILABLE",
        `Function "${spec.functionName}" has network: none, which the swarm driver cannot give: a task is reached over the network by its node's address`,
      );
    }
    await mkdir(this.options.workDir, { recursive: true });
    const local =
      spec.image ??
      (await this.images.codeImage(await this.options.runtimeImage(spec.runtime), spec.artifactDir));
    const [image, facts] = await Promise.all([this.images.pushed(local), this.imageFacts_(local)]);
    signal.throwIfAborted();
    const secrets = await this.ensureSecrets(spec);
    signal.throwIfAborted();
    const body = serviceSpec({
      spec,
      image,
      imageUser: facts.user,
      imageCommand: facts.command,
      daemonId: this.options.daemonId,
      secrets,
      stopGraceMs: 5_000,
    });
    let serviceId: string;
    try {
      const created = (await this.docker.createService(body)) as unknown as { id?: string; ID?: string };
      serviceId = created.id ?? created.ID ?? "";
    } catch (err) {
      throw new FuncdError(
        "SWARM_UNAVAILABLE",
        `The swarm refused the service of function "${spec.functionName}": ${messageOf(err)}`,
        { cause: err },
      );
    }

    let finish: (exit: InstanceExit) => void = () => undefined;
    const exited = new Promise<InstanceExit>((resolve) => {
      finish = resolve;
    });
    const inst: SwarmInstance = {
      serviceId,
      info: {
        instanceId: spec.instanceId,
        functionName: spec.functionName,
        revisionId: spec.revisionId,
        address: { host: "0.0.0.0", port: 0 },
        state: "starting",
        startedAt: this.clock.now(),
      },
      announced: false,
      stopRequested: false,
      generic: undefined,
      lastLines: new LastLines(50),
      logs: new AbortController(),
      secrets,
      exited,
      exitSeen: exited.then(() => undefined),
      finish,
      ending: false,
    };
    this.registry.live.set(spec.instanceId, inst);
    this.followLogs(inst);
    this.ensurePolling();

    const wait = new ReadyWait(signal, readyTimeoutMs, inst.exitSeen);
    try {
      const address = await this.untilPlaced(inst, wait.signal);
      inst.info.address = address;
      await waitUntilReady(address, wait.signal, { want: "ready" });
    } catch (err) {
      await abandonStart(
        wait.reason(err),
        { kill: () => this.terminate(inst, 0), exited: inst.exited },
        (exit, why) =>
          startFailureError({
            functionName: spec.functionName,
            handler: spec.handler,
            memoryMb: spec.memoryMb,
            oomKilled: exit.reason === "OOMKilled",
            exit,
            why,
            readyTimeoutMs,
            how: exit.code === null ? exit.reason : `code ${exit.code}`,
          }),
      );
    } finally {
      wait.close();
    }
    inst.info.state = "ready";
    inst.announced = true;
    return snapshot(inst.info);
  }

  /** Resolves to the task's address once it runs with its port published (the poller fills `taskId`). */
  private async untilPlaced(
    inst: SwarmInstance,
    signal: AbortSignal,
  ): Promise<{ host: string; port: number }> {
    let told = "";
    for (;;) {
      signal.throwIfAborted();
      const tasks = (await tasksOf(this.docker, [inst.serviceId])).get(inst.serviceId) ?? [];
      const task = newestTask(tasks);
      if (task !== undefined) {
        inst.taskId = task.ID;
        const port = publishedPort(task, TASK_PORT);
        const node = task.NodeID ? await this.nodes.get(task.NodeID) : undefined;
        if (port !== undefined && node?.addr) return { host: node.addr, port };
        // A task the scheduler cannot place says why (no node with enough memory, image not found…).
        const why = task.Status?.Err ?? "";
        if (why !== "" && why !== told) {
          told = why;
          systemLine(this.lineHost(), inst, `task ${task.Status?.State ?? "?"}: ${why}`);
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
  }

  private lineHost() {
    return { logger: this.logger, clock: this.clock, logSink: this.options.logSink };
  }

  /** The service's output (every task, any node, through the manager) into the function's logs. */
  private followLogs(inst: SwarmInstance): void {
    const service = this.docker.getService(inst.serviceId);
    const host = this.lineHost();
    void (async () => {
      try {
        const source = (await service.logs({
          follow: true,
          stdout: true,
          stderr: true,
        })) as unknown as NodeJS.ReadableStream;
        await readLogStream(
          this.docker,
          source,
          undefined,
          (line) => outputLine(host, inst, line.stream, line.text, line.requestId),
          inst.logs.signal,
        );
      } catch (err) {
        if (!inst.logs.signal.aborted) {
          this.logger.debug({ instance: inst.info.instanceId, err: messageOf(err) }, "service logs ended");
        }
      }
    })();
  }

  /** The image's user and command (entrypoint + cmd), asked once per image on the manager. */
  private imageFacts_(image: string): Promise<{ user?: string; command: string[] }> {
    let pending = this.imageFacts.get(image);
    if (pending === undefined) {
      pending = this.docker
        .getImage(image)
        .inspect()
        .then((details) => ({
          ...(details.Config?.User ? { user: details.Config.User } : {}),
          command: [...(details.Config?.Entrypoint ?? []), ...(details.Config?.Cmd ?? [])],
        }));
      pending.catch(() => this.imageFacts.delete(image));
      this.imageFacts.set(image, pending);
    }
    return pending;
  }

  /** Swarm secrets of the instance's secret values: made when missing (named by value, never changed). */
  private async ensureSecrets(spec: InstanceSpec): Promise<MountedSecret[]> {
    const out: MountedSecret[] = [];
    for (const [name, value] of Object.entries(spec.secrets ?? {})) {
      const swarmName = swarmSecretName(this.options.daemonId, name, value);
      const found = (await this.docker.listSecrets({ filters: { name: [swarmName] } })) as {
        ID: string;
        Spec?: { Name?: string };
      }[];
      let id = found.find((s) => s.Spec?.Name === swarmName)?.ID;
      if (id === undefined) {
        try {
          const made = (await this.docker.createSecret({
            Name: swarmName,
            Labels: { [LABELS.managed]: "true", [LABELS.daemon]: this.options.daemonId },
            Data: Buffer.from(value).toString("base64"),
          })) as { id?: string; ID?: string };
          id = made.id ?? made.ID ?? "";
        } catch (err) {
          // Made meanwhile by another start of the same value.
          const again = (await this.docker.listSecrets({ filters: { name: [swarmName] } })) as {
            ID: string;
          }[];
          id = again[0]?.ID;
          if (id === undefined) {
            throw new FuncdError(
              "SWARM_UNAVAILABLE",
              `Cannot create the Swarm secret of "${name}": ${messageOf(err)}`,
            );
          }
        }
      }
      out.push({ id, swarmName, name });
    }
    return out;
  }

  private ensurePolling(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => void this.poll(), POLL_MS);
    this.timer.unref();
  }

  /** One look at every instance's task: an ended task ends its instance. */
  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const watched = [...this.registry.live.values()].filter((inst) => !inst.ending);
      if (watched.length === 0) {
        if (this.registry.live.size === 0 && this.registry.starting.size === 0) {
          clearInterval(this.timer);
          this.timer = undefined;
        }
        return;
      }
      const byService = await tasksOf(
        this.docker,
        watched.map((inst) => inst.serviceId),
      );
      for (const inst of watched) {
        const tasks = byService.get(inst.serviceId) ?? [];
        const task = tasks.find((t) => t.ID === inst.taskId) ?? (inst.taskId ? undefined : newestTask(tasks));
        if (task === undefined) {
          // Its task is gone — or, stopped before the scheduler made one, it never had one.
          const stopped =
            inst.stopDeadline !== undefined && (tasks.length === 0 || Date.now() > inst.stopDeadline);
          if (inst.taskId !== undefined || stopped) this.end(inst, undefined);
          continue;
        }
        inst.taskId = task.ID;
        // Asked to stop, it is over when its container is (its desired state changed at once); unless its
        // node is gone and cannot say so, which the deadline covers.
        const over =
          inst.stopDeadline === undefined
            ? taskEnded(task)
            : taskStopped(task) || Date.now() > inst.stopDeadline;
        if (over) this.end(inst, task);
      }
    } catch (err) {
      this.logger.warn({ err: messageOf(err) }, "asking the swarm manager about tasks failed");
    } finally {
      this.polling = false;
    }
  }

  /** The task ended: record how, let its last lines arrive, remove the service, announce the exit. */
  private end(inst: SwarmInstance, task: SwarmTask | undefined): void {
    if (inst.ending) return;
    inst.ending = true;
    const cleanup = (async () => {
      const state = task?.Status?.State ?? "gone";
      const code = task?.Status?.ContainerStatus?.ExitCode ?? null;
      let reason: ExitReason;
      if (inst.stopRequested) reason = "stopped";
      else if (state === "complete") reason = "exited";
      // Swarm does not pass on the engine's OOMKilled flag. Nothing but the kernel's OOM killer sends a
      // task's process SIGKILL unasked (funcd stops tasks through the service, which counts as asked).
      else if (code === 137 && state === "failed") reason = "OOMKilled";
      else reason = "crashed";
      if (!inst.stopRequested) {
        const node = this.nodes.name(task?.NodeID);
        const lost = task !== undefined && !["failed", "complete"].includes(state);
        const why = task?.Status?.Err ?? task?.Status?.Message ?? state;
        systemLine(
          this.lineHost(),
          inst,
          lost
            ? `task on ${node} ended (${state}): ${why} — its node may be down`
            : `task on ${node} ${state}: ${why}`,
        );
        await new Promise((resolve) => setTimeout(resolve, LOG_SETTLE_MS));
      }
      inst.logs.abort();
      inst.info.state = inst.stopRequested ? "stopped" : "failed";
      const exit: InstanceExit = {
        reason,
        code: state === "gone" ? null : code,
        signal: code === 137 ? "SIGKILL" : null,
        lastLogLines: inst.lastLines.snapshot(),
      };
      inst.info.exit = exit;
      await this.removeService(inst);
      this.registry.live.delete(inst.info.instanceId);
      announceExit({ logger: this.logger, listeners: this.registry.listeners }, inst, exit, "instance");
      inst.finish(exit);
      await this.removeUnusedSecrets(inst.secrets);
    })();
    this.registry.settle(cleanup);
  }

  private async removeService(inst: SwarmInstance): Promise<void> {
    await this.docker
      .getService(inst.serviceId)
      .remove()
      .catch((err: unknown) => {
        if (!/no such service|not found/i.test(messageOf(err))) {
          this.logger.warn(
            { instance: inst.info.instanceId, err: messageOf(err) },
            "removing a service failed",
          );
        }
      });
  }

  /** Secrets no service of this daemon uses any more (Swarm refuses to remove one in use). */
  private async removeUnusedSecrets(secrets: MountedSecret[]): Promise<void> {
    const inUse = new Set([...this.registry.live.values()].flatMap((inst) => inst.secrets.map((s) => s.id)));
    for (const secret of secrets) {
      if (inUse.has(secret.id)) continue;
      await this.docker
        .getSecret(secret.id)
        .remove()
        .catch(() => undefined);
    }
  }

  /**
   * Shuts the task down through its service (replicas 0, with `graceMs` between SIGTERM and SIGKILL —
   * `docker-init` passes SIGTERM to the runtime) and resolves once it is gone.
   */
  private async terminate(inst: SwarmInstance, graceMs: number): Promise<void> {
    inst.stopDeadline = Date.now() + graceMs + 15_000;
    try {
      const service = this.docker.getService(inst.serviceId);
      const current = (await service.inspect()) as { Version: { Index: number }; Spec: Docker.ServiceSpec };
      const spec = current.Spec;
      const task = spec.TaskTemplate as Docker.ContainerTaskSpec;
      await service.update({
        version: current.Version.Index,
        ...spec,
        TaskTemplate: {
          ...task,
          ContainerSpec: { ...task.ContainerSpec, StopGracePeriod: Math.max(0, graceMs) * 1e6 },
        },
        Mode: { Replicated: { Replicas: 0 } },
      });
    } catch (err) {
      this.logger.debug(
        { instance: inst.info.instanceId, err: messageOf(err) },
        "scaling a service to 0 failed",
      );
      await this.removeService(inst);
    }
    this.ensurePolling();
    await inst.exited;
  }

  async stop(instanceId: string, options: { graceMs?: number } = {}): Promise<void> {
    await this.registry.stop(instanceId, (inst) => this.terminate(inst, options.graceMs ?? 5_000));
  }

  list(): InstanceInfo[] {
    return this.registry.list();
  }

  onEvent(listener: (event: DriverEvent) => void): () => void {
    return this.registry.onEvent(listener);
  }

  /**
   * Removes the services (and unused secrets) a previous run of this daemon left: their tasks were
   * never announced to this run's fleet. (Adopting them is not done yet: a restarted daemon starts anew.)
   */
  async reconcile(): Promise<{ removed: number }> {
    const filters = { label: [`${LABELS.managed}=true`, `${LABELS.daemon}=${this.options.daemonId}`] };
    const services = (await this.docker.listServices({ filters })) as {
      ID: string;
      Spec?: { Labels?: Record<string, string> };
    }[];
    const ours = new Set([...this.registry.live.values()].map((inst) => inst.serviceId));
    const leftovers = services.filter((service) => {
      const instance = service.Spec?.Labels?.[LABELS.instance];
      return !ours.has(service.ID) && !(instance !== undefined && this.registry.starting.has(instance));
    });
    // Scaled to 0 first and waited for, so no task of a removed service still answers afterwards.
    const results = await Promise.all(leftovers.map((service) => this.removeLeftover(service.ID)));
    const removed = results.filter(Boolean).length;
    const secrets = (await this.docker.listSecrets({ filters })) as { ID: string }[];
    const used = new Set([...this.registry.live.values()].flatMap((inst) => inst.secrets.map((s) => s.id)));
    for (const secret of secrets) {
      if (used.has(secret.ID)) continue;
      await this.docker
        .getSecret(secret.ID)
        .remove()
        .catch(() => undefined);
    }
    return { removed };
  }

  /** Shuts a leftover service's task down (1 s grace), waits until it is gone, removes the service. */
  private async removeLeftover(serviceId: string): Promise<boolean> {
    const service = this.docker.getService(serviceId);
    try {
      const current = (await service.inspect()) as { Version: { Index: number }; Spec: Docker.ServiceSpec };
      const task = current.Spec.TaskTemplate as Docker.ContainerTaskSpec;
      await service.update({
        version: current.Version.Index,
        ...current.Spec,
        TaskTemplate: { ...task, ContainerSpec: { ...task.ContainerSpec, StopGracePeriod: 1e9 } },
        Mode: { Replicated: { Replicas: 0 } },
      });
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        const tasks = (await tasksOf(this.docker, [serviceId])).get(serviceId) ?? [];
        if (tasks.every(taskStopped)) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      await service.remove().catch((err: unknown) => {
        // Gone already (removed by someone else meanwhile): it is as removed as it gets.
        if (!/not found|no such service/i.test(messageOf(err))) throw err;
      });
      return true;
    } catch (err) {
      if (/not found|no such service/i.test(messageOf(err))) return false;
      this.logger.warn({ service: serviceId, err: messageOf(err) }, "removing a leftover service failed");
      return false;
    }
  }

  async dispose(): Promise<void> {
    await this.registry.dispose((id, options) => this.stop(id, options));
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
