/**
 * The run dir: one sub-dir per instance, which is how a restarted daemon finds what an earlier run left
 * behind. Layout of `<runDir>/<instanceId>/`:
 *
 *   meta.json   written before the spawn: who the instance is and which cgroup it uses (daemon-only, 0600)
 *   pid         written after the spawn: `<pid> <start time>` of the instance's first process (0600)
 *   run/        the instance's socket dir, owned by its uid and mounted writable at /run/funcd
 *   run/sock    the runtime's unix socket
 *   function-slot/  generic (warm pool) instances only: root 0755, empty until specialization fills it
 *               with the function's files; mounted read-only at /function in place of an artifact dir
 *
 * The bookkeeping files sit beside `run/`, not inside it, so the function cannot rewrite the pid a
 * later reconcile will kill.
 */
import { createHash } from "node:crypto";
import { chmod, chown, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { UidAccess } from "./access.js";
import { InstanceCgroup } from "./memory.js";
import {
  commandAndEnvironment,
  isRunning,
  processTree,
  readStat,
  signalAll,
  signalGroup,
} from "./proctree.js";

export interface InstanceMeta {
  instanceId: string;
  functionName: string;
  revisionId: string;
  runtime: string;
  createdAt: number;
  cgroup?: { version: 1 | 2; path: string };
  /** Set while the instance is a generic pool instance: the runtime it booted. */
  generic?: string;
}

/**
 * The dir name of an instance: its id, or for a long id a shortened form with a hash of the whole id,
 * because the socket path inside must stay under the 107 bytes Linux allows a unix socket path.
 */
export function instanceDirName(instanceId: string): string {
  if (instanceId.length <= 40) return instanceId;
  return `${instanceId.slice(0, 27)}-${createHash("sha256").update(instanceId).digest("hex").slice(0, 12)}`;
}

/** The paths of one instance inside the run dir. */
export function instancePaths(runDir: string, instanceId: string) {
  const dir = join(runDir, instanceDirName(instanceId));
  const socketDir = join(dir, "run");
  return {
    dir,
    socketDir,
    socketPath: join(socketDir, "sock"),
    meta: join(dir, "meta.json"),
    pid: join(dir, "pid"),
    slotDir: join(dir, "function-slot"),
  };
}

/**
 * Creates the run dir. With a root daemon it is made searchable (0711: not listable) along with its
 * ancestors, because instance uids must reach their own `run/` dir in it.
 */
export async function prepareRunDir(runDir: string, access: UidAccess | undefined): Promise<void> {
  await mkdir(runDir, { recursive: true, mode: 0o700 });
  if (access === undefined) return;
  const { mode } = await stat(runDir);
  await chmod(runDir, (mode & 0o7777) | 0o711);
  await access.makeSearchable([dirname(runDir)]);
}

/** What an instance uid must be able to reach and read (only when the daemon is root). */
export interface InstanceAccess {
  grant: UidAccess;
  uid: number;
  /** Folders the uid must be able to walk to (their ancestors become searchable). */
  reachable: string[];
  /** The function's files, which the uid must be able to read (none for a generic instance's empty slot). */
  readable?: string;
}

/**
 * Creates `<runDir>/<id>/` (bookkeeping, daemon-only) and its `run/` owned by the instance uid (0700),
 * and makes the template, interpreter and function files reachable and readable by that uid. With
 * `slot`, also the empty `function-slot/` of a generic instance (root, 0755: readable, not writable).
 */
export async function prepareInstanceDir(
  paths: ReturnType<typeof instancePaths>,
  access: InstanceAccess | undefined,
  slot = false,
): Promise<void> {
  // A dir of the same name is a leftover of a crashed daemon whose reconcile has not run yet.
  await rm(paths.dir, { recursive: true, force: true });
  await mkdir(paths.socketDir, { recursive: true, mode: 0o700 });
  if (slot) {
    await mkdir(paths.slotDir, { mode: 0o755 });
    // Whatever the umask did: the instance must be able to list and read its future code.
    await chmod(paths.slotDir, 0o755);
  }
  if (access === undefined) return;
  await chmod(paths.dir, 0o711);
  await chown(paths.socketDir, access.uid, access.uid);
  const readable = access.readable;
  await access.grant.makeSearchable(
    readable === undefined ? access.reachable : [...access.reachable, dirname(readable)],
  );
  if (readable !== undefined) await access.grant.makeReadable(readable, access.uid);
}

export async function writeMeta(path: string, meta: InstanceMeta): Promise<void> {
  await writeFile(path, `${JSON.stringify(meta)}\n`, { mode: 0o600 });
}

export async function writePid(path: string, pid: number, startTime: number | undefined): Promise<void> {
  await writeFile(path, `${pid} ${startTime ?? ""}\n`, { mode: 0o600 });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Removes what one earlier instance left: its processes (only when the recorded pid still belongs to
 * that instance — same start time, and its command line or environment names the instance dir — so a
 * reused pid is never killed), its cgroup and its dir.
 */
export async function removeLeftover(dir: string): Promise<void> {
  const meta = await readFile(join(dir, "meta.json"), "utf8")
    .then((text) => JSON.parse(text) as InstanceMeta)
    .catch(() => undefined);
  const pidText = await readFile(join(dir, "pid"), "utf8").catch(() => "");
  const [pidField, startField] = pidText.trim().split(" ");
  const pid = Number(pidField);
  if (Number.isInteger(pid) && pid > 1) {
    const stat = await readStat(pid);
    const sameProcess =
      stat !== undefined &&
      (startField === undefined || startField === "" || Number(startField) === stat.startTime) &&
      (await commandAndEnvironment(pid)).includes(dir);
    if (sameProcess && (await isRunning(pid))) {
      const tree = await processTree(pid);
      signalAll(tree, "SIGKILL");
      signalGroup(pid, "SIGKILL");
      // Wait for the whole tree, not only its root: under load the runtime inside the sandbox can
      // outlive its parent by a few milliseconds, and "removed" must mean nothing of it runs.
      const anyRunning = async () => (await Promise.all(tree.map((p) => isRunning(p)))).some(Boolean);
      for (let i = 0; i < 200 && (await anyRunning()); i++) await sleep(10);
    }
  }
  // Only ever a cgroup funcd made: a corrupted meta.json must not send SIGKILL elsewhere.
  if (meta?.cgroup?.path.includes("/funcd/")) {
    const cgroup = InstanceCgroup.open(meta.cgroup.version, meta.cgroup.path);
    await cgroup.kill();
    await cgroup.remove().catch(() => undefined);
  }
  await rm(dir, { recursive: true, force: true });
}
