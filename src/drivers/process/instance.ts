/**
 * One live instance of the process driver and what happens to it after its spawn: output capture,
 * signals (stop's SIGTERM, the SIGKILL after it), and the exit — recorded, cleaned up, announced.
 */
import type { ChildProcess } from "node:child_process";
import { rm } from "node:fs/promises";
import { announceExit, type DriverListener } from "../common/exit-events.js";
import { type LineHost, outputLine, systemLine } from "../common/instance-lines.js";
import type { InstanceExit, InstanceInfo, InstanceSpec } from "../driver.js";
import { describeExit, exitReason } from "./exit.js";
import type { InstanceCgroup, RssWatchdog } from "./memory.js";
import { LastLines, parseTagged, readLines } from "./output.js";
import { processTree, readStat, signalAll, signalGroup } from "./proctree.js";
import type { instancePaths } from "./rundir.js";
import type { PoolUids } from "./sandbox.js";

/** How long to wait for an exited instance's last output before reporting without it. */
const OUTPUT_DRAIN_MS = 500;

/** The driver's state that tracking an instance and handling its exit read and change. */
export interface InstanceHost extends LineHost {
  /** Live instances by their current id. */
  readonly instances: Map<string, Instance>;
  readonly listeners: Set<DriverListener>;
  /** Pool slot uids of live generic or specialized-from-the-pool instances. */
  readonly poolUids: PoolUids;
}

/** What a generic (warm pool) instance was started as, until it is specialized. */
export interface GenericState {
  runtime: string;
  memoryMb: number;
  /** The template's boot-only variables: a function setting one cannot use this instance. */
  bootEnv: string[];
}

export interface Instance {
  /** The function it serves; a generic instance takes its function's spec at specialization. */
  spec: InstanceSpec;
  info: InstanceInfo;
  /** Set while it is a generic pool instance that nobody has started specializing. */
  generic: GenericState | undefined;
  /** The pool slot uid it runs as (started generic, root daemon); released when it has exited. */
  slotUid: number | undefined;
  paths: ReturnType<typeof instancePaths>;
  pid: number;
  sandboxed: boolean;
  cgroup: InstanceCgroup | undefined;
  watchdog: RssWatchdog | undefined;
  lastLines: LastLines;
  /** Output streams finished. */
  drained: Promise<void>;
  /** Resolves as soon as the first process exited (before the clean-up `exited` waits for). */
  exitSeen: Promise<void>;
  /** Set when `exitSeen` resolves: its pid may be reused from then on, so it must not be signalled. */
  processExited: boolean;
  /** Settles after the exit has been recorded and everything cleaned up. */
  exited: Promise<InstanceExit>;
  /** stop() asked for this exit: no exit event, reason `stopped`. */
  stopRequested: boolean;
  oomByWatchdog: boolean;
  /** The memory limit killed it (known once it exited). */
  oomKilled: boolean;
  /** start() resolved: from now on an exit is news for the scaler (for the pool, while generic). */
  announced: boolean;
}

/** Registers a spawned child: output capture, exit handling, bookkeeping. */
export function trackInstance(
  host: InstanceHost,
  spec: InstanceSpec,
  child: ChildProcess,
  pid: number,
  paths: ReturnType<typeof instancePaths>,
  sandboxed: boolean,
  cgroup: InstanceCgroup | undefined,
  pool: { generic: GenericState | undefined; slotUid: number | undefined },
): Instance {
  const lastLines = new LastLines(50);
  const capture = (name: "stdout" | "stderr") => {
    const stream = child[name];
    if (stream === null) return Promise.resolve();
    return readLines(stream, (line) => {
      const { requestId, text } = parseTagged(line);
      outputLine(host, inst, name, text, requestId);
    });
  };
  let seen: () => void = () => undefined;
  const inst: Instance = {
    spec,
    info: {
      instanceId: spec.instanceId,
      functionName: spec.functionName,
      revisionId: spec.revisionId,
      address: { socketPath: paths.socketPath },
      state: "starting",
      startedAt: host.clock.now(),
      pid,
    },
    paths,
    pid,
    sandboxed,
    cgroup,
    generic: pool.generic,
    slotUid: pool.slotUid,
    watchdog: undefined,
    lastLines,
    drained: Promise.all([capture("stdout"), capture("stderr")]).then(() => undefined),
    exitSeen: new Promise<void>((resolve) => {
      seen = resolve;
    }),
    exited: new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        inst.processExited = true;
        seen();
        resolve(recordExit(host, inst, code, signal));
      });
    }),
    processExited: false,
    stopRequested: false,
    oomByWatchdog: false,
    oomKilled: false,
    announced: false,
  };
  child.on("error", (err) => host.logger.error({ err, instance: spec.instanceId }, "instance process error"));
  host.instances.set(spec.instanceId, inst);
  return inst;
}

/** Records an exit, removes the rest of the instance, and tells listeners when it was not asked for. */
async function recordExit(
  host: InstanceHost,
  inst: Instance,
  code: number | null,
  signal: NodeJS.Signals | null,
): Promise<InstanceExit> {
  inst.watchdog?.stop();
  inst.oomKilled = inst.oomByWatchdog || ((await inst.cgroup?.oomKilled()) ?? false);
  // Whatever the runtime left running (children it spawned) goes with it. Its pid is reaped and could
  // in theory be reused, but a new process would lead a group of its own, not this one.
  signalGroup(inst.pid, "SIGKILL");
  await inst.cgroup?.kill();
  await Promise.race([inst.drained, new Promise((resolve) => setTimeout(resolve, OUTPUT_DRAIN_MS))]);
  const unasked = exitReason(code, signal, inst.oomKilled);
  const reason = inst.stopRequested ? "stopped" : inst.announced ? unasked : "start-failed";
  if (unasked === "OOMKilled" && !inst.oomByWatchdog && inst.announced) {
    systemLine(
      host,
      inst,
      `funcd: instance killed: it reached its memory limit of ${inst.spec.memoryMb} MiB`,
    );
  }
  if (reason !== "stopped" && reason !== "start-failed") {
    systemLine(host, inst, `funcd: instance exited (${describeExit(code, signal, inst.sandboxed)})`);
  }
  const exit: InstanceExit = { reason, code, signal, lastLogLines: inst.lastLines.snapshot() };
  await inst.cgroup?.remove().catch((err: unknown) => {
    host.logger.warn({ err, cgroup: inst.cgroup?.path }, "cannot remove an instance cgroup");
  });
  await rm(inst.paths.dir, { recursive: true, force: true }).catch(() => undefined);
  inst.info.state = reason === "stopped" || reason === "exited" ? "stopped" : "failed";
  inst.info.exit = exit;
  // Keyed by its current id (a specialized instance was re-keyed); a newer entry is left alone.
  if (host.instances.get(inst.info.instanceId) === inst) host.instances.delete(inst.info.instanceId);
  // Only now that its processes are gone may another pool instance run as this uid.
  host.poolUids.release(inst.slotUid);
  announceExit(host, inst, exit, "instance");
  return exit;
}

/**
 * SIGTERM to the runtime and what it spawned — not to bwrap's own processes: the outer one would die
 * of it and take the sandbox down with SIGKILL (--die-with-parent), skipping the runtime's drain.
 */
export async function terminate(inst: Instance): Promise<void> {
  if (!inst.sandboxed) {
    signalGroup(inst.pid, "SIGTERM");
    return;
  }
  const stats = await Promise.all((await processTree(inst.pid)).map(readStat));
  signalAll(
    stats.flatMap((s) => (s !== undefined && s.comm !== "bwrap" ? [s.pid] : [])),
    "SIGTERM",
  );
}

/** SIGKILL to everything of the instance: its process tree, its process group, its cgroup. */
export async function kill(inst: Instance): Promise<void> {
  signalAll(await processTree(inst.pid), "SIGKILL");
  signalGroup(inst.pid, "SIGKILL");
  await inst.cgroup?.kill();
}
