/**
 * File permissions an unprivileged instance uid needs on the host. Only used when the daemon runs as
 * root: bwrap then runs as the instance's uid and resolves its bind sources with that uid's permissions
 * (even `--bind-fd` re-resolves the path), and without bwrap the runtime opens the paths itself — so
 * the uid must be able to walk to its function, its runtime and its socket dir, and read its code.
 */
import { chmod, lchown, lstat, readdir, realpath } from "node:fs/promises";
import { dirname, isAbsolute, join, relative } from "node:path";
import type { Logger } from "pino";
import { FuncdError } from "../../shared/errors.js";

/** Grants instance uids what they need, once per path and driver, logging every change it makes. */
export class UidAccess {
  private readonly searchable = new Set<string>();
  private readonly readable = new Map<string, number>();

  /**
   * @param owned the folders funcd owns (the data dir, its copy of the templates): modes may change inside
   * them, never outside — a folder above them that others cannot search is the user's to open, and
   * the start of an instance that needs it fails saying so.
   */
  constructor(
    private readonly logger: Logger,
    private readonly owned: readonly string[],
  ) {}

  #isOwned(dir: string): boolean {
    return this.owned.some((root) => {
      const rel = relative(root, dir);
      return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
    });
  }

  /**
   * Makes each of `paths` and its ancestors searchable (o+x) by other users. Directories stay
   * unlistable (no o+r): what lies inside stays private unless its name is known and its own mode
   * allows — which is why the daemon's own secrets must be mode 0600.
   */
  async makeSearchable(paths: string[]): Promise<void> {
    for (const path of paths) {
      if (this.searchable.has(path)) continue;
      // Walk the real path: a symlinked ancestor's target needs the permission, not the link.
      const real = await realpath(path);
      const chain: string[] = [];
      for (let dir = real; !this.searchable.has(dir); dir = dirname(dir)) {
        chain.push(dir);
        if (dir === "/") break;
      }
      for (const dir of chain.reverse()) {
        const stats = await lstat(dir);
        if ((stats.mode & 0o001) === 0) {
          if (!this.#isOwned(dir)) {
            const mode = (stats.mode & 0o777).toString(8).padStart(4, "0");
            throw new FuncdError(
              "DATA_DIR_UNREACHABLE",
              `Sandboxed functions run as their own uids and must reach ${path}, but ${dir} is not searchable by other users (mode ${mode}); funcd does not change modes outside its data dir. Move it (or the data dir: --data-dir, FUNCD_DATA_DIR) below a folder others can search, or allow it yourself: chmod o+x ${dir}`,
            );
          }
          await chmod(dir, (stats.mode & 0o7777) | 0o001);
          this.logger.debug({ dir }, "made a folder of the data dir searchable by sandboxed uids (o+x)");
        }
        this.searchable.add(dir);
      }
      this.searchable.add(path);
    }
  }

  /**
   * Makes a function's files readable by its uid (`gid` is the uid's own group). Entries that are
   * already world-readable (the builder's usual 0755/0644) are left alone, so several functions may
   * share an artifact. Any other entry (a 0600 file, a mkdtemp folder) gets group `gid` with group read
   * (and search/execute where the owner has it) and no group write: the function can read its code but
   * not change it. Walked once per folder and driver, since artifacts are immutable once built.
   */
  async makeReadable(dir: string, gid: number): Promise<void> {
    if (this.readable.get(dir) === gid) return;
    const visit = async (path: string): Promise<void> => {
      const stats = await lstat(path);
      if (stats.isSymbolicLink()) return;
      const isDir = stats.isDirectory();
      if (isDir) {
        const entries = await readdir(path);
        await Promise.all(entries.map((name) => visit(join(path, name))));
      }
      const needsExec = isDir || (stats.mode & 0o100) !== 0;
      const worldReadable = (stats.mode & 0o004) !== 0 && (!needsExec || (stats.mode & 0o001) !== 0);
      if (worldReadable) return;
      await lchown(path, -1, gid);
      await chmod(path, (stats.mode & 0o7777 & ~0o020) | 0o040 | (needsExec ? 0o010 : 0));
    };
    await visit(dir);
    this.readable.set(dir, gid);
  }
}
