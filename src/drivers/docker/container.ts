/**
 * One live container of the Docker driver and what happens to it once it runs: its output followed
 * into the log sink, its exit awaited (`wait`), and then — inspected for an OOM kill, recorded,
 * announced when nobody asked for it, and only then removed with its socket volume and pool slot (a
 * removal takes a while, and the fleet must hear of a crash before its health check finds the
 * instance dead and calls it unhealthy).
 */

import { rm } from "node:fs/promises";
import type Docker from "dockerode";
import { messageOf } from "../../shared/errors.js";
import { announceExit, type DriverListener } from "../common/exit-events.js";
import { type LineHost, outputLine, systemLine } from "../common/instance-lines.js";
import { kernelLoggedOomKill } from "../common/kernel-oom.js";
import type { ExitReason, InstanceExit, InstanceInfo, InstanceSpec } from "../driver.js";
import { LastLines } from "../process/output.js";
import { type FollowFrom, followOutput } from "./logs.js";

/** How long to wait for an exited container's last output before reporting without it. */
const OUTPUT_DRAIN_MS = 500;
/** How long to wait before asking again when the engine dropped a `wait` (it restarted, say). */
const REWAIT_MS = 500;
/** How long a container being stopped may stay out of the engine's reach before it counts as gone. */
const UNREACHABLE_STOP_MS = 5_000;
/** How often a removal that collides with another one is retried (50 ms apart). */
const REMOVE_ATTEMPTS = 100;

/** The driver's state that tracking a container and handling its exit read and change. */
export interface ContainerHost extends LineHost {
  readonly docker: Docker;
  /** Live instances by id. */
  readonly instances: Map<string, DockerInstance>;
  readonly listeners: Set<DriverListener>;
  /** Hands over a clean-up that goes on after its instance left `instances` (dispose() waits for it). */
  readonly settle: (cleanup: Promise<unknown>) => void;
  /** The time of the newest stored line of an instance (for adopted containers), if the daemon knows. */
  readonly lastLogAt?: (functionName: string, instanceId: string) => number | undefined;
}

/** What a tracked container belongs to (a whole spec for a start; labels only for an adopted one). */
export type InstanceIdentity = Pick<InstanceSpec, "instanceId" | "functionName" | "revisionId" | "memoryMb">;

export interface DockerInstance {
  identity: InstanceIdentity;
  info: InstanceInfo;
  container: Docker.Container;
  /** The socket volume of a `network: none` instance, removed with the container. */
  volume: string | undefined;
  lastLines: LastLines;
  /** Output followed to its end. */
  drained: Promise<void>;
  /** Resolves as soon as the engine reports the container stopped (before the clean-up). */
  exitSeen: Promise<void>;
  /** Settles after the exit has been recorded and the container removed. */
  exited: Promise<InstanceExit>;
  /** stop() asked for this exit: no exit event, reason `stopped`. */
  stopRequested: boolean;
  /** start() resolved (or reconcile adopted it): from now on an exit is news for the scaler. */
  announced: boolean;
  /** The memory limit killed it (known once it exited). */
  oomKilled: boolean;
  /** Stops following the output (once the container is gone the engine ends it anyway). */
  follow: AbortController;
  /** Set while it is a generic (warm pool) container that nobody has started specializing. */
  generic: GenericState | undefined;
  /** The host folder mounted at /function of a pool container (its slot), removed after it. */
  slotDir: string | undefined;
}

/** What a generic (warm pool) container was started as, until it is specialized. */
export interface GenericState {
  runtime: string;
  memoryMb: number;
}

/** True for the engine's "no such container" (404) and "not modified / already stopped" (304) answers. */
export function isGone(err: unknown): boolean {
  const status = (err as { statusCode?: number } | null)?.statusCode;
  return status === 404 || status === 304;
}

/**
 * Starts following a running container: output into the sink (and the last lines kept for crash
 * reports), its exit awaited and handled. `from`: its output since creation (a container this driver
 * started), or since the last line the store kept (one adopted from a previous run).
 */
export function trackContainer(
  host: ContainerHost,
  identity: InstanceIdentity,
  container: Docker.Container,
  info: InstanceInfo,
  options: {
    volume: string | undefined;
    /** Where following its output starts (see `FollowFrom`). */
    from: FollowFrom;
    announced: boolean;
    generic?: GenericState;
    slotDir?: string;
  },
): DockerInstance {
  const follow = new AbortController();
  let seen: () => void = () => undefined;
  const inst: DockerInstance = {
    identity,
    info,
    container,
    volume: options.volume,
    lastLines: new LastLines(50),
    drained: Promise.resolve(),
    exitSeen: new Promise<void>((resolve) => {
      seen = resolve;
    }),
    exited: Promise.resolve({ reason: "stopped", code: null, signal: null, lastLogLines: [] }),
    stopRequested: false,
    announced: options.announced,
    oomKilled: false,
    follow,
    generic: options.generic,
    slotDir: options.slotDir,
  };
  inst.drained = followOutput(
    host.docker,
    container,
    options.from,
    (line) => outputLine(host, inst, line.stream, line.text, line.requestId, line.time),
    follow.signal,
  ).catch((err: unknown) => {
    host.logger.warn(
      { instance: identity.instanceId, err: messageOf(err) },
      "cannot follow a container's output",
    );
  });
  inst.exited = waitForExit(container, () => inst.stopRequested).then((code) => {
    seen();
    return recordExit(host, inst, code);
  });
  host.instances.set(identity.instanceId, inst);
  return inst;
}

/**
 * The container's exit code once it stopped (null when it vanished without one). While the engine does
 * not answer it keeps asking — an engine restart takes seconds — except for a container someone asked
 * to stop: that one counts as gone after `UNREACHABLE_STOP_MS`, so a shutdown never hangs on a dead
 * engine (what is left there, the next start's reconcile removes).
 */
async function waitForExit(container: Docker.Container, stopping: () => boolean): Promise<number | null> {
  let unreachableSince: number | undefined;
  for (;;) {
    try {
      const result = (await container.wait()) as { StatusCode?: number };
      return typeof result.StatusCode === "number" ? result.StatusCode : null;
    } catch {
      // The engine dropped the wait: find out whether the container still runs before waiting again.
      const state = await container.inspect().then(
        (c) => c.State,
        (err: unknown) => (isGone(err) ? undefined : "unknown"),
      );
      if (state === undefined) return null;
      if (state !== "unknown" && !state.Running) return state.ExitCode;
      if (state === "unknown") unreachableSince ??= Date.now();
      else unreachableSince = undefined;
      if (
        unreachableSince !== undefined &&
        stopping() &&
        Date.now() - unreachableSince > UNREACHABLE_STOP_MS
      ) {
        return null;
      }
      await new Promise((resolve) => setTimeout(resolve, REWAIT_MS));
    }
  }
}

/** The reason of an exit the instance's owner did not ask for. */
export function exitReason(code: number | null, oomKilled: boolean): ExitReason {
  if (oomKilled) return "OOMKilled";
  return code === 0 ? "exited" : "crashed";
}

/** "code 1"; docker-init reports a runtime killed by a signal as 128 + its number. */
export function describeExit(code: number | null): string {
  if (code === null) return "the container vanished";
  if (code > 128 && code < 160) return `code ${code}, i.e. killed by signal ${code - 128}`;
  return `code ${code}`;
}

/**
 * Records an exit and tells listeners when it was not asked for — as soon as the engine has said how
 * it ended (an OOM kill?) and its last output is in — then removes the container, its socket volume
 * and its pool slot; `exited` settles after that.
 */
async function recordExit(
  host: ContainerHost,
  inst: DockerInstance,
  code: number | null,
): Promise<InstanceExit> {
  const state = await inst.container.inspect().then(
    (c) => c.State,
    () => undefined,
  );
  inst.oomKilled = state?.OOMKilled === true;
  // A SIGKILL nobody here asked for: the engine may have missed an OOM kill that the kernel logged.
  if (!inst.oomKilled && code === 137 && !inst.stopRequested) {
    inst.oomKilled = (await kernelLoggedOomKill(inst.container.id)) === true;
  }
  await Promise.race([inst.drained, new Promise((resolve) => setTimeout(resolve, OUTPUT_DRAIN_MS))]);
  inst.follow.abort();
  const unasked = exitReason(code, inst.oomKilled);
  const reason = inst.stopRequested ? "stopped" : inst.announced ? unasked : "start-failed";
  if (unasked === "OOMKilled" && inst.announced && !inst.stopRequested) {
    systemLine(
      host,
      inst,
      `funcd: instance killed: it reached its memory limit of ${inst.identity.memoryMb} MiB`,
    );
  }
  if (reason !== "stopped" && reason !== "start-failed") {
    systemLine(host, inst, `funcd: instance exited (${describeExit(code)})`);
  }
  const exit: InstanceExit = {
    reason,
    code,
    signal: code !== null && code > 128 && code < 160 ? signalName(code - 128) : null,
    lastLogLines: inst.lastLines.snapshot(),
  };
  inst.info.state = reason === "stopped" || reason === "exited" ? "stopped" : "failed";
  inst.info.exit = exit;
  // Keyed by its current id (a specialized pool container was re-keyed); a newer entry is left alone.
  if (host.instances.get(inst.info.instanceId) === inst) host.instances.delete(inst.info.instanceId);
  announceExit(host, inst, exit, "container");
  const removal = removeLeftovers(host, inst);
  host.settle(removal);
  await removal;
  return exit;
}

/** What an exited container leaves: the container itself, its socket volume, its pool slot. */
async function removeLeftovers(host: ContainerHost, inst: DockerInstance): Promise<void> {
  await removeContainer(host, inst.container, inst.volume);
  if (inst.slotDir !== undefined)
    await rm(inst.slotDir, { recursive: true, force: true }).catch(() => undefined);
}

/**
 * Removes a container (forcibly: it may still run) and its socket volume, resolving once it is gone;
 * "already gone" is fine. When another removal is under way (two drivers of one daemon id during a
 * reconcile, say), waits for that one.
 */
export async function removeContainer(
  host: Pick<ContainerHost, "docker" | "logger">,
  container: Docker.Container,
  volume: string | undefined,
): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await container.remove({ force: true, v: true });
      break;
    } catch (err) {
      if (isGone(err)) break;
      // 409: "removal already in progress" — ask again until it is gone.
      if ((err as { statusCode?: number }).statusCode !== 409 || attempt >= REMOVE_ATTEMPTS) {
        host.logger.warn({ container: container.id, err: messageOf(err) }, "cannot remove a container");
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  if (volume !== undefined) await removeVolume(host, volume);
}

/** Removes a socket volume; "already gone" is fine, and so is "in use" (its container is still going). */
export async function removeVolume(
  host: Pick<ContainerHost, "docker" | "logger">,
  volume: string,
): Promise<void> {
  await host.docker
    .getVolume(volume)
    .remove()
    .catch((err: unknown) => {
      if (!isGone(err) && (err as { statusCode?: number }).statusCode !== 409) {
        host.logger.warn({ volume, err: messageOf(err) }, "cannot remove a socket volume");
      }
    });
}

const SIGNALS: Record<number, string> = {
  1: "SIGHUP",
  2: "SIGINT",
  6: "SIGABRT",
  9: "SIGKILL",
  11: "SIGSEGV",
  15: "SIGTERM",
};

function signalName(n: number): string {
  return SIGNALS[n] ?? `SIG${n}`;
}
