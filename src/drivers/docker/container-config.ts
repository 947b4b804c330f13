/**
 * What a container of an instance looks like, as the Engine API's create body: pure, so the hardening
 * can be read (and unit tested) in one place.
 *
 * Hardened by default: a non-root user, a read-only root file system with a small private `/tmp`, every
 * capability dropped, `no-new-privileges`, the engine's default seccomp profile (never switched off), a
 * pids limit, a memory limit without swap, an optional CPU quota, no host mounts but the function's code
 * (read-only, buildless mode only) and its secrets (read-only, a tmpfs folder), and `docker-init` as PID 1
 * so signals reach the runtime and zombies are reaped. The gateway reaches it on a port published on
 * 127.0.0.1 only, or — with `network: none` — through a unix socket in a per-instance tmpfs volume, the
 * container having no network at all.
 */
import { createHash } from "node:crypto";
import type Docker from "dockerode";
import { containerUser } from "../common/container-user.js";
import { contractEnv } from "../common/contract-env.js";

export { containerUser, FALLBACK_USER, isRootUser } from "../common/container-user.js";

import type { InstanceSpec } from "../driver.js";
import { SECRETS_MOUNT } from "../secrets/files.js";
import { LABELS } from "./engine.js";
import { nanoCpus } from "./resources.js";

/** The port the runtime listens on inside the container (published on 127.0.0.1 at a random port). */
export const CONTAINER_PORT = 8080;
/** Where the function's files are inside the container (image mode: baked in; buildless: mounted). */
export const FUNCTION_DIR = "/function";
/** Where the socket volume is mounted in a `network: none` container, and the socket inside it. */
export const SOCKET_DIR = "/run/funcd";
export const SOCKET_NAME = "sock";
/** Processes and threads one container may hold: enough for a runtime's thread pools, not a fork bomb. */
export const PIDS_LIMIT = 256;
/** Mount options of the container's private `/tmp`. */
export const TMP_OPTIONS = "rw,noexec,nosuid,nodev,size=64m";

/** The environment every instance gets besides its function's env and the contract variables. */
const BASE_ENV = { HOME: "/tmp", NODE_ENV: "production" } as const;

/** The container name of an instance (unique per engine, so a second start of one id fails). */
export function containerName(instanceId: string): string {
  return `funcd-${instanceId}`;
}

/**
 * The socket volume of a `network: none` instance, named by a hash of its id: the socket's host path
 * (`<data-root>/volumes/<name>/_data/sock`) must stay under the 108 bytes a unix socket path may have.
 */
export function socketVolumeName(instanceId: string): string {
  return `funcd-sock-${createHash("sha256").update(instanceId).digest("hex").slice(0, 16)}`;
}

/**
 * The whole environment of an instance, besides what its image sets: the base, its secrets' variables,
 * the function's own env (which wins over a secret of the same variable name), then the runtime contract
 * variables (which the function's env cannot override).
 */
export function instanceEnv(spec: InstanceSpec, listen: string): Record<string, string> {
  return contractEnv(spec, BASE_ENV, {
    listen,
    functionDir: FUNCTION_DIR,
    ...(spec.secretsDir === undefined ? {} : { secretsDir: SECRETS_MOUNT }),
  });
}

/**
 * A generic (warm pool) container's environment: no function yet, only where it listens, its runtime
 * and its limit; the function's whole environment arrives with the specialization.
 */
export function genericEnv(spec: InstanceSpec): Record<string, string> {
  return {
    ...BASE_ENV,
    FUNCD_GENERIC: "1",
    FUNCD_LISTEN: String(CONTAINER_PORT),
    FUNCD_FUNCTION_DIR: FUNCTION_DIR,
    FUNCD_RUNTIME: spec.runtime,
    FUNCD_MEMORY_LIMIT_MB: String(spec.memoryMb),
  };
}

export interface ContainerPlan {
  spec: InstanceSpec;
  /** The image to run: the revision's own, or the runtime's (buildless). */
  image: string;
  /** The `USER` the image declares (from its inspect), to decide whether it may be kept. */
  imageUser: string | undefined;
  /** Labels the container with this daemon's id, so only this daemon's reconcile touches it. */
  daemonId: string;
  /** The user-defined bridge network of `network: default` instances. */
  networkName: string;
  /** Mount `spec.artifactDir` at /function: the runtime's image runs without the code inside (buildless). */
  buildless: boolean;
  /**
   * A generic (warm pool) container of `spec.runtime`: booted without a function, its (empty) slot dir
   * mounted where the code goes (`spec.artifactDir`), labelled `funcd.kind=generic`.
   */
  generic?: boolean;
}

/**
 * The labels of an instance's container (and of its socket volume). A generic container keeps its
 * labels when specialized (the engine cannot relabel a container), so reconcile never adopts one.
 */
export function instanceLabels(
  spec: InstanceSpec,
  daemonId: string,
  generic = false,
): Record<string, string> {
  return {
    [LABELS.managed]: "true",
    [LABELS.daemon]: daemonId,
    ...(generic ? {} : { [LABELS.function]: spec.functionName, [LABELS.revision]: spec.revisionId }),
    [LABELS.instance]: spec.instanceId,
    [LABELS.kind]: generic ? "generic" : "instance",
  };
}

/** The Engine API's create body for an instance (`POST /containers/create`). */
export function containerConfig(plan: ContainerPlan): Docker.ContainerCreateOptions {
  const { spec } = plan;
  const isolated = spec.network === "none";
  const listen = isolated ? `${SOCKET_DIR}/${SOCKET_NAME}` : String(CONTAINER_PORT);
  const env = plan.generic ? genericEnv(spec) : instanceEnv(spec, listen);
  const memory = spec.memoryMb * 1024 * 1024;
  const mounts: Docker.MountConfig = [];
  if (plan.buildless) {
    mounts.push({ Type: "bind", Source: spec.artifactDir, Target: FUNCTION_DIR, ReadOnly: true });
  }
  if (spec.secretsDir !== undefined && !plan.generic) {
    // The one host mount besides buildless code: the engine keeps secrets only in Swarm mode, so funcd
    // writes them to a per-instance tmpfs folder (memory, 0400 files of the container's uid) and binds
    // that read-only. Never baked into an image, never on the engine's disk.
    mounts.push({ Type: "bind", Source: spec.secretsDir, Target: SECRETS_MOUNT, ReadOnly: true });
  }
  if (isolated) {
    mounts.push({ Type: "volume", Source: socketVolumeName(spec.instanceId), Target: SOCKET_DIR });
  }
  const port = `${CONTAINER_PORT}/tcp`;
  return {
    name: containerName(spec.instanceId),
    Image: plan.image,
    User: containerUser(plan.imageUser),
    Env: Object.entries(env).map(([key, value]) => `${key}=${value}`),
    Labels: instanceLabels(spec, plan.daemonId, plan.generic),
    ...(isolated ? {} : { ExposedPorts: { [port]: {} } }),
    HostConfig: {
      Init: true,
      ReadonlyRootfs: true,
      Tmpfs: { "/tmp": TMP_OPTIONS },
      CapDrop: ["ALL"],
      // The engine's default seccomp profile stays on: only no-new-privileges is added.
      SecurityOpt: ["no-new-privileges"],
      Privileged: false,
      PidsLimit: PIDS_LIMIT,
      Memory: memory,
      // Equal to Memory: no swap, so the limit is the limit and an overrun is an OOM kill.
      MemorySwap: memory,
      ...(spec.cpus === undefined ? {} : { NanoCpus: nanoCpus(spec.cpus) }),
      IpcMode: "private",
      NetworkMode: isolated ? "none" : plan.networkName,
      // Loopback only, random host port: nothing but this host reaches the function directly.
      ...(isolated ? {} : { PortBindings: { [port]: [{ HostIp: "127.0.0.1", HostPort: "" }] } }),
      Mounts: mounts,
      RestartPolicy: { Name: "no" },
      // Kept bounded on disk; the driver streams it into funcd's log store as it comes.
      LogConfig: { Type: "json-file", Config: { "max-size": "10m", "max-file": "2" } },
    },
  };
}

/**
 * The socket volume of a `network: none` instance: a small tmpfs (mounted by the engine on the host
 * while the container runs, so the daemon can connect to the socket at its mount point) owned by the
 * container's user.
 */
export function socketVolumeConfig(
  spec: InstanceSpec,
  daemonId: string,
  user: string,
): Docker.VolumeCreateOptions {
  const ids = /^(\d+)(?::(\d+))?$/.exec(user);
  // A named user's uid is only known inside the image: then the (private) volume is open to all.
  const owner = ids ? `uid=${ids[1]},gid=${ids[2] ?? ids[1]},mode=0700` : "mode=0777";
  return {
    Name: socketVolumeName(spec.instanceId),
    Driver: "local",
    DriverOpts: { type: "tmpfs", device: "tmpfs", o: `${owner},size=1m` },
    Labels: instanceLabels(spec, daemonId),
  };
}
