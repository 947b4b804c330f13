/**
 * Starting one instance: its dir and cgroup, the spawn (see `launch.ts` for argv and env), the RSS
 * watchdog where there is no cgroup, and the wait for readiness — for a function or, generic, for the pool.
 */
import { spawn } from "node:child_process";
import { rm } from "node:fs/promises";
import { FuncdError, messageOf } from "../../shared/errors.js";
import { systemLine } from "../common/instance-lines.js";
import { waitUntilReady } from "../common/readiness.js";
import { abandonStart, ReadyWait } from "../common/ready-wait.js";
import { snapshot } from "../common/registry.js";
import type { InstanceInfo, InstanceSpec } from "../driver.js";
import type { UidAccess } from "./access.js";
import { startFailure } from "./exit.js";
import { type InstanceHost, kill, trackInstance } from "./instance.js";
import { buildLaunch } from "./launch.js";
import { type InstanceCgroup, RssWatchdog } from "./memory.js";
import { createInstanceCgroup, type MemoryPlan, type SandboxPlan } from "./plans.js";
import { readStat } from "./proctree.js";
import { instancePaths, prepareInstanceDir, writeMeta, writePid } from "./rundir.js";
import { isRoot, uidFor } from "./sandbox.js";
import type { RuntimeTemplate } from "./template.js";

/** Longest unix socket path Linux accepts (sun_path is 108 bytes with the NUL). */
const MAX_SOCKET_PATH = 107;

/** What a start needs of its driver besides the instance bookkeeping: paths, uids, the host's plans. */
export interface LaunchHost extends InstanceHost {
  readonly runDir: string;
  readonly uidBase: number;
  /** Permissions granted to instance uids on the host (root only). */
  readonly access: UidAccess;
  template(runtime: string): Promise<RuntimeTemplate>;
  sandbox(): Promise<SandboxPlan>;
  memory(): Promise<MemoryPlan>;
  prepareRunDir(): Promise<void>;
}

/** Starts `spec` (a generic pool instance when `generic`) and resolves once it answers `/healthz`. */
export async function launchInstance(
  host: LaunchHost,
  spec: InstanceSpec,
  readyTimeoutMs: number,
  signal: AbortSignal,
  generic = false,
): Promise<InstanceInfo> {
  const began = performance.now();
  const [template, sandbox, memory] = await Promise.all([
    host.template(spec.runtime),
    host.sandbox(),
    host.memory(),
    host.prepareRunDir(),
  ]);
  signal.throwIfAborted();
  if (generic && !template.generic) {
    throw new FuncdError(
      "UNKNOWN_RUNTIME",
      `Runtime "${spec.runtime}" has no generic mode (its template.yaml does not declare "generic: true"), so the warm pool cannot pre-start it`,
      { extra: { generic: "unsupported" } },
    );
  }
  const paths = instancePaths(host.runDir, spec.instanceId);
  if (Buffer.byteLength(paths.socketPath) > MAX_SOCKET_PATH) {
    throw new FuncdError(
      "CONFIG_INVALID",
      `The run dir ${host.runDir} is too long: the socket path ${paths.socketPath} exceeds ${MAX_SOCKET_PATH} bytes`,
    );
  }
  // A pool instance gets a slot uid of its own (no function's uid: it may become any function).
  const slotUid = generic && isRoot() ? host.poolUids.take() : undefined;
  const uid = generic ? slotUid : isRoot() ? uidFor(spec.functionName, host.uidBase) : undefined;
  const releaseSlotUid = () => host.poolUids.release(slotUid);
  const limitBytes = spec.memoryMb * 1024 * 1024;
  let cgroup: InstanceCgroup | undefined;
  const undoPrepare = async () => {
    releaseSlotUid();
    await cgroup?.remove().catch(() => undefined);
    await rm(paths.dir, { recursive: true, force: true }).catch(() => undefined);
  };
  try {
    const prefix = "interpreter" in template.program ? template.program.interpreter.prefix : undefined;
    const reachable = prefix === undefined ? [template.dir] : [template.dir, prefix];
    const access =
      uid === undefined
        ? undefined
        : generic
          ? { grant: host.access, uid, reachable }
          : { grant: host.access, uid, reachable, readable: spec.artifactDir };
    await prepareInstanceDir(paths, access, generic);
    if (memory.kind === "cgroup") cgroup = await createInstanceCgroup(memory, spec.instanceId, limitBytes);
    await writeMeta(paths.meta, {
      instanceId: spec.instanceId,
      functionName: spec.functionName,
      revisionId: spec.revisionId,
      runtime: spec.runtime,
      createdAt: host.clock.now(),
      ...(cgroup === undefined ? {} : { cgroup: { version: cgroup.version, path: cgroup.path } }),
      ...(generic ? { generic: spec.runtime } : {}),
    });
  } catch (err) {
    await undoPrepare();
    throw err;
  }

  // spawn() throws synchronously for some bad input (a NUL byte in env or argv) and reports others (ENOENT,
  // EACCES) as an "error" event with no pid: both get the same clean-up as any failed start.
  let child: ReturnType<typeof spawn>;
  let argv0 = "";
  try {
    const { argv, env, cwd } = buildLaunch({ spec, template, sandbox, paths, uid, cgroup, generic });
    argv0 = argv[0] as string;
    child = spawn(argv0, argv.slice(1), {
      env,
      cwd,
      stdio: ["ignore", "pipe", "pipe"],
      // Its own process group, so stop() can signal everything the runtime spawned (without bwrap).
      detached: true,
    });
    if (child.pid === undefined) throw await new Promise<Error>((resolve) => child.once("error", resolve));
  } catch (err) {
    await undoPrepare();
    throw new FuncdError(
      "SANDBOX_UNAVAILABLE",
      `Cannot start instance ${spec.instanceId}${argv0 ? ` (${argv0})` : ""}: ${messageOf(err)}`,
      { cause: err },
    );
  }
  if (child.pid === undefined) throw new Error("unreachable: spawn without a pid");
  const spawned = performance.now();
  const genericState = generic
    ? { runtime: spec.runtime, memoryMb: spec.memoryMb, bootEnv: template.bootEnv }
    : undefined;
  const inst = trackInstance(host, spec, child, child.pid, paths, sandbox.kind === "bwrap", cgroup, {
    generic: genericState,
    slotUid,
  });
  await writePid(paths.pid, inst.pid, (await readStat(inst.pid))?.startTime);
  if (memory.kind === "watchdog") {
    inst.watchdog = new RssWatchdog(inst.pid, limitBytes, (rss) => {
      inst.oomByWatchdog = true;
      const used = Math.round(rss / 1024 / 1024);
      systemLine(
        host,
        inst,
        `funcd: instance killed: it used ${used} MiB, over its memory limit of ${spec.memoryMb} MiB`,
      );
      void kill(inst);
    });
  }

  // Whatever ends the wait first: ready, exit, timeout, or the caller's abort.
  const wait = new ReadyWait(signal, readyTimeoutMs, inst.exitSeen);
  try {
    await waitUntilReady({ socketPath: paths.socketPath }, wait.signal, { watchSocket: true });
  } catch (err) {
    await abandonStart(wait.reason(err), { kill: () => kill(inst), exited: inst.exited }, (exit, why) =>
      startFailure({
        ...spec,
        sandboxed: inst.sandboxed,
        oomKilled: inst.oomKilled,
        exit,
        why,
        readyTimeoutMs,
        ...(generic ? { subject: `a warm pool instance of runtime "${spec.runtime}"` } : {}),
      }),
    );
  } finally {
    wait.close();
  }
  inst.info.state = "ready";
  inst.announced = true;
  const ms = (from: number, to: number) => Math.round((to - from) * 10) / 10;
  host.logger.debug(
    {
      instance: spec.instanceId,
      function: spec.functionName,
      pid: inst.pid,
      prepareMs: ms(began, spawned),
      bootMs: ms(spawned, performance.now()),
      ...(generic ? { generic: true } : {}),
    },
    generic ? "generic instance ready (warm pool)" : "instance ready",
  );
  return snapshot(inst.info);
}
