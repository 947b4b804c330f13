import { existsSync } from "node:fs";
import { chmod, mkdir, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { FuncdError } from "../shared/errors.js";
import type { BlobRepo, ManifestEntry } from "../store/types.js";

/**
 * The process driver's artifacts: one prepared folder per revision, written
 * from the blob store. Content-addressed, so an unchanged revision is a
 * directory that already exists and costs nothing to "build" again.
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

  /** Writes the revision's files (atomically: temp dir, then rename) unless they are there already. */
  async materialize(revisionId: string, files: ManifestEntry[]): Promise<string> {
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
