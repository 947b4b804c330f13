/**
 * The warm pool's side of the Docker driver: a generic container is a container of the runtime's image,
 * started (hardened and limited as any) with no function, its own empty slot folder mounted read-only
 * at /function. Specializing it puts the function's files into that folder on the host — the bind
 * mount shows them at once — applies the function's CPU quota (the engine changes it live), and has
 * the runtime load the handler (`POST /_funcd/specialize`, docs/runtime-contract.md). A booted
 * container then becomes an instance in a few milliseconds instead of a container start's ~200.
 *
 * A specialized container keeps the labels it was created with (the engine cannot relabel one), so
 * after a daemon restart it is removed, not adopted.
 */
import { bootOnlyRefusal, poolMismatch, rekeyForFunction } from "../common/generic.js";
import { Interrupted, ReadyWait } from "../common/ready-wait.js";
import { snapshot } from "../common/registry.js";
import {
  specializationFailure,
  specializeRuntime,
  whySpecializationFailed,
} from "../common/specialize-request.js";
import type { InstanceInfo, InstanceSpec } from "../driver.js";
import { fillSlot } from "../process/slot.js";
import type { DockerInstance, GenericState } from "./container.js";
import { CONTAINER_PORT, instanceEnv } from "./container-config.js";
import { startFailure } from "./failures.js";
import { nanoCpus } from "./resources.js";

/**
 * Why a generic container cannot become an instance of `spec`, or undefined when it can: the refusals
 * of every driver (runtime, memory limit, a boot-only variable), and a function that needs a container
 * of its own (its image, no network).
 */
export function specializationRefusal(
  generic: GenericState,
  spec: InstanceSpec,
  bootEnv: readonly string[],
): string | undefined {
  const mismatch = poolMismatch(generic, spec);
  if (mismatch !== undefined) return mismatch;
  if (spec.image !== undefined) return "the function runs its own image";
  if (spec.network === "none") return "the function has network: none, and pool containers have a network";
  return bootOnlyRefusal(spec, bootEnv);
}

/** Makes the generic container `inst` the function's: re-keyed, renamed in its output, starting again. */
export function takeOver(
  instances: Map<string, DockerInstance>,
  inst: DockerInstance,
  spec: InstanceSpec,
): void {
  inst.identity = spec;
  rekeyForFunction(instances, inst, spec, { fromPool: true });
}

/** Specializes the taken-over container into `spec`; on any failure it is killed and nothing is left. */
export async function specializeInto(
  inst: DockerInstance,
  spec: InstanceSpec,
  readyTimeoutMs: number,
  signal: AbortSignal,
): Promise<InstanceInfo> {
  const wait = new ReadyWait(signal, readyTimeoutMs, inst.exitSeen);
  try {
    await fillSlot(spec.artifactDir, inst.slotDir as string, undefined);
    if (spec.cpus !== undefined) await inst.container.update({ NanoCpus: nanoCpus(spec.cpus) });
    wait.signal.throwIfAborted();
    // FUNCD_LISTEN stays what the container booted with (the runtime keeps its own anyway).
    await specializeRuntime(inst.info.address, spec, instanceEnv(spec, String(CONTAINER_PORT)), wait.signal);
  } catch (err) {
    const why = await whySpecializationFailed(err, wait, inst.exitSeen);
    await inst.container.kill().catch(() => undefined);
    const exit = await inst.exited;
    if (signal.aborted) throw signal.reason;
    if (why instanceof Interrupted) {
      throw startFailure(spec, exit, why.why, inst.oomKilled, readyTimeoutMs);
    }
    throw specializationFailure(spec, why, exit);
  } finally {
    wait.close();
  }
  inst.info.state = "ready";
  inst.announced = true;
  return snapshot(inst.info);
}
