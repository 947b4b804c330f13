import { lstat, readdir, realpath, stat } from "node:fs/promises";
import { join, resolve, sep } from "node:path";
import { create } from "tar";
import { usageError } from "./errors.js";

/** Folders never shipped: dependencies are installed by the daemon, history is not code. */
export const SKIPPED_DIRS: ReadonlySet<string> = new Set(["node_modules", ".git"]);

export interface PackedFolder {
  /** gzip'd tar of the function folder, paths relative to it. */
  archive: Buffer;
  /** The paths inside the archive, sorted. */
  files: string[];
}

/**
 * Lists the files of a function folder to ship. Symlinks are followed only while
 * they stay inside the folder (so a link cannot smuggle `~/.ssh` into a deploy);
 * one that leaves it is refused, naming the link and its target.
 */
export async function listFunctionFiles(dir: string): Promise<string[]> {
  const root = resolve(dir);
  let rootReal: string;
  try {
    rootReal = await realpath(root);
    if (!(await stat(rootReal)).isDirectory()) throw usageError(`${dir} is not a folder`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw usageError(`Folder ${dir} does not exist`);
    throw err;
  }
  const inside = (real: string) => real === rootReal || real.startsWith(rootReal + sep);
  const files: string[] = [];
  // Real paths of folders already walked: a link back to a parent must not loop forever.
  const seen = new Set<string>([rootReal]);

  const walk = async (abs: string, rel: string): Promise<void> => {
    const entries = await readdir(abs, { withFileTypes: true });
    for (const entry of entries) {
      const childAbs = join(abs, entry.name);
      const childRel = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        if (SKIPPED_DIRS.has(entry.name)) continue;
        seen.add(await realpath(childAbs));
        await walk(childAbs, childRel);
      } else if (entry.isFile()) {
        files.push(childRel);
      } else if (entry.isSymbolicLink()) {
        if (SKIPPED_DIRS.has(entry.name)) continue;
        let target: string;
        try {
          target = await realpath(childAbs);
        } catch {
          // A dangling link has no content to deploy (editors leave such lock links around).
          continue;
        }
        if (!inside(target)) {
          throw usageError(
            `${childRel} in ${dir} is a symlink to ${target}, outside the function folder; funcd only ships files inside it`,
            "Copy the file into the folder, or replace the link with the file itself.",
          );
        }
        const info = await lstat(target);
        if (info.isFile()) files.push(childRel);
        else if (info.isDirectory() && !seen.has(target)) {
          seen.add(target);
          await walk(childAbs, childRel);
        }
      }
      // Sockets, FIFOs and devices are not code: left out.
    }
  };
  await walk(root, "");
  return files.sort();
}

/** Packs a function folder as a .tar.gz in memory (node_modules and .git left out). */
export async function packFolder(dir: string): Promise<PackedFolder> {
  const files = await listFunctionFiles(dir);
  if (files.length === 0) throw usageError(`Folder ${dir} has no files to deploy`);
  // `follow` stores the content of in-folder links as plain files (listFunctionFiles vetted every
  // link), so the daemon never has to unpack a symlink.
  const archive = await create(
    { gzip: true, cwd: resolve(dir), portable: true, follow: true },
    files,
  ).concat();
  return { archive, files };
}

/** For progress messages: `3 files, 1.2 KiB`. */
export function describePack(packed: PackedFolder): string {
  const size = packed.archive.length;
  const human =
    size < 1024
      ? `${size} B`
      : size < 1024 * 1024
        ? `${(size / 1024).toFixed(1)} KiB`
        : `${(size / 1024 / 1024).toFixed(1)} MiB`;
  return `${packed.files.length} file${packed.files.length === 1 ? "" : "s"}, ${human}`;
}
