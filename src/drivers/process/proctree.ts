/**
 * Reading and signalling process trees through /proc. The process driver needs this because an
 * instance is several processes (the sandbox's helpers, the runtime, whatever the handler spawns), and
 * a signal must reach the right ones: SIGTERM only the runtime's, SIGKILL all of them.
 */
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";

/** The fields of /proc/<pid>/stat the driver uses. */
export interface ProcStat {
  pid: number;
  /** The executable's name, at most 15 characters. */
  comm: string;
  /** R, S, D, Z, T, … — `Z` is a zombie that only waits to be reaped. */
  state: string;
  ppid: number;
  pgrp: number;
  /** Clock ticks after boot; with the pid it identifies a process even after the pid is reused. */
  startTime: number;
}

/** Reads /proc/<pid>/stat; undefined when the process is gone. */
export async function readStat(pid: number): Promise<ProcStat | undefined> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // comm may itself contain spaces and parentheses, so the fields start after the last ")".
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  if (open === -1 || close === -1) return undefined;
  const rest = text
    .slice(close + 2)
    .trim()
    .split(" ");
  return {
    pid,
    comm: text.slice(open + 1, close),
    state: rest[0] ?? "?",
    ppid: Number(rest[1]),
    pgrp: Number(rest[2]),
    startTime: Number(rest[19]),
  };
}

/** True when the process exists and is not a zombie. */
export async function isRunning(pid: number): Promise<boolean> {
  const stat = await readStat(pid);
  return stat !== undefined && stat.state !== "Z" && stat.state !== "X";
}

/** Kernels built without CONFIG_PROC_CHILDREN lack the per-thread children file. */
const HAS_CHILDREN_FILE = existsSync(`/proc/${process.pid}/task/${process.pid}/children`);

/**
 * The direct children of `pid`. Uses /proc/<pid>/task/<tid>/children (one small read per thread) and
 * falls back to scanning every process's ppid where that file does not exist.
 */
export async function childrenOf(pid: number): Promise<number[]> {
  if (HAS_CHILDREN_FILE) {
    const tids = await readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
    const lists = await Promise.all(
      tids.map((tid) => readFile(`/proc/${pid}/task/${tid}/children`, "utf8").catch(() => "")),
    );
    return lists.flatMap((list) => list.split(" ").filter(Boolean).map(Number));
  }
  const all = await readdir("/proc").catch(() => [] as string[]);
  const stats = await Promise.all(
    all.filter((name) => /^\d+$/.test(name)).map((name) => readStat(Number(name))),
  );
  return stats.flatMap((stat) => (stat?.ppid === pid ? [stat.pid] : []));
}

/** `root` and all its descendants, parents before children. */
export async function processTree(root: number): Promise<number[]> {
  const seen = new Set<number>([root]);
  const order = [root];
  for (let i = 0; i < order.length; i++) {
    const pid = order[i] as number;
    for (const child of await childrenOf(pid)) {
      if (!seen.has(child)) {
        seen.add(child);
        order.push(child);
      }
    }
  }
  return order;
}

/**
 * Resident memory of one process that a memory cgroup would charge it for: anonymous plus shared-memory
 * pages (RssAnon + RssShmem). Plain VmRSS would also count the interpreter's binary and libraries, which
 * are shared with every other instance and would eat most of a small limit. 0 when the process is gone.
 */
export async function rssBytes(pid: number): Promise<number> {
  let status: string;
  try {
    status = await readFile(`/proc/${pid}/status`, "utf8");
  } catch {
    return 0;
  }
  const kb = (field: string) => {
    const match = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, "m").exec(status);
    return match ? Number(match[1]) : undefined;
  };
  const anon = kb("RssAnon");
  // Kernels before 4.5 only report the total.
  const total = anon === undefined ? (kb("VmRSS") ?? 0) : anon + (kb("RssShmem") ?? 0);
  return total * 1024;
}

/** Sends `signal` to each pid, ignoring the ones that are already gone. */
export function signalAll(pids: Iterable<number>, signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // Gone already (ESRCH), which is what we wanted anyway.
    }
  }
}

/** Signals a whole process group; false when the group no longer exists. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/** The NUL-separated /proc/<pid>/cmdline and environ joined with spaces; "" when unreadable. */
export async function commandAndEnvironment(pid: number): Promise<string> {
  const read = (file: string) =>
    readFile(`/proc/${pid}/${file}`, "utf8")
      .then((text) => text.replaceAll("\0", " "))
      .catch(() => "");
  const [cmdline, environ] = await Promise.all([read("cmdline"), read("environ")]);
  return `${cmdline} ${environ}`;
}
