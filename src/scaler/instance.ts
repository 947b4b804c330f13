import type { FunctionSpec } from "../deploy/spec.js";
import { defaultConcurrency } from "../deploy/spec.js";
import type { InstanceInfo } from "../drivers/driver.js";
import type { FleetHost, LiveInstance, ServableRevision } from "./unit.js";

/** A fresh "starting" instance record; `seq` keeps ids unique within one millisecond. */
export function newInstance(name: string, revisionId: string, now: number, seq: number): LiveInstance {
  return {
    id: `${name}-${revisionId.slice(0, 8)}-${now.toString(36)}${seq.toString(36)}`,
    functionName: name,
    revisionId,
    state: "starting",
    address: null,
    upstream: null,
    pid: undefined,
    inFlight: 0,
    served: 0,
    startedAt: now,
    readyAt: null,
    lastUsedAt: now,
  };
}

/**
 * The record of an instance the driver adopted from a previous daemon run: ready, with its connection
 * pool, and idle since `now` (its idle timeout starts over, as after a start).
 */
export function adoptedInstance(
  host: Pick<FleetHost, "connect">,
  info: InstanceInfo,
  spec: FunctionSpec,
  now: number,
): LiveInstance {
  const instance: LiveInstance = {
    ...newInstance(info.functionName, info.revisionId, info.startedAt, 0),
    id: info.instanceId,
  };
  markReady(host, instance, info, spec, now);
  return instance;
}

/** The instance answers at `info.address`: ready, with a keep-alive connection pool to it. */
function markReady(
  host: Pick<FleetHost, "connect">,
  instance: LiveInstance,
  info: InstanceInfo,
  spec: FunctionSpec,
  now: number,
): void {
  instance.address = info.address;
  instance.pid = info.pid;
  instance.upstream = host.connect(info.address, defaultConcurrency(spec));
  instance.state = "ready";
  instance.readyAt = now;
  instance.lastUsedAt = now;
}

/** Starts the instance through the driver and marks it ready; rejects with the driver's error. */
export async function startInstance(
  host: Pick<FleetHost, "clock" | "driver" | "connect" | "metrics" | "systemLog" | "secrets">,
  instance: LiveInstance,
  spec: FunctionSpec,
  revision: ServableRevision,
): Promise<void> {
  const started = host.clock.now();
  // Read now, at each start: a changed value reaches the next instance without a new revision.
  const secrets =
    spec.secrets !== undefined && spec.secrets.length > 0 ? host.secrets(spec.secrets) : undefined;
  const info = await host.driver.start({
    instanceId: instance.id,
    functionName: instance.functionName,
    revisionId: revision.id,
    runtime: spec.runtime,
    artifactDir: revision.artifactDir,
    handler: spec.handler,
    handlerStyle: spec.handlerStyle,
    env: spec.env,
    memoryMb: spec.memory,
    timeoutMs: spec.timeout,
    ...(revision.image === undefined ? {} : { image: revision.image }),
    ...(spec.cpu === undefined ? {} : { cpus: spec.cpu }),
    ...(spec.network === undefined ? {} : { network: spec.network }),
    ...(secrets === undefined ? {} : { secrets }),
    ...(spec.secretEnv === undefined ? {} : { secretEnv: spec.secretEnv }),
  });
  const readyAt = host.clock.now();
  markReady(host, instance, info, spec, readyAt);
  host.metrics.coldStartDuration.observe({ function: instance.functionName }, (readyAt - started) / 1000);
  // A pooled start was already logged by the pool, with its own timing; one line per start.
  if (!info.fromPool) {
    host.systemLog(
      instance.functionName,
      revision.id,
      instance.id,
      `instance ready in ${readyAt - started} ms (revision #${revision.number})`,
    );
  }
}
