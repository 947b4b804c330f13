/**
 * From an instance the API lists to its host processes and their memory.
 *
 * The API's `instances[].pid` is the pid the process driver got from spawn(): the outermost process of the
 * instance on the host (bwrap, or the runtime itself without a sandbox). It is trusted only when that
 * process visibly belongs to the instance — its command line, cgroup or environment mention the instance
 * id, or it descends from the daemon (an instance the warm pool booted generically and then specialized:
 * its command line names the pool slot instead). Otherwise (a pid from inside a pid namespace, or one
 * already reused) the processes are found by scanning /proc for the id, and the topmost ones taken. Memory is summed over the whole tree:
 * the sandbox's helper processes are part of what an instance costs.
 */
import { readFileSync } from "node:fs";
import { describeProcess, memoryOf, processesMentioning, processTable, processTree } from "./procs.mjs";

function environOf(pid) {
  try {
    return readFileSync(`/proc/${pid}/environ`, "utf8");
  } catch {
    return "";
  }
}

function mentions(pid, needle) {
  const { cmdline, cgroup } = describeProcess(pid);
  return cmdline.includes(needle) || cgroup.includes(needle) || environOf(pid).includes(needle);
}

/** True when `pid`'s chain of parents reaches `ancestor`. */
function descendsFrom(pid, ancestor, table) {
  for (let p = table.get(pid)?.ppid; p !== undefined && p > 1; p = table.get(p)?.ppid) {
    if (p === ancestor) return true;
  }
  return false;
}

/**
 * The host processes at the top of the instance's tree, and how they were found. `daemonPid` lets a pid
 * that names no instance still be trusted when it is the daemon's descendant: an instance the warm pool
 * started generically (its command line names the pool slot) and then specialized into this function.
 */
export function instanceRoots(instance, table = processTable(), daemonPid = undefined) {
  const id = instance.instanceId;
  if (instance.pid !== undefined && table.has(instance.pid)) {
    if (mentions(instance.pid, id)) return { roots: [instance.pid], how: "api pid, names the instance" };
    if (daemonPid !== undefined && descendsFrom(instance.pid, daemonPid, table)) {
      const pooled = describeProcess(instance.pid).cmdline.includes("/pool-");
      return { roots: [instance.pid], how: `api pid, daemon's child${pooled ? " (warm-pool slot)" : ""}` };
    }
  }
  const found = processesMentioning(id, { cgroup: true });
  const set = new Set(found);
  return { roots: found.filter((pid) => !set.has(table.get(pid)?.ppid)), how: "/proc scan for the id" };
}

/**
 * Process trees under the daemon that belong to none of `claimed` (pids of listed instances): the warm
 * pool's generic instances waiting to be specialized, an install in progress.
 */
export function unclaimedChildren(daemonPid, claimed, table = processTable()) {
  const taken = new Set(claimed);
  const trees = [];
  for (const { pid, ppid } of table.values()) {
    if (ppid !== daemonPid || taken.has(pid)) continue;
    const pids = processTree(pid, table);
    const procs = pids.map((p) => memoryOf(p));
    trees.push({
      root: pid,
      pooled: describeProcess(pid).cmdline.includes("/pool-"),
      rss: procs.reduce((n, m) => n + m.rss, 0),
      pss: procs.reduce((n, m) => n + m.pss, 0),
    });
  }
  return trees;
}

/** Names of the processes the sandbox adds around the runtime. */
const WRAPPERS = new Set(["bwrap", "setpriv", "sh"]);

/**
 * RSS and PSS of the instance's whole process tree, and of its runtime process(es) alone.
 */
export function instanceMemory(instance, table = processTable(), daemonPid = undefined) {
  const { roots, how } = instanceRoots(instance, table, daemonPid);
  const pids = [...new Set(roots.flatMap((root) => processTree(root, table)))];
  const procs = pids.map((pid) => ({ pid, comm: table.get(pid)?.comm ?? "?", ...memoryOf(pid) }));
  const sum = (list, key) => list.reduce((n, p) => n + p[key], 0);
  const runtime = procs.filter((p) => !WRAPPERS.has(p.comm));
  return {
    instanceId: instance.instanceId,
    how,
    pids,
    processes: procs.map((p) => `${p.comm}:${p.pid}`),
    rss: sum(procs, "rss"),
    pss: sum(procs, "pss"),
    runtimeRss: sum(runtime, "rss"),
    wrapperRss: sum(procs, "rss") - sum(runtime, "rss"),
  };
}

/** All pids of the instance's tree (for CPU accounting). */
export function instancePids(instance, table = processTable(), daemonPid = undefined) {
  const { roots } = instanceRoots(instance, table, daemonPid);
  return [...new Set(roots.flatMap((root) => processTree(root, table)))];
}
