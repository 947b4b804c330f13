/**
 * Memory limits for process instances. A cgroup (v2, or the v1 memory controller) is the real limit:
 * the kernel charges every page the instance touches and kills it at the limit, and the cgroup tells
 * us afterwards that it did. Where no writable memory cgroup exists (no root, a container that does not
 * delegate one) an RSS watchdog polls the process tree instead — coarser (an allocation burst between
 * two polls goes unnoticed) but still reports the kill as `OOMKilled`.
 */
import { constants } from "node:fs";
import { access, mkdir, readdir, readFile, rmdir, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { processTree, rssBytes, signalAll } from "./proctree.js";

/** Which mechanism enforces memory limits; `auto` prefers a cgroup and falls back to the watchdog. */
export type MemoryEnforcement = "auto" | "cgroup" | "watchdog";

/** A memory controller the daemon can create child cgroups under. */
export interface CgroupRoot {
  version: 1 | 2;
  /** `<v2 mount>` or `<v1 memory mount>/<this process's cgroup>`; funcd's cgroups go under `<base>/funcd`. */
  base: string;
}

interface MountInfo {
  root: string;
  mountPoint: string;
  fsType: string;
  superOptions: string[];
}

function parseMountInfo(text: string): MountInfo[] {
  const mounts: MountInfo[] = [];
  for (const line of text.split("\n")) {
    const [left, right] = line.split(" - ");
    if (left === undefined || right === undefined) continue;
    const fields = left.split(" ");
    const [fsType, , superOptions] = right.split(" ");
    // Mount points with spaces are octal-escaped (\040) in mountinfo.
    const decode = (s: string) =>
      s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
    mounts.push({
      root: decode(fields[3] ?? "/"),
      mountPoint: decode(fields[4] ?? ""),
      fsType: fsType ?? "",
      superOptions: (superOptions ?? "").split(","),
    });
  }
  return mounts;
}

async function writable(path: string): Promise<boolean> {
  return access(path, constants.W_OK).then(
    () => true,
    () => false,
  );
}

/**
 * Finds a memory cgroup hierarchy this process may write to: cgroup v2 with the memory controller
 * first, else the v1 memory controller at this process's own cgroup (so funcd's cgroups nest under
 * whatever limit the daemon itself runs with). Undefined when there is none.
 */
export async function findCgroupRoot(): Promise<CgroupRoot | undefined> {
  const [mountText, cgroupText] = await Promise.all([
    readFile("/proc/self/mountinfo", "utf8").catch(() => ""),
    readFile("/proc/self/cgroup", "utf8").catch(() => ""),
  ]);
  const mounts = parseMountInfo(mountText);
  const v2 = mounts.find((m) => m.fsType === "cgroup2");
  if (v2 !== undefined) {
    const controllers = await readFile(join(v2.mountPoint, "cgroup.controllers"), "utf8").catch(() => "");
    if (controllers.split(/\s+/).includes("memory") && (await writable(v2.mountPoint))) {
      return { version: 2, base: v2.mountPoint };
    }
  }
  const v1 = mounts.find((m) => m.fsType === "cgroup" && m.superOptions.includes("memory"));
  const own = cgroupText
    .split("\n")
    .map((line) => line.split(":"))
    .find((parts) => parts[1]?.split(",").includes("memory"));
  if (v1 !== undefined && own !== undefined) {
    const path = own.slice(2).join(":");
    // The mount may show only a sub-tree (its `root`); our path is relative to that.
    const base = join(v1.mountPoint, relative(v1.root, path));
    if (await writable(base)) return { version: 1, base };
  }
  return undefined;
}

/** Processes and threads one instance may have at once: the Docker driver's `PidsLimit`, for the same reason. */
export const DEFAULT_PIDS_LIMIT = 256;

let v1PidsBase: Promise<string | undefined> | undefined;

/**
 * cgroup v1 keeps the pids controller in a hierarchy of its own: the writable pids cgroup of this process,
 * under which each instance gets a twin of its memory cgroup (same `funcd/<runKey>/<id>` suffix).
 */
function findV1PidsBase(): Promise<string | undefined> {
  v1PidsBase ??= (async () => {
    const [mountText, cgroupText] = await Promise.all([
      readFile("/proc/self/mountinfo", "utf8").catch(() => ""),
      readFile("/proc/self/cgroup", "utf8").catch(() => ""),
    ]);
    const mount = parseMountInfo(mountText).find(
      (m) => m.fsType === "cgroup" && m.superOptions.includes("pids"),
    );
    const own = cgroupText
      .split("\n")
      .map((line) => line.split(":"))
      .find((parts) => parts[1]?.split(",").includes("pids"));
    if (mount === undefined || own === undefined) return undefined;
    const base = join(mount.mountPoint, relative(mount.root, own.slice(2).join(":")));
    return (await writable(base)) ? base : undefined;
  })();
  return v1PidsBase;
}

/** The v1 pids twin of a memory cgroup path under `…/funcd/…`, when a pids hierarchy is writable. */
async function v1PidsTwin(memoryPath: string): Promise<string | undefined> {
  const at = memoryPath.lastIndexOf("/funcd/");
  const base = at < 0 ? undefined : await findV1PidsBase();
  return base === undefined ? undefined : join(base, memoryPath.slice(at));
}

async function enableMemoryController(dir: string): Promise<void> {
  const file = join(dir, "cgroup.subtree_control");
  const current = await readFile(file, "utf8");
  if (!current.split(/\s+/).includes("memory")) await writeFile(file, "+memory");
  // The pids controller where the kernel offers it; without it instances get no process limit (v2 only).
  if (!current.split(/\s+/).includes("pids")) await writeFile(file, "+pids").catch(() => undefined);
}

/**
 * The parent of one driver's instance cgroups: `<base>/funcd/<runKey>`. The run key (derived from the
 * run dir) keeps two daemons, or two test drivers, from sharing — and reconciling — each other's cgroups,
 * and keeps equal instance ids of different daemons apart.
 */
export async function prepareCgroupParent(root: CgroupRoot, runKey: string): Promise<string> {
  const funcd = join(root.base, "funcd");
  const parent = join(funcd, runKey);
  if (root.version === 2) await enableMemoryController(root.base);
  await mkdir(funcd, { recursive: true });
  if (root.version === 2) await enableMemoryController(funcd);
  await mkdir(parent, { recursive: true });
  if (root.version === 2) await enableMemoryController(parent);
  // Prove that a limit can be set before relying on it for every start.
  const probe = await InstanceCgroup.create(root.version, parent, `.probe-${process.pid}`, 64 * 1024 * 1024);
  await probe.remove();
  return parent;
}

/** The names of the instance cgroups under a parent (for reconcile). */
export async function listCgroups(parent: string): Promise<string[]> {
  const entries = await readdir(parent, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory()).map((e) => e.name);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One instance's memory cgroup. */
export class InstanceCgroup {
  /** v1: the instance's cgroup in the pids hierarchy (v2 keeps `pids.max` in `path` itself). */
  #pidsPath: string | undefined;

  private constructor(
    readonly version: 1 | 2,
    readonly path: string,
  ) {}

  /**
   * Creates the cgroup and sets its limits: memory (swap capped too, so the limit cannot be dodged into
   * swap) and processes + threads (`pidsLimit`), so a fork bomb stops at the limit with EAGAIN.
   */
  static async create(
    version: 1 | 2,
    parent: string,
    name: string,
    limitBytes: number,
    pidsLimit = DEFAULT_PIDS_LIMIT,
  ): Promise<InstanceCgroup> {
    const path = join(parent, name);
    await mkdir(path);
    const cgroup = new InstanceCgroup(version, path);
    try {
      if (version === 2) {
        await writeFile(join(path, "pids.max"), String(pidsLimit)).catch(ignoreMissing);
        await writeFile(join(path, "memory.max"), String(limitBytes));
        await writeFile(join(path, "memory.swap.max"), "0").catch(ignoreMissing);
        // Kill the whole instance at once rather than leave a runtime without the child it just lost.
        await writeFile(join(path, "memory.oom.group"), "1").catch(ignoreMissing);
      } else {
        const pids = await v1PidsTwin(path);
        if (pids !== undefined) {
          await mkdir(pids, { recursive: true });
          cgroup.#pidsPath = pids;
          await writeFile(join(pids, "pids.max"), String(pidsLimit));
        }
        await writeFile(join(path, "memory.limit_in_bytes"), String(limitBytes));
        // memsw (memory + swap) exists only with swap accounting; it must be set after the plain limit.
        await writeFile(join(path, "memory.memsw.limit_in_bytes"), String(limitBytes)).catch(ignoreMissing);
      }
    } catch (err) {
      await cgroup.remove().catch(() => undefined);
      throw err;
    }
    return cgroup;
  }

  /** Opens an existing cgroup (reconcile) without touching its settings. */
  static open(version: 1 | 2, path: string): InstanceCgroup {
    return new InstanceCgroup(version, path);
  }

  /**
   * Wraps `argv` so the child moves itself into this cgroup and only then execs the real command: every
   * page the runtime ever allocates is charged to the instance, none escapes before a post-spawn move.
   * Exit code 125 with the `funcd:` line on stderr means the move failed.
   */
  wrap(argv: string[]): string[] {
    const enter = (dir: string) =>
      `echo $$ > "${dir}/cgroup.procs" || { echo "funcd: cannot enter cgroup ${dir}" >&2; exit 125; }`;
    if (this.#pidsPath === undefined)
      return ["/bin/sh", "-c", `${enter("$0")}; exec "$@"`, this.path, ...argv];
    return [
      "/bin/sh",
      "-c",
      `${enter("$0")}; ${enter("$1")}; shift; exec "$@"`,
      this.path,
      this.#pidsPath,
      ...argv,
    ];
  }

  /** True when the kernel's OOM killer killed a process of this cgroup. */
  async oomKilled(): Promise<boolean> {
    const file = this.version === 2 ? "memory.events" : "memory.oom_control";
    const text = await readFile(join(this.path, file), "utf8").catch(() => "");
    const match = /^oom_kill (\d+)/m.exec(text);
    return match !== null && Number(match[1]) > 0;
  }

  async pids(): Promise<number[]> {
    const text = await readFile(join(this.path, "cgroup.procs"), "utf8").catch(() => "");
    return text.split("\n").filter(Boolean).map(Number);
  }

  /** SIGKILLs every process in the cgroup, including any that left the instance's process group. */
  async kill(): Promise<void> {
    if (this.version === 2) await writeFile(join(this.path, "cgroup.kill"), "1").catch(() => undefined);
    // A process may fork while we kill, and a killed process with much memory takes a while to leave
    // (longer on a loaded machine): repeat until the cgroup is empty, bounded by time, not rounds.
    const deadline = Date.now() + 3000;
    for (let round = 0; Date.now() < deadline; round++) {
      const pids = await this.pids();
      if (pids.length === 0) return;
      signalAll(pids, "SIGKILL");
      await sleep(round < 5 ? 2 : 20);
    }
  }

  /** Removes the cgroup (and its v1 pids twin); retries briefly: exiting processes leave it a moment late. */
  async remove(): Promise<void> {
    await this.#removeDir(this.path);
    const pids = this.#pidsPath ?? (this.version === 1 ? await v1PidsTwin(this.path) : undefined);
    if (pids !== undefined) await this.#removeDir(pids);
  }

  async #removeDir(dir: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await rmdir(dir);
        return;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ENOENT") return;
        if (code !== "EBUSY" || attempt >= 12) throw err;
        if (attempt === 4) await this.kill();
        await sleep(Math.min(5 * 2 ** attempt, 200));
      }
    }
  }
}

function ignoreMissing(err: unknown): void {
  if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
}

/**
 * Interpreter flags that make a runtime collect garbage before the hard limit instead of being killed
 * at it, keyed by the interpreter's name. Node's old space gets about 75% of the limit; the rest is
 * left for code, buffers and the runtime itself.
 */
export function heapFlags(interpreter: string, memoryMb: number): string[] {
  if (interpreter === "node" || interpreter === "nodejs") {
    return [`--max-old-space-size=${Math.max(16, Math.floor(memoryMb * 0.75))}`];
  }
  return [];
}

/**
 * Polls the resident memory of a process tree (every 250 ms by default) and calls `onExceeded` once
 * when it passes the limit. The fallback where no cgroup is available.
 */
export class RssWatchdog {
  private readonly timer: NodeJS.Timeout;
  private busy = false;
  private fired = false;

  constructor(
    private readonly rootPid: number,
    private readonly limitBytes: number,
    private readonly onExceeded: (rss: number) => void,
    intervalMs = 250,
  ) {
    this.timer = setInterval(() => void this.tick(), intervalMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.busy || this.fired) return;
    this.busy = true;
    try {
      const pids = await processTree(this.rootPid);
      const sizes = await Promise.all(pids.map(rssBytes));
      const total = sizes.reduce((a, b) => a + b, 0);
      if (total > this.limitBytes && !this.fired) {
        this.fired = true;
        this.stop();
        this.onExceeded(total);
      }
    } finally {
      this.busy = false;
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
