/**
 * Specializing a generic (warm pool) instance: its sandbox already shows the instance's empty
 * `function-slot/` read-only at /function, so putting the function's files into that dir on the host is
 * all it takes for the sandbox to see them; then the runtime is told to load the handler
 * (`../common/specialize-request.ts`). The Docker driver fills its pool containers' slots the same way.
 *
 * Files are hard-linked rather than copied: a link is one syscall whatever the file's size, and the
 * artifact (and the dependency cache linked into it) is immutable, so sharing inodes is safe. A file the
 * pool uid could not read through its own mode (not world-readable: the artifact relies on a function
 * gid the pool uid does not have) is copied instead and given the slot's gid — changing the shared
 * inode would change it for the function's other instances. Across file systems (EXDEV), or where
 * linking is not allowed (EPERM, protected_hardlinks for a non-root daemon), files are copied too.
 *
 * A typical function is a handful of files, and a specialization sits on a cold start's path: each
 * asynchronous fs call there costs a thread-pool round trip (0.1–0.5 ms on a busy small machine), more
 * than the call itself. So the first entries are done synchronously — microseconds each, a bounded
 * block of the event loop — and only a big tree (a node_modules) continues asynchronously.
 */

import {
  chmodSync,
  chownSync,
  copyFileSync,
  type Dirent,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  symlinkSync,
} from "node:fs";
import { chmod, chown, copyFile, link, lstat, mkdir, readdir, readlink, symlink } from "node:fs/promises";
import { join } from "node:path";

/** Whether others may read `mode` (and search/execute it where that is needed). */
function worldReadable(mode: number, needsExec: boolean): boolean {
  return (mode & 0o004) !== 0 && (!needsExec || (mode & 0o001) !== 0);
}

/** The mode of a copy only its owner (the daemon) and the slot's group may read; nobody else. */
function groupReadableMode(mode: number, needsExec: boolean): number {
  return (mode & 0o700) | 0o040 | (needsExec ? 0o010 : 0);
}

/** Entries handled synchronously before the rest of a tree goes asynchronous. */
const SYNC_BUDGET = 256;

/** One directory entry still to place: its source, its place in the slot, and what it is. */
type Pending = [source: string, target: string, entry: Dirent];

/**
 * Fills the empty `slotDir` with the files of `artifactDir`. `gid` is the pool uid's own group when the
 * daemon is root (instances then run as another uid); undefined otherwise (they run as the daemon).
 */
export async function fillSlot(artifactDir: string, slotDir: string, gid: number | undefined): Promise<void> {
  const budget = { left: SYNC_BUDGET };
  const rest: Pending[] = [];
  fillSync(artifactDir, slotDir, gid, budget, rest);
  await Promise.all(rest.map(([source, target, entry]) => placeAsync(source, target, entry, gid)));
}

/** The synchronous part, entry by entry while the budget lasts; the entries after it go to `rest`. */
function fillSync(
  from: string,
  to: string,
  gid: number | undefined,
  budget: { left: number },
  rest: Pending[],
): void {
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const source = join(from, entry.name);
    const target = join(to, entry.name);
    if (budget.left <= 0) {
      rest.push([source, target, entry]);
      continue;
    }
    budget.left--;
    if (entry.isSymbolicLink()) {
      symlinkSync(readlinkSync(source), target);
    } else if (entry.isDirectory()) {
      const { mode } = lstatSync(source);
      mkdirSync(target);
      fillSync(source, target, gid, budget, rest);
      const open = gid === undefined || worldReadable(mode, true);
      if (!open) chownSync(target, -1, gid);
      chmodSync(target, open ? 0o755 : groupReadableMode(mode, true));
    } else if (entry.isFile()) {
      const { mode } = lstatSync(source);
      const needsExec = (mode & 0o100) !== 0;
      if (gid === undefined || worldReadable(mode, needsExec)) {
        try {
          linkSync(source, target);
          continue;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code !== "EXDEV" && code !== "EPERM") throw err;
        }
        copyFileSync(source, target);
        chmodSync(target, mode & 0o7777 & ~0o022);
      } else {
        copyFileSync(source, target);
        chownSync(target, -1, gid);
        chmodSync(target, groupReadableMode(mode, needsExec));
      }
    }
  }
}

/** The same for one entry, asynchronously: what is left of a big tree. */
async function placeAsync(
  source: string,
  target: string,
  entry: Dirent,
  gid: number | undefined,
): Promise<void> {
  if (entry.isSymbolicLink()) {
    await symlink(await readlink(source), target);
    return;
  }
  if (entry.isDirectory()) {
    const { mode } = await lstat(source);
    const open = gid === undefined || worldReadable(mode, true);
    await mkdir(target);
    const entries = await readdir(source, { withFileTypes: true });
    await Promise.all(entries.map((e) => placeAsync(join(source, e.name), join(target, e.name), e, gid)));
    if (!open) await chown(target, -1, gid);
    await chmod(target, open ? 0o755 : groupReadableMode(mode, true));
    return;
  }
  if (!entry.isFile()) return;
  const { mode } = await lstat(source);
  const needsExec = (mode & 0o100) !== 0;
  if (gid === undefined || worldReadable(mode, needsExec)) {
    try {
      await link(source, target);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "EXDEV" && code !== "EPERM") throw err;
    }
    await copyFile(source, target);
    await chmod(target, mode & 0o7777 & ~0o022);
    return;
  }
  await copyFile(source, target);
  await chown(target, -1, gid);
  await chmod(target, groupReadableMode(mode, needsExec));
}
