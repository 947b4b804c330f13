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
import { Client } from "undici";
import { FuncdError, messageOf } from "../../shared/errors.js";
import type { InstanceAddress, InstanceInfo, InstanceSpec } from "../driver.js";
import { fillSlot } from "../process/slot.js";
import { type DockerInstance, type GenericState, snapshot } from "./container.js";
import { CONTAINER_PORT, instanceEnv } from "./container-config.js";
import { Interrupted, startFailure } from "./failures.js";
import { nanoCpus } from "./resources.js";

/** Why a generic container cannot become an instance of `spec`, or undefined when it can. */
export function specializationRefusal(
  generic: GenericState,
  spec: InstanceSpec,
  bootEnv: readonly string[],
): string | undefined {
  const bootOnly = Object.keys(spec.env).filter((name) => bootEnv.includes(name));
  if (spec.runtime !== generic.runtime) return `it runs runtime "${generic.runtime}", not "${spec.runtime}"`;
  if (spec.memoryMb !== generic.memoryMb) {
    return `its memory limit is ${generic.memoryMb} MiB, not ${spec.memoryMb} MiB`;
  }
  if (spec.image !== undefined) return "the function runs its own image";
  if (spec.network === "none") return "the function has network: none, and pool containers have a network";
  if (bootOnly.length > 0) {
    return `the function sets ${bootOnly.join(", ")}, which the runtime reads only when it boots`;
  }
  return undefined;
}

/** Makes the generic container `inst` the function's: re-keyed, renamed in its output, starting again. */
export function takeOver(
  instances: Map<string, DockerInstance>,
  inst: DockerInstance,
  spec: InstanceSpec,
): void {
  const poolId = inst.info.instanceId;
  // Until the specialization succeeds it counts as starting: an exit is a failed start, news to nobody.
  inst.generic = undefined;
  inst.announced = false;
  inst.identity = spec;
  inst.info = {
    ...inst.info,
    instanceId: spec.instanceId,
    functionName: spec.functionName,
    revisionId: spec.revisionId,
    state: "starting",
    fromPool: true,
  };
  instances.delete(poolId);
  instances.set(spec.instanceId, inst);
}

/** Specializes the taken-over container into `spec`; on any failure it is killed and nothing is left. */
export async function specializeInto(
  inst: DockerInstance,
  spec: InstanceSpec,
  readyTimeoutMs: number,
  signal: AbortSignal,
): Promise<InstanceInfo> {
  const wait = new AbortController();
  const relay = () => wait.abort(signal.reason);
  signal.addEventListener("abort", relay, { once: true });
  if (signal.aborted) relay();
  const timer = setTimeout(() => wait.abort(new Interrupted("timeout")), readyTimeoutMs);
  void inst.exitSeen.then(() => wait.abort(new Interrupted("exited")));
  let loadFailed = false;
  try {
    await fillSlot(spec.artifactDir, inst.slotDir as string, undefined);
    if (spec.cpus !== undefined) await inst.container.update({ NanoCpus: nanoCpus(spec.cpus) });
    wait.signal.throwIfAborted();
    const answer = await requestSpecialization(
      inst.info.address,
      {
        handler: spec.handler,
        ...(spec.handlerStyle === undefined ? {} : { handlerStyle: spec.handlerStyle }),
        // FUNCD_LISTEN stays what the container booted with (the runtime keeps its own anyway).
        env: instanceEnv(spec, String(CONTAINER_PORT)),
        functionName: spec.functionName,
        revision: spec.revisionId,
        timeoutMs: spec.timeoutMs,
        memoryMb: spec.memoryMb,
      },
      wait.signal,
    );
    if (answer.status === 422) {
      loadFailed = true;
      throw new Error("the handler could not be loaded");
    }
    if (answer.status !== 200) {
      throw new Error(`the runtime answered its specialization with ${answer.status}: ${answer.text}`);
    }
  } catch (err) {
    const why: unknown = loadFailed
      ? new Interrupted("load-failed")
      : wait.signal.aborted
        ? wait.signal.reason
        : err;
    // A runtime that could not load the handler exits (code 3) right after saying so: let it.
    if (loadFailed) await Promise.race([inst.exitSeen, new Promise((resolve) => setTimeout(resolve, 1_000))]);
    await inst.container.kill().catch(() => undefined);
    const exit = await inst.exited;
    if (signal.aborted) throw signal.reason;
    if (why instanceof Interrupted) {
      throw startFailure(spec, exit, why.why, inst.oomKilled, readyTimeoutMs);
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
  inst.announced = true;
  return snapshot(inst.info);
}

/** What the runtime needs to become an instance of a function (docs/runtime-contract.md). */
interface Specialization {
  handler: string;
  handlerStyle?: string;
  /** The instance's whole environment, as a normal start would give it. */
  env: Record<string, string>;
  functionName: string;
  revision: string;
  timeoutMs: number;
  memoryMb: number;
}

/** `POST /_funcd/specialize` on the container's address; resolves with the answer's status and body. */
async function requestSpecialization(
  address: InstanceAddress,
  body: Specialization,
  signal: AbortSignal,
): Promise<{ status: number; text: string }> {
  const client =
    "socketPath" in address
      ? new Client("http://localhost", { socketPath: address.socketPath, pipelining: 0 })
      : new Client(`http://${address.host}:${address.port}`, { pipelining: 0 });
  try {
    const res = await client.request({
      path: "/_funcd/specialize",
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal,
      // The caller's timer bounds the wait (a large module may take long to import).
      headersTimeout: 0,
      bodyTimeout: 0,
    });
    return { status: res.statusCode, text: await res.body.text() };
  } finally {
    // Not awaited: the answer is in, and the cold start should not wait for the connection to close.
    client.destroy().catch(() => undefined);
  }
}
