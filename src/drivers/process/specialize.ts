/**
 * The warm pool's side of the process driver: a generic instance is started like any other (see
 * `start.ts`) from a spec with an empty slot dir where the function's files would be; `specialize` later
 * links a function's files into that slot and has the runtime load them.
 */
import type { Clock } from "../../shared/clock.js";
import { FuncdError, messageOf } from "../../shared/errors.js";
import type { InstanceInfo, InstanceSpec } from "../driver.js";
import { startFailure } from "./exit.js";
import {
  type GenericState,
  type Instance,
  type InstanceHost,
  Interrupted,
  kill,
  snapshot,
} from "./instance.js";
import { insidePaths, instanceEnv } from "./launch.js";
import { writeMeta } from "./rundir.js";
import { fillSlot, requestSpecialization } from "./slot.js";

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

/** Why a generic instance cannot become an instance of `spec`, or undefined when it can. */
export function specializationRefusal(generic: GenericState, spec: InstanceSpec): string | undefined {
  const bootOnly = Object.keys(spec.env).filter((name) => generic.bootEnv.includes(name));
  return spec.runtime !== generic.runtime
    ? `it runs runtime "${generic.runtime}", not "${spec.runtime}"`
    : spec.memoryMb !== generic.memoryMb
      ? `its memory limit is ${generic.memoryMb} MiB, not ${spec.memoryMb} MiB`
      : bootOnly.length > 0
        ? `the function sets ${bootOnly.join(", ")}, which the runtime reads only when it boots`
        : undefined;
}

/** Makes the generic instance `poolId` an instance of `spec`, re-keyed under `spec.instanceId`. */
export function adopt(
  instances: Map<string, Instance>,
  inst: Instance,
  poolId: string,
  spec: InstanceSpec,
): void {
  // From here on the instance is the function's: its output, its bookkeeping, its failure. Until
  // specialization succeeds it counts as starting, so an exit is a failed start, news to nobody.
  inst.generic = undefined;
  inst.spec = spec;
  inst.announced = false;
  inst.info = {
    ...inst.info,
    instanceId: spec.instanceId,
    functionName: spec.functionName,
    revisionId: spec.revisionId,
    state: "starting",
  };
  instances.delete(poolId);
  instances.set(spec.instanceId, inst);
}

export async function specializeInto(
  host: Pick<InstanceHost, "logger" | "clock">,
  inst: Instance,
  readyTimeoutMs: number,
  signal: AbortSignal,
): Promise<InstanceInfo> {
  const began = performance.now();
  const spec = inst.spec;
  const wait = new AbortController();
  const relay = () => wait.abort(signal.reason);
  signal.addEventListener("abort", relay, { once: true });
  if (signal.aborted) relay();
  const timer = setTimeout(() => wait.abort(new Interrupted("timeout")), readyTimeoutMs);
  void inst.exitSeen.then(() => wait.abort(new Interrupted("exited")));
  let linkedMs = 0;
  try {
    await fillSlot(spec.artifactDir, inst.paths.slotDir, inst.slotUid);
    linkedMs = performance.now() - began;
    wait.signal.throwIfAborted();
    const env = instanceEnv(spec, insidePaths(inst.sandboxed, inst.paths.socketPath, inst.paths.slotDir));
    const answer = await requestSpecialization(
      inst.paths.socketPath,
      {
        handler: spec.handler,
        ...(spec.handlerStyle === undefined ? {} : { handlerStyle: spec.handlerStyle }),
        env,
        functionName: spec.functionName,
        revision: spec.revisionId,
        timeoutMs: spec.timeoutMs,
        memoryMb: spec.memoryMb,
      },
      wait.signal,
    );
    if (answer.status === 422) throw new Interrupted("load-failed");
    if (answer.status !== 200) {
      throw new Error(`the runtime answered its specialization with ${answer.status}: ${answer.text}`);
    }
  } catch (err) {
    const why: unknown =
      err instanceof Interrupted && err.why === "load-failed"
        ? err
        : wait.signal.aborted
          ? wait.signal.reason
          : err;
    // A runtime that could not load the handler exits (code 3) right after saying so: let it.
    if (why instanceof Interrupted && why.why === "load-failed") {
      await Promise.race([inst.exitSeen, new Promise((resolve) => setTimeout(resolve, 1_000))]);
    }
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
    throw new FuncdError(
      "FUNCTION_UNAVAILABLE",
      `Function "${spec.functionName}" could not be specialized from the warm pool: ${messageOf(why)}`,
      { cause: why, extra: { logs: exit.lastLogLines } },
    );
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", relay);
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
