/**
 * Generic (warm pool) instances as both drivers keep them: the spec one is launched with, the refusals
 * every driver makes before specializing one, and the moment it becomes the function's (re-keyed).
 */
import type { InstanceInfo, InstanceSpec } from "../driver.js";

/** What a generic instance was started as; only functions of the same runtime and memory limit fit it. */
export interface GenericIdentity {
  runtime: string;
  memoryMb: number;
}

/** The spec a generic instance of `runtime` is launched with, its slot dir standing for the artifact. */
export function genericSpec(
  poolId: string,
  runtime: string,
  memoryMb: number,
  slotDir: string,
): InstanceSpec {
  // Only what the launch needs: no function, no env; the slot dir stands where the artifact would.
  return {
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
}

/** Why no driver can specialize `generic` into `spec` (another runtime or memory limit), or undefined. */
export function poolMismatch(generic: GenericIdentity, spec: InstanceSpec): string | undefined {
  if (spec.runtime !== generic.runtime) return `it runs runtime "${generic.runtime}", not "${spec.runtime}"`;
  if (spec.memoryMb !== generic.memoryMb) {
    return `its memory limit is ${generic.memoryMb} MiB, not ${spec.memoryMb} MiB`;
  }
  return undefined;
}

/** Why `spec` needs a fresh boot: it sets a variable the runtime reads only then (`bootEnv`), or undefined. */
export function bootOnlyRefusal(spec: InstanceSpec, bootEnv: readonly string[]): string | undefined {
  const bootOnly = Object.keys(spec.env).filter((name) => bootEnv.includes(name));
  return bootOnly.length > 0
    ? `the function sets ${bootOnly.join(", ")}, which the runtime reads only when it boots`
    : undefined;
}

/** The part of a driver's instance that specialization changes. */
export interface Specializable {
  /** Set while it is a generic instance that nobody has started specializing. */
  generic: object | undefined;
  announced: boolean;
  info: InstanceInfo;
}

/**
 * Makes the generic instance `inst` the function's: no longer generic, re-keyed under `spec.instanceId`
 * in `instances`, its info the function's (plus `extra`), starting again.
 */
export function rekeyForFunction<I extends Specializable>(
  instances: Map<string, I>,
  inst: I,
  spec: InstanceSpec,
  extra: Partial<InstanceInfo> = {},
): void {
  const poolId = inst.info.instanceId;
  const target: Specializable = inst;
  // From here on it is the function's: its output, its bookkeeping, its failure. Until the
  // specialization succeeds it counts as starting, so an exit is a failed start, news to nobody.
  target.generic = undefined;
  target.announced = false;
  target.info = {
    ...inst.info,
    instanceId: spec.instanceId,
    functionName: spec.functionName,
    revisionId: spec.revisionId,
    state: "starting",
    ...extra,
  };
  instances.delete(poolId);
  instances.set(spec.instanceId, inst);
}
