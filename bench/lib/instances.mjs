/**
 * From an instance the API lists to its host processes and their memory.
 *
 * The API's `instances[].pid` is the pid the process driver got from spawn(): the outermost process of the
 * instance on the host (bwrap, or the runtime itself without a sandbox). It is trusted only when that
 * process visibly belongs to the instance — its command line, cgroup or environment mention the instance
 * id. Otherwise (a pid from inside a pid namespace, or one already reused) the processes are found by
 * scanning /proc for that mention, and the topmost ones taken. Memory is summed over the whole tree:
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

/** The host processes at the top of the instance's tree, and how they were found. */
export function instanceRoots(instance, table = processTable()) {
  const id = instance.instanceId;
  if (instance.pid !== undefined && table.has(instance.pid) && mentions(instance.pid, id)) {
    return { roots: [instance.pid], how: "api-pid" };
  }
  const found = processesMentioning(id, { cgroup: true });
  const set = new Set(found);
  return { roots: found.filter((pid) => !set.has(table.get(pid)?.ppid)), how: "proc-scan" };
}

/** Names of the processes the sandbox adds around the runtime. */
const WRAPPERS = new Set(["bwrap", "setpriv", "sh"]);

/**
 * RSS and PSS of the instance's whole process tree, and of its runtime process(es) alone.
 */
export function instanceMemory(instance, table = processTable()) {
  const { roots, how } = instanceRoots(instance, table);
  const pids = [...new Set(roots.flatMap((root) => processTree(root, table)))];
  const procs = pids.map((pid) => ({ pid, comm: table.get(pid)?.comm ?? "?", ...memoryOf(pid) }));
  const sum = (list, key) => list.reduce((n, p) => n + p[key], 0);
  const runtime = procs.filter((p) => !WRAPPERS.has(p.comm));
  return {
    instanceId: instance.instanceId,
    how,
    processes: procs.map((p) => `${p.comm}:${p.pid}`),
    rss: sum(procs, "rss"),
    pss: sum(procs, "pss"),
    runtimeRss: sum(runtime, "rss"),
    wrapperRss: sum(procs, "rss") - sum(runtime, "rss"),
  };
}

/** All pids of the instance's tree (for CPU accounting). */
export function instancePids(instance, table = processTable()) {
  const { roots } = instanceRoots(instance, table);
  return [...new Set(roots.flatMap((root) => processTree(root, table)))];
}
