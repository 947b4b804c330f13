/**
 * The warm pool's side of the process driver: a generic instance is started like any other (see
 * `start.ts`) from a spec with an empty slot dir where the function's files would be (`genericSpec` in
 * `../common/generic.ts`, with the refusals both drivers make); `specialize` later links a function's
 * files into that slot and has the runtime load them.
 */
import type { Clock } from "../../shared/clock.js";
import { FuncdError } from "../../shared/errors.js";
import { rekeyForFunction } from "../common/generic.js";
import { Interrupted, ReadyWait } from "../common/ready-wait.js";
import { snapshot } from "../common/registry.js";
import {
  specializationFailure,
  specializeRuntime,
  whySpecializationFailed,
} from "../common/specialize-request.js";
import type { InstanceInfo, InstanceSpec } from "../driver.js";
import { startFailure } from "./exit.js";
import { type Instance, type InstanceHost, kill } from "./instance.js";
import { insidePaths, instanceEnv } from "./launch.js";
import { writeMeta } from "./rundir.js";
import { fillSlot } from "./slot.js";

/** Makes the generic instance `inst` an instance of `spec`, re-keyed under `spec.instanceId`. */
export function adopt(instances: Map<string, Instance>, inst: Instance, spec: InstanceSpec): void {
  inst.spec = spec;
  rekeyForFunction(instances, inst, spec);
}

export async function specializeInto(
  host: Pick<InstanceHost, "logger" | "clock">,
  inst: Instance,
  readyTimeoutMs: number,
  signal: AbortSignal,
): Promise<InstanceInfo> {
  const began = performance.now();
  const spec = inst.spec;
  const wait = new ReadyWait(signal, readyTimeoutMs, inst.exitSeen);
  let linkedMs = 0;
  try {
    await fillSlot(spec.artifactDir, inst.paths.slotDir, inst.slotUid);
    linkedMs = performance.now() - began;
    wait.signal.throwIfAborted();
    const env = instanceEnv(spec, insidePaths(inst.sandboxed, inst.paths.socketPath, inst.paths.slotDir));
    await specializeRuntime({ socketPath: inst.paths.socketPath }, spec, env, wait.signal);
  } catch (err) {
    const why = await whySpecializationFailed(err, wait, inst.exitSeen);
    if (!inst.processExited) await kill(inst);
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
    throw specializationFailure(spec, why, exit);
  } finally {
    wait.close();
  }
  inst.info.state = "ready";
  inst.info.startedAt = host.clock.now();
  inst.announced = true;
  const ms = (value: number) => Math.round(value * 10) / 10;
  host.logger.debug(
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
  void writeMetaOf(inst, host.clock).catch((err: unknown) =>
    host.logger.warn({ err, instance: spec.instanceId }, "cannot update an instance's meta.json"),
  );
  return snapshot(inst.info);
}

function writeMetaOf(inst: Instance, clock: Pick<Clock, "now">): Promise<void> {
  const { spec, cgroup } = inst;
  return writeMeta(inst.paths.meta, {
    instanceId: spec.instanceId,
    functionName: spec.functionName,
    revisionId: spec.revisionId,
    runtime: spec.runtime,
    createdAt: clock.now(),
    ...(cgroup === undefined ? {} : { cgroup: { version: cgroup.version, path: cgroup.path } }),
    ...(inst.generic === undefined ? {} : { generic: inst.generic.runtime }),
  });
}
