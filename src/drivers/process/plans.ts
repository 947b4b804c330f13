/**
 * What this host offers the process driver, decided once per driver: the sandbox (bwrap or none, and
 * whether root must be dropped with setpriv) and the memory limit mechanism (a cgroup or the RSS
 * watchdog). Asking for something the host lacks fails loudly; `auto` degrades with one warning.
 */
import { createHash } from "node:crypto";
import { basename } from "node:path";
import type { Logger } from "pino";
import { FuncdError, messageOf } from "../../shared/errors.js";
import { findCgroupRoot, InstanceCgroup, type MemoryEnforcement, prepareCgroupParent } from "./memory.js";
import { findTools, isRoot, probeBwrap, type SandboxMode } from "./sandbox.js";

/** How instances are isolated; `setpriv` is set when the daemon runs as root and must drop it. */
export type SandboxPlan =
  | { kind: "bwrap"; bwrap: string; setpriv?: string }
  | { kind: "none"; setpriv?: string };

/** How memory limits are enforced; `parent` is this driver's cgroup under `<base>/funcd/`. */
export type MemoryPlan = { kind: "cgroup"; version: 1 | 2; parent: string } | { kind: "watchdog" };

const WEAKER =
  "functions run as plain processes: they see the host's file system (limited by file permissions) and its processes";

export async function resolveSandboxPlan(
  mode: SandboxMode,
  probeUid: number,
  logger: Logger,
): Promise<SandboxPlan> {
  const { setpriv } = await findTools();
  const root = isRoot();
  if (root && setpriv === undefined) {
    throw new FuncdError(
      "SANDBOX_UNAVAILABLE",
      "The daemon runs as root but setpriv (util-linux) is missing, so functions cannot run as an unprivileged uid",
    );
  }
  const drop = root && setpriv !== undefined ? { setpriv } : {};
  if (mode === "none") {
    logger.warn(`Sandbox disabled (sandbox: none): ${WEAKER}`);
    return { kind: "none", ...drop };
  }
  const probe = await probeBwrap(root ? probeUid : undefined);
  if (probe.ok) return { kind: "bwrap", bwrap: probe.bwrap, ...drop };
  if (mode === "bwrap") {
    throw new FuncdError(
      "SANDBOX_UNAVAILABLE",
      `The bubblewrap sandbox was requested but does not work here: ${probe.reason}`,
    );
  }
  logger.warn(`Running without the bubblewrap sandbox (${probe.reason}); isolation is weaker: ${WEAKER}`);
  return { kind: "none", ...drop };
}

/**
 * The run key names this driver's parent cgroup: derived from the run dir, so two daemons (or two test
 * drivers) never share, or reconcile, each other's cgroups, and equal instance ids never collide.
 */
export function runKey(runDir: string): string {
  return createHash("sha256").update(runDir).digest("hex").slice(0, 12);
}

export async function resolveMemoryPlan(
  wanted: MemoryEnforcement,
  runDir: string,
  logger: Logger,
): Promise<MemoryPlan> {
  if (wanted === "watchdog") return { kind: "watchdog" };
  let problem: string;
  try {
    const root = await findCgroupRoot();
    if (root !== undefined) {
      const parent = await prepareCgroupParent(root, runKey(runDir));
      logger.debug({ cgroup: parent, version: root.version }, "memory limits enforced by cgroup");
      return { kind: "cgroup", version: root.version, parent };
    }
    problem = "no writable memory cgroup (v2 with the memory controller, or v1 memory)";
  } catch (err) {
    problem = `the memory cgroup cannot be used: ${messageOf(err)}`;
  }
  if (wanted === "cgroup") {
    throw new FuncdError("SANDBOX_UNAVAILABLE", `Memory limits by cgroup were requested but ${problem}`);
  }
  logger.warn(`Memory limits are enforced by polling RSS every 250 ms, because there is ${problem}`);
  return { kind: "watchdog" };
}

/** Creates an instance cgroup, re-creating the parent once if another driver on the run dir removed it. */
export async function createInstanceCgroup(
  plan: Extract<MemoryPlan, { kind: "cgroup" }>,
  instanceId: string,
  limitBytes: number,
): Promise<InstanceCgroup> {
  try {
    return await InstanceCgroup.create(plan.version, plan.parent, instanceId, limitBytes);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    const root = await findCgroupRoot();
    if (root === undefined) throw err;
    await prepareCgroupParent(root, basename(plan.parent));
    return InstanceCgroup.create(plan.version, plan.parent, instanceId, limitBytes);
  }
}
