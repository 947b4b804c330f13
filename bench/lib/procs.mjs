/**
 * Child processes the benchmarks start, and what /proc says about processes. Every child runs in its own
 * process group and is remembered here, so a failing benchmark — or Ctrl-C — still takes down everything
 * it started, including whatever the child itself spawned into its group.
 */
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

/** Process groups started and not yet seen to exit. */
const live = new Set();

/** How much of a child's output is kept for error messages. */
const KEEP_OUTPUT = 16_384;

/**
 * Spawns `command` as the leader of a new process group. `output()` returns the tail of its stdout and
 * stderr, `exited` resolves with the exit code (or signal name).
 */
export function spawnGroup(command, args, { env, cwd, onStdout } = {}) {
  const child = spawn(command, args, {
    env,
    cwd,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const keep = (d) => {
    output = (output + d.toString()).slice(-KEEP_OUTPUT);
  };
  child.stdout.on("data", (d) => {
    keep(d);
    onStdout?.(d.toString());
  });
  child.stderr.on("data", keep);
  const exited = new Promise((resolve) => {
    child.once("error", (err) => {
      keep(String(err));
      live.delete(child);
      resolve(-1);
    });
    child.once("exit", (code, signal) => {
      live.delete(child);
      resolve(code ?? signal);
    });
  });
  if (child.pid !== undefined) live.add(child);
  return Object.assign(child, { output: () => output, exited });
}

function signalGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // The group is gone already.
  }
}

/**
 * Stops a child started by `spawnGroup`: `signal` to its leader only (so a daemon can shut its instances
 * down itself), then after `graceMs` SIGKILL to the whole group. Resolves when the leader has exited.
 */
export async function stopGroup(child, { signal = "SIGTERM", graceMs = 5_000, wholeGroup = true } = {}) {
  if (child.pid === undefined) return;
  if (child.exitCode === null && child.signalCode === null) {
    try {
      if (wholeGroup) process.kill(-child.pid, signal);
      else child.kill(signal);
    } catch {
      // Already gone.
    }
    const timedOut = await Promise.race([child.exited.then(() => false), sleep(graceMs).then(() => true)]);
    if (timedOut) signalGroup(child, "SIGKILL");
    await child.exited;
  }
  // The leader may be gone while a grandchild lingers in the group.
  signalGroup(child, "SIGKILL");
}

/** Last resort on exit or interrupt: SIGKILL every group still running. Synchronous on purpose. */
export function killAllGroups() {
  for (const child of live) signalGroup(child, "SIGKILL");
  live.clear();
}

/** Host pids of all processes, with their parent and name: one pass over /proc. */
export function processTable() {
  const table = new Map();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat) table.set(stat.pid, stat);
  }
  return table;
}

/** /proc/<pid>/stat: name, parent, CPU ticks; undefined when the process is gone. */
export function readStat(pid) {
  let text;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The name may hold spaces and parentheses; the fields start after the last ")".
  const close = text.lastIndexOf(")");
  const fields = text.slice(close + 2).split(" ");
  return {
    pid,
    comm: text.slice(text.indexOf("(") + 1, close),
    state: fields[0],
    ppid: Number(fields[1]),
    cpuTicks: Number(fields[11]) + Number(fields[12]),
  };
}

/** `root` and its descendants according to `table`. */
export function processTree(root, table = processTable()) {
  const children = new Map();
  for (const { pid, ppid } of table.values()) {
    if (!children.has(ppid)) children.set(ppid, []);
    children.get(ppid).push(pid);
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]) ?? []));
  return tree.filter((pid) => table.has(pid));
}

function readText(file) {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

/** Resident and proportional set size of one process in bytes (0 when it is gone). */
export function memoryOf(pid) {
  const kib = (text, key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0) * 1024;
  const status = readText(`/proc/${pid}/status`);
  return {
    rss: kib(status, "VmRSS"),
    hwm: kib(status, "VmHWM"),
    // PSS splits shared pages (libnode, the runtime's files) between the processes that map them, so
    // PSS sums to what the processes really cost together; RSS sums count shared pages once per process.
    pss: kib(readText(`/proc/${pid}/smaps_rollup`), "Pss"),
  };
}

/** What /proc says about a process: its command line and cgroup paths, for matching it to an instance. */
export function describeProcess(pid) {
  return {
    cmdline: readText(`/proc/${pid}/cmdline`).replaceAll("\0", " "),
    cgroup: readText(`/proc/${pid}/cgroup`),
  };
}

/** Processes (other than this one) whose command line or cgroup mentions `needle`. */
export function processesMentioning(needle, { cgroup = false } = {}) {
  const pids = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const info = describeProcess(entry);
    if (info.cmdline.includes(needle) || (cgroup && info.cgroup.includes(needle))) pids.push(Number(entry));
  }
  return pids;
}

/** CPU time (ms) each process of `pids` has used so far; processes that are gone are left out. */
export function cpuMs(pids) {
  const used = new Map();
  // USER_HZ is 100 on every Linux this runs on; /proc reports ticks of it.
  for (const pid of pids) {
    const stat = readStat(pid);
    if (stat) used.set(pid, stat.cpuTicks * 10);
  }
  return used;
}

/** Busy and total jiffies of the whole machine, from the first line of /proc/stat. */
export function machineTicks() {
  const fields = readText("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

/**
 * Measures CPU use while `work` runs: percent of one core for each named group of pids, and how busy the
 * whole machine was (100 % = every core).
 */
export async function measureCpu(groups, work) {
  const before = Object.fromEntries(Object.entries(groups).map(([k, pids]) => [k, cpuMs(pids)]));
  const machineBefore = machineTicks();
  const started = performance.now();
  const result = await work();
  const elapsed = performance.now() - started;
  const machineAfter = machineTicks();
  const cpu = {};
  for (const [k, pids] of Object.entries(groups)) {
    // Only processes alive at both ends count: one that exited meanwhile took its CPU time with it.
    let used = 0;
    for (const [pid, after] of cpuMs(pids)) used += after - (before[k].get(pid) ?? after);
    cpu[k] = (used / elapsed) * 100;
  }
  cpu.machine =
    ((machineAfter.busy - machineBefore.busy) / Math.max(1, machineAfter.total - machineBefore.total)) * 100;
  return { result, cpu };
}

/**
 * Things to undo, last first: `defer(fn)` after each start, `await run()` in a finally block. A failing
 * clean-up step is reported and the others still run.
 */
export function cleanupStack() {
  const steps = [];
  return {
    defer(fn) {
      steps.push(fn);
    },
    async run() {
      while (steps.length > 0) {
        const step = steps.pop();
        try {
          await step();
        } catch (err) {
          process.stderr.write(`  clean-up step failed: ${err.message}\n`);
        }
      }
    },
  };
}
