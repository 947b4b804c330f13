/**
 * The process sandbox: bubblewrap namespaces that show an instance only /usr, a few files of /etc, its
 * runtime, its own function and its socket dir — plus the privilege drop to a per-function uid when the
 * daemon runs as root. bwrap then runs unprivileged (it builds its mounts inside a user namespace), so
 * no setuid helper is involved.
 */
import { execFile } from "node:child_process";
import { lstatSync, readlinkSync } from "node:fs";
import { FuncdError } from "../../shared/errors.js";
import { SECRETS_MOUNT } from "../secrets/files.js";
import { which } from "./interpreter.js";

/** `bwrap` requires bubblewrap, `none` runs the runtime directly, `auto` uses bwrap when it works. */
export type SandboxMode = "auto" | "bwrap" | "none";

/** Where the sandbox places an instance's parts. The runtime contract's env points at these. */
export const SANDBOX_PATHS = {
  runtime: "/runtime",
  function: "/function",
  run: "/run/funcd",
  secrets: SECRETS_MOUNT,
} as const;

/** Default first uid of the range per-function uids are taken from (uidBase … uidBase + 49 999). */
export const DEFAULT_UID_BASE = 200_000;
const UID_RANGE = 50_000;

/**
 * The uid (and gid) a function's instances run as when the daemon is root: stable across restarts, and
 * different for different functions (up to hash collisions in a range of 50 000), so one function's
 * processes can neither signal another's nor read files only another's uid may read.
 */
export function uidFor(functionName: string, uidBase = DEFAULT_UID_BASE): number {
  // FNV-1a: tiny, stable and spread well enough for short names.
  let hash = 0x811c9dc5;
  for (let i = 0; i < functionName.length; i++) {
    hash ^= functionName.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return uidBase + (hash % UID_RANGE);
}

/**
 * How many uids the warm pool's slots may use. They follow the per-function range (uidBase + 50 000 …
 * uidBase + 59 999): a pool instance runs as a uid no function started normally ever has, and each live
 * pool instance has its own, so two functions specialized from the pool never share a uid.
 */
export const POOL_UID_RANGE = 10_000;

/** The first pool slot uid and how many there are, for a given uid base. */
export function poolUidRange(uidBase = DEFAULT_UID_BASE): { first: number; size: number } {
  return { first: uidBase + UID_RANGE, size: POOL_UID_RANGE };
}

/**
 * The pool slot uids a driver has handed out: one per live generic (or specialized-from-the-pool)
 * instance, taken when it starts and given back only once its processes are gone. Handed out round
 * the range from a random start, so a uid comes back only after all the others were used: with bwrap
 * nothing of an instance outlives it, but without the sandbox a function could leave files owned by its
 * uid in a world-writable host dir, and the next function with that uid would own them.
 */
export class PoolUids {
  private readonly inUse = new Set<number>();
  private next: number;

  constructor(private readonly uidBase = DEFAULT_UID_BASE) {
    this.next = Math.floor(Math.random() * POOL_UID_RANGE);
  }

  /** The next free pool uid. */
  take(): number {
    const { first, size } = poolUidRange(this.uidBase);
    for (let i = 0; i < size; i++) {
      const offset = (this.next + i) % size;
      if (!this.inUse.has(first + offset)) {
        this.inUse.add(first + offset);
        this.next = (offset + 1) % size;
        return first + offset;
      }
    }
    throw new FuncdError("SANDBOX_UNAVAILABLE", `All ${size} pool uids from ${first} on are in use`);
  }

  release(uid: number | undefined): void {
    if (uid !== undefined) this.inUse.delete(uid);
  }
}

/** True when this process may switch to other uids (and so must, before running user code). */
export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Host directories linked or bound read-only next to /usr, found once from what exists on this host. */
const SYSTEM_DIRS = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/** Files of /etc a runtime needs for DNS, TLS, time zones and user names — not the rest of /etc. */
const ETC_FILES = [
  "/etc/resolv.conf",
  "/etc/hosts",
  "/etc/nsswitch.conf",
  "/etc/host.conf",
  "/etc/gai.conf",
  "/etc/ssl",
  "/etc/ca-certificates",
  "/etc/pki",
  "/etc/localtime",
  "/etc/passwd",
  "/etc/group",
];

let systemArgs: string[] | undefined;

/** The part of the bwrap command line that is the same for every instance. */
function baseArgs(): string[] {
  if (systemArgs !== undefined) return systemArgs;
  const args = [
    "--unshare-all",
    "--share-net",
    // Be explicit: unshare-all only *tries* a user namespace, and --disable-userns needs one.
    "--unshare-user",
    // Nested user namespaces are kernel attack surface a function does not need.
    "--disable-userns",
    "--die-with-parent",
    // A new session: the function cannot push input into the daemon's terminal (TIOCSTI).
    "--new-session",
    "--ro-bind",
    "/usr",
    "/usr",
  ];
  for (const name of SYSTEM_DIRS) {
    const path = `/${name}`;
    let stats: ReturnType<typeof lstatSync>;
    try {
      stats = lstatSync(path);
    } catch {
      continue;
    }
    // Merged-/usr hosts (Debian 12 and most others) make these symlinks into /usr; mirror that.
    if (stats.isSymbolicLink()) args.push("--symlink", readlinkSync(path), path);
    else if (stats.isDirectory()) args.push("--ro-bind", path, path);
  }
  for (const file of ETC_FILES) args.push("--ro-bind-try", file, file);
  args.push("--proc", "/proc", "--dev", "/dev");
  systemArgs = args;
  return args;
}

/** What one instance's sandbox shows besides the system parts. */
export interface SandboxMounts {
  /** The runtime template folder, read-only at /runtime. */
  templateDir: string;
  /** The function's files, read-only at /function. */
  artifactDir: string;
  /** The instance's socket dir, writable at /run/funcd. */
  socketDir: string;
  /** An interpreter install prefix outside /usr, read-only at the same path. */
  interpreterPrefix?: string;
  /** Size cap of the private /tmp (tmpfs is memory, so this is the memory limit). */
  tmpBytes: number;
  /** The instance's secret files (a folder on a tmpfs), read-only at /var/secrets. */
  secretsDir?: string;
}

/** The bwrap argv (without the command) for one instance. */
export function bwrapArgs(bwrap: string, mounts: SandboxMounts): string[] {
  const args = [bwrap, ...baseArgs(), "--size", String(mounts.tmpBytes), "--tmpfs", "/tmp"];
  if (mounts.interpreterPrefix !== undefined)
    args.push("--ro-bind", mounts.interpreterPrefix, mounts.interpreterPrefix);
  args.push(
    "--ro-bind",
    mounts.templateDir,
    SANDBOX_PATHS.runtime,
    "--ro-bind",
    mounts.artifactDir,
    SANDBOX_PATHS.function,
    "--bind",
    mounts.socketDir,
    SANDBOX_PATHS.run,
    ...(mounts.secretsDir === undefined ? [] : ["--ro-bind", mounts.secretsDir, SANDBOX_PATHS.secrets]),
    "--chdir",
    SANDBOX_PATHS.function,
    "--",
  );
  return args;
}

/**
 * The argv prefix that drops root to `uid` before anything else runs: its own gid, no supplementary
 * groups, and no-new-privileges so no setuid binary can win root back.
 */
export function dropPrivilegesArgs(setpriv: string, uid: number): string[] {
  return [setpriv, `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", "--nnp", "--"];
}

/** The helper binaries, found once. */
export interface SandboxTools {
  bwrap?: string;
  setpriv?: string;
}

let tools: Promise<SandboxTools> | undefined;

export function findTools(): Promise<SandboxTools> {
  tools ??= Promise.all([which("bwrap"), which("setpriv")]).then(([bwrap, setpriv]) => ({
    ...(bwrap === undefined ? {} : { bwrap }),
    ...(setpriv === undefined ? {} : { setpriv }),
  }));
  return tools;
}

export type BwrapProbe = { ok: true; bwrap: string } | { ok: false; reason: string };

const probes = new Map<string, Promise<BwrapProbe>>();

/**
 * Whether bwrap works here with exactly the flags instances get, run the way instances run it (as
 * `uid` via setpriv when given). Tried for real once per uid and cached: user namespaces may be
 * disabled by sysctl, AppArmor or a container's seccomp profile, which no static check reveals.
 */
export function probeBwrap(uid?: number): Promise<BwrapProbe> {
  const key = String(uid ?? "self");
  let probe = probes.get(key);
  if (probe === undefined) {
    probe = runProbe(uid);
    probes.set(key, probe);
  }
  return probe;
}

async function runProbe(uid: number | undefined): Promise<BwrapProbe> {
  const { bwrap, setpriv } = await findTools();
  if (bwrap === undefined) return { ok: false, reason: "bwrap (bubblewrap) is not installed" };
  if (uid !== undefined && setpriv === undefined) {
    return {
      ok: false,
      reason: "setpriv (util-linux) is not installed, so root cannot be dropped before bwrap",
    };
  }
  const argv = [
    ...(uid !== undefined && setpriv !== undefined ? dropPrivilegesArgs(setpriv, uid) : []),
    bwrap,
    ...baseArgs(),
    "--size",
    String(1024 * 1024),
    "--tmpfs",
    "/tmp",
    "--",
    "/usr/bin/true",
  ];
  return new Promise((resolve) => {
    execFile(
      argv[0] as string,
      argv.slice(1),
      { timeout: 10_000, env: {}, cwd: "/" },
      (err, _stdout, stderr) => {
        if (err === null) resolve({ ok: true, bwrap });
        else resolve({ ok: false, reason: `bwrap failed: ${stderr.trim() || err.message}` });
      },
    );
  });
}
