import { existsSync } from "node:fs";
import {
  chmod,
  copyFile,
  link,
  lstat,
  mkdir,
  readdir,
  readlink,
  rename,
  rm,
  symlink,
  writeFile,
} from "node:fs/promises";
import path from "node:path";
import { FuncdError } from "../shared/errors.js";
import type { BlobRepo, ManifestEntry } from "../store/types.js";

/**
 * The process driver's artifacts: one prepared folder per revision, written
 * from the blob store. Content-addressed, so an unchanged revision is a
 * directory that already exists and costs nothing to "build" again. Installed
 * dependencies are hard-linked in from the dependency cache: each folder is
 * self-contained (the sandbox mounts only it) while the disk holds one copy.
 */
export class ArtifactCache {
  readonly #root: string;
  readonly #blobs: BlobRepo;

  constructor(root: string, blobs: BlobRepo) {
    this.#root = root;
    this.#blobs = blobs;
  }

  dirFor(revisionId: string): string {
    return path.join(this.#root, revisionId);
  }

  has(revisionId: string): boolean {
    return existsSync(this.dirFor(revisionId));
  }

  /**
   * Writes the revision's files (atomically: temp dir, then rename) unless they are there already, then
   * links in `depsDir`'s contents (a dependency cache entry) over them.
   */
  async materialize(revisionId: string, files: ManifestEntry[], depsDir?: string): Promise<string> {
    const dir = this.dirFor(revisionId);
    if (existsSync(dir)) return dir;
    await mkdir(this.#root, { recursive: true, mode: 0o711 });
    const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
    try {
      for (const file of files) {
        const data = this.#blobs.get(file.hash);
        if (!data)
          throw new FuncdError("INTERNAL", `Blob ${file.hash} of ${file.path} is missing from the store`);
        const target = path.join(tmp, file.path);
        await mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
        await writeFile(target, data, { mode: file.mode & 0o755 });
      }
      await mkdir(tmp, { recursive: true });
      if (depsDir !== undefined) await linkTree(depsDir, tmp);
      await chmod(tmp, 0o755);
      await rename(tmp, dir);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      // Another deploy of the same content won the race: its folder is as good as ours.
      if (existsSync(dir)) return dir;
      throw err;
    }
    return dir;
  }

  async remove(revisionId: string): Promise<void> {
    await rm(this.dirFor(revisionId), { recursive: true, force: true });
  }
}

/**
 * `cp -al src/. dest`: recreates `src`'s folders under `dest` and hard-links its files (symlinks are
 * copied as symlinks), falling back to copying a file when linking is impossible (another filesystem).
 * What exists in `dest` is merged with: a folder is entered, a file or link is replaced.
 */
export async function linkTree(src: string, dest: string): Promise<void> {
  await mkdir(dest, { recursive: true });
  const entries = await readdir(src, { withFileTypes: true });
  await Promise.all(
    entries.map(async (entry) => {
      const from = path.join(src, entry.name);
      const to = path.join(dest, entry.name);
      if (entry.isDirectory()) {
        const existing = await lstat(to).catch(() => undefined);
        if (existing !== undefined && !existing.isDirectory()) await rm(to, { recursive: true, force: true });
        await mkdir(to, { recursive: true });
        await linkTree(from, to);
        await chmod(to, (await lstat(from)).mode & 0o7777);
        return;
      }
      const place = entry.isSymbolicLink()
        ? async () => symlink(await readlink(from), to)
        : () => linkOrCopy(from, to);
      try {
        await place();
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        // The uploaded code has something of the same name: the installed dependency wins.
        await rm(to, { recursive: true, force: true });
        await place();
      }
    }),
  );
}

async function linkOrCopy(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
  } catch (err) {
    // EXDEV: another filesystem; EPERM: one without hard links (or a protected_hardlinks refusal).
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "EXDEV" && code !== "EPERM" && code !== "EMLINK") throw err;
    await copyFile(from, to);
    await chmod(to, (await lstat(from)).mode & 0o7777);
  }
}
