/**
 * After a daemon restart: what the previous run of this daemon (same `funcd.daemon` label) left on the
 * engine. A running instance container that still answers `/healthz` is adopted — followed, watched and
 * listed again, marked `adopted` — so the fleet can take it back instead of starting a new one; anything
 * else (stopped, unhealthy, half-created, a socket volume without its container) is removed. Containers
 * without funcd's labels or with another daemon's id are never touched: the engine filters on both.
 */
import { access, constants } from "node:fs/promises";
import { dirname } from "node:path";
import type Docker from "dockerode";
import { messageOf } from "../../shared/errors.js";
import { probeHealth } from "../common/readiness.js";
import type { InstanceAddress, InstanceInfo } from "../driver.js";
import { type ContainerHost, removeContainer, removeVolume, trackContainer } from "./container.js";
import { CONTAINER_PORT, SOCKET_NAME, socketVolumeName } from "./container-config.js";
import { LABELS } from "./engine.js";

/** The engine's filter for this daemon's containers and volumes. */
export function ownedFilter(daemonId: string): { label: string[] } {
  return { label: [`${LABELS.managed}=true`, `${LABELS.daemon}=${daemonId}`] };
}

/** Where the gateway reaches a running container: its loopback port, or its socket (`network: none`). */
export async function addressOf(
  docker: Docker,
  details: Docker.ContainerInspectInfo,
  instanceId: string,
): Promise<InstanceAddress | undefined> {
  if (details.HostConfig.NetworkMode === "none") return socketAddress(docker, socketVolumeName(instanceId));
  const bindings = details.NetworkSettings.Ports?.[`${CONTAINER_PORT}/tcp`] ?? [];
  const loopback = bindings.find((b) => b.HostIp === "127.0.0.1");
  const port = Number(loopback?.HostPort);
  return Number.isInteger(port) && port > 0 ? { host: "127.0.0.1", port } : undefined;
}

/**
 * The host path of the socket in a socket volume. Only reachable when the daemon runs on the engine's
 * host with the right to enter the engine's volume dir (root, typically); undefined otherwise.
 */
export async function socketAddress(docker: Docker, volume: string): Promise<InstanceAddress | undefined> {
  const info = (await docker.getVolume(volume).inspect()) as { Mountpoint?: string };
  if (!info.Mountpoint) return undefined;
  const reachable = await access(dirname(info.Mountpoint), constants.X_OK).then(
    () => true,
    () => false,
  );
  return reachable ? { socketPath: `${info.Mountpoint}/${SOCKET_NAME}` } : undefined;
}

/**
 * Adopts or removes what a previous run of `daemonId` left; `isOurs(instanceId)` names the instances
 * this driver already tracks or is starting (left alone). Returns how many containers were removed.
 */
export async function reconcileContainers(
  host: ContainerHost,
  daemonId: string,
  isOurs: (instanceId: string) => boolean,
): Promise<{ removed: number; adopted: number }> {
  const { docker, logger } = host;
  const found = await docker.listContainers({ all: true, filters: ownedFilter(daemonId) });
  let removed = 0;
  let adopted = 0;
  for (const summary of found) {
    const instanceId = summary.Labels[LABELS.instance];
    if (instanceId !== undefined && isOurs(instanceId)) continue;
    const container = docker.getContainer(summary.Id);
    if (
      summary.State === "running" &&
      instanceId !== undefined &&
      summary.Labels[LABELS.kind] === "instance" &&
      (await adopt(host, container, instanceId).catch((err: unknown) => {
        logger.warn(
          { instance: instanceId, err: messageOf(err) },
          "cannot adopt a container of a previous run",
        );
        return false;
      }))
    ) {
      adopted++;
      continue;
    }
    await removeContainer(host, container, undefined);
    removed++;
  }
  // Socket volumes whose container is gone (their container's removal above took its own along).
  const volumes = (await docker.listVolumes({ filters: ownedFilter(daemonId) })).Volumes ?? [];
  for (const volume of volumes) {
    const instanceId = volume.Labels?.[LABELS.instance];
    if (instanceId !== undefined && isOurs(instanceId)) continue;
    await removeVolume(host, volume.Name);
  }
  if (removed > 0 || adopted > 0) {
    logger.info({ removed, adopted, daemonId }, "reconciled the containers of a previous run");
  }
  return { removed, adopted };
}

/** Takes over a running container if it answers `/healthz` ready; false when it does not. */
async function adopt(host: ContainerHost, container: Docker.Container, instanceId: string): Promise<boolean> {
  const details = await container.inspect();
  const labels = details.Config.Labels ?? {};
  const address = await addressOf(host.docker, details, instanceId);
  if (address === undefined || (await probeHealth(address)) !== "ready") return false;
  const functionName = labels[LABELS.function] ?? "";
  const revisionId = labels[LABELS.revision] ?? "";
  const memoryMb = Math.round((details.HostConfig.Memory ?? 0) / 1024 / 1024);
  const startedAt = Date.parse(details.State.StartedAt);
  const info: InstanceInfo = {
    instanceId,
    functionName,
    revisionId,
    address,
    state: "ready",
    startedAt: Number.isNaN(startedAt) ? host.clock.now() : startedAt,
    adopted: true,
  };
  const isolated = details.HostConfig.NetworkMode === "none";
  const lastStored = host.lastLogAt?.(functionName, instanceId);
  trackContainer(host, { instanceId, functionName, revisionId, memoryMb }, container, info, {
    volume: isolated ? socketVolumeName(instanceId) : undefined,
    // From the last line the store kept, so what it wrote while no daemon ran is not lost; the store
    // has none of its lines at all (the previous daemon died before writing them): from its start.
    from: lastStored === undefined ? "start" : { afterMs: lastStored },
    announced: true,
  });
  host.logger.info(
    { instance: instanceId, function: functionName },
    "adopted a running instance of a previous run",
  );
  return true;
}
