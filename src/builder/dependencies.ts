/**
 * The shared dependency cache: `<dataDir>/deps/<key>/` holds one install (`node_modules/`,
 * `.python_packages/`) per distinct set of dependency inputs, so functions and revisions that ask for
 * the same dependencies share one install, and a redeploy with unchanged dependencies installs nothing.
 * Artifacts hard-link the installed tree in (see `linkTree`), so the disk holds one copy.
 *
 * The key is a sha256 of: the runtime, the installer and its flavour (Node's module ABI), the dependency
 * file and its companions (lock file, `.npmrc`), and every function file under a local path the
 * dependency file points at (`./localpkg`, `-r base.txt`, `file:../vendor`, a wheel). The install sees
 * exactly those files and nothing else — its work folder is a copy of them — so an install can never
 * depend on a file the key does not cover: a reference funcd fails to recognise makes the install fail
 * loudly ("no such file"), never serve stale packages.
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, lchown, lstat, mkdir, readdir, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { UidAccess } from "../drivers/process/access.js";
import { LastLines } from "../drivers/process/output.js";
import { DEFAULT_UID_BASE, findTools, isRoot } from "../drivers/process/sandbox.js";
import { type Clock, systemClock } from "../shared/clock.js";
import { FuncdError } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import type { BlobRepo, ManifestEntry } from "../store/types.js";
import { type Installer, installEnv, installerFor, type RunOutcome, runInstall } from "./installers.js";
import type { TemplateMeta } from "./runtimes.js";

/** Bump when the key's recipe changes, so old entries are not mistaken for new ones. */
const KEY_VERSION = 1;
/** Default limit of one install. */
export const DEFAULT_INSTALL_TIMEOUT_MS = 10 * 60_000;
/** Default age under which an unused cache entry is kept (a deploy may be about to use it). */
export const DEFAULT_GC_GRACE_MS = 60 * 60_000;
/**
 * The uid installs run as when the daemon is root: just below the per-function range, so no function's
 * instances share it. Package scripts run as this uid, never as root; the finished install is handed to
 * root and made read-only for everyone else.
 */
export const INSTALL_UID = DEFAULT_UID_BASE - 1;
/** Lines of install output kept for the error of a failed install. */
const KEEP_LINES = 40;

/** What one revision needs installed. */
export interface DependencyPlan {
  key: string;
  runtime: string;
  installer: Installer;
  /** The function files the install sees (and the key covers). */
  files: ManifestEntry[];
}

export interface DependencyCacheOptions {
  /** `<dataDir>/deps`: one folder per key. */
  root: string;
  /** `<dataDir>/cache`: the package managers' download caches and the installs' home. */
  cacheDir: string;
  blobs: BlobRepo;
  logger: Logger;
  clock?: Clock;
  timeoutMs?: number;
  graceMs?: number;
  /** Uid of installs; default INSTALL_UID when the daemon is root, else the daemon's own (undefined). */
  uid?: number;
}

export interface EnsureOptions {
  /** Names the function in messages. */
  functionName: string;
  /** Status messages ("installing dependencies (npm ci)", "cache hit"). */
  onProgress?: (message: string) => void;
  /** Every line the installer prints. */
  onLine?: (line: string) => void;
}

export interface EnsuredDependencies {
  key: string;
  /** The cache entry, whose contents go to the artifact's root. */
  dir: string;
  /** True when this call installed nothing (an earlier or concurrent install served it). */
  cached: boolean;
}

/** A finished install that failed, shared by everyone who waited for it. */
class InstallFailure {
  constructor(
    readonly tool: string,
    readonly outcome: Exclude<RunOutcome, { ok: true }>,
    readonly lines: string[],
    readonly timeoutMs: number,
    readonly compiles = false,
  ) {}

  toError(functionName: string): FuncdError {
    const { outcome, tool } = this;
    const why = outcome.spawnError
      ? `${tool} could not be started: ${outcome.spawnError}`
      : outcome.timedOut
        ? `${tool} did not finish within ${formatMs(this.timeoutMs)} and was stopped`
        : outcome.signal
          ? `${tool} was killed by ${outcome.signal}`
          : `${tool} exited with ${outcome.code}`;
    // The output goes in `logs` only: quoted in the message as well, a client showing both (the CLI does)
    // printed it twice.
    const where = this.lines.length > 0 ? `; its last ${this.lines.length} lines are in logs` : "";
    const what = this.compiles
      ? `Compiling "${functionName}"`
      : `Installing dependencies of "${functionName}"`;
    return new FuncdError("DEPLOY_FAILED", `${what} failed (${why})${where}`, {
      extra: { logs: this.lines },
    });
  }
}

/** The sha256 that names an install: see the module comment for what goes in. */
export function dependencyKey(input: {
  runtime: string;
  installer: Pick<Installer, "tool" | "flavour">;
  files: readonly Pick<ManifestEntry, "path" | "hash" | "mode">[];
}): string {
  const hash = createHash("sha256");
  hash.update(JSON.stringify([KEY_VERSION, input.runtime, input.installer.tool, input.installer.flavour]));
  for (const f of [...input.files].sort((a, b) => (a.path < b.path ? -1 : 1))) {
    hash.update(`\n${f.path}\0${f.hash}\0${f.mode & 0o111 ? "x" : "-"}`);
  }
  return hash.digest("hex");
}

/**
 * What `template`'s runtime must install for a function with these files, or null when nothing: the
 * runtime has no installer, the dependency file is absent, or it asks for nothing. Throws DEPLOY_FAILED
 * when the dependency file cannot be read (a `package.json` that is not JSON).
 */
export function planDependencies(
  template: Pick<TemplateMeta, "runtime" | "dependencyFile"> & Partial<Pick<TemplateMeta, "dir" | "compile">>,
  manifest: readonly ManifestEntry[],
  read: (entry: ManifestEntry) => Buffer | undefined,
): DependencyPlan | null {
  const installer = installerFor(template);
  if (!installer) return null;
  const byPath = new Map(manifest.map((f) => [f.path, f]));
  const main = byPath.get(installer.dependencyFile);
  if (!main && !installer.always) return null;
  const text = (file: string) => {
    const entry = byPath.get(file);
    return entry === undefined ? undefined : read(entry)?.toString("utf8");
  };
  const content = main === undefined ? "" : (text(main.path) ?? "");
  if (!installer.needsInstall(content)) return null;

  const files = new Map<string, ManifestEntry>(main === undefined ? [] : [[main.path, main]]);
  for (const name of installer.companions) {
    const entry = byPath.get(name);
    if (entry) files.set(name, entry);
  }
  for (const raw of installer.localPaths(content, text)) {
    const local = path.posix.normalize(raw).replace(/\/+$/, "");
    // Outside the function folder: not ours to hash or copy (the install will say it is missing).
    if (local === ".." || local.startsWith("../") || path.posix.isAbsolute(local)) continue;
    const prefix = local === "." ? "" : `${local}/`;
    for (const f of manifest) if (f.path === local || f.path.startsWith(prefix)) files.set(f.path, f);
  }
  const chosen = [...files.values()].sort((a, b) => (a.path < b.path ? -1 : 1));
  return {
    key: dependencyKey({ runtime: template.runtime, installer, files: chosen }),
    runtime: template.runtime,
    installer,
    files: chosen,
  };
}

/** The cache of installed dependencies; see the module comment. */
export class DependencyCache {
  readonly #o: DependencyCacheOptions;
  readonly #clock: Clock;
  readonly #uid: number | undefined;
  /** Installs in progress by key: a second deploy with the same key waits for the first. */
  readonly #inflight = new Map<string, Promise<void>>();
  /** Temp folders of installs in progress (everything else named `.tmp-*` is a crash's leftover). */
  readonly #temps = new Set<string>();
  readonly #kills = new Set<() => void>();
  #access: UidAccess | undefined;
  #disposed = false;

  constructor(options: DependencyCacheOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#uid = options.uid ?? (isRoot() ? INSTALL_UID : undefined);
  }

  /** See `planDependencies`; reads the files from the blob store. */
  plan(
    template: Pick<TemplateMeta, "runtime" | "dependencyFile"> &
      Partial<Pick<TemplateMeta, "dir" | "compile">>,
    manifest: readonly ManifestEntry[],
  ) {
    return planDependencies(template, manifest, (entry) => this.#o.blobs.get(entry.hash));
  }

  dirFor(key: string): string {
    return path.join(this.#o.root, key);
  }

  /** Makes sure the plan's install exists (installing it, or waiting for a running install of it). */
  async ensure(plan: DependencyPlan, options: EnsureOptions): Promise<EnsuredDependencies> {
    const progress = options.onProgress ?? (() => {});
    const dir = this.dirFor(plan.key);
    const running = this.#inflight.get(plan.key);
    if (running === undefined && existsSync(dir)) {
      // Touch it: garbage collection spares entries used within its grace period.
      const now = new Date(this.#clock.now());
      await utimes(dir, now, now).catch(() => undefined);
      progress("dependencies unchanged (cache hit)");
      return { key: plan.key, dir, cached: true };
    }
    if (running !== undefined) {
      progress(`waiting for an install of the same dependencies (${plan.installer.tool}) to finish`);
      try {
        await running;
      } catch (err) {
        throw err instanceof InstallFailure ? err.toError(options.functionName) : err;
      }
      progress("dependencies installed by a concurrent deploy (cache hit)");
      return { key: plan.key, dir, cached: true };
    }
    const install = this.#install(plan, dir, options);
    this.#inflight.set(plan.key, install);
    try {
      await install;
    } catch (err) {
      throw err instanceof InstallFailure ? err.toError(options.functionName) : err;
    } finally {
      this.#inflight.delete(plan.key);
    }
    return { key: plan.key, dir, cached: false };
  }

  /**
   * Removes cache entries whose key is not in `inUse`, not being installed, and unused for longer than
   * the grace period; and temp folders no running install owns. Returns how many entries it removed.
   */
  async collectGarbage(inUse: ReadonlySet<string>): Promise<number> {
    const grace = this.#o.graceMs ?? DEFAULT_GC_GRACE_MS;
    let names: string[];
    try {
      names = await readdir(this.#o.root);
    } catch {
      return 0;
    }
    let removed = 0;
    for (const name of names) {
      const full = path.join(this.#o.root, name);
      if (name.startsWith(".tmp-")) {
        if (!this.#temps.has(full)) await rm(full, { recursive: true, force: true });
        continue;
      }
      if (inUse.has(name) || this.#inflight.has(name)) continue;
      const info = await stat(full).catch(() => undefined);
      if (!info || this.#clock.now() - info.mtimeMs < grace) continue;
      await rm(full, { recursive: true, force: true });
      removed++;
    }
    if (removed > 0) this.#o.logger.info({ removed }, "removed unused dependency installs");
    return removed;
  }

  /** Stops running installs (daemon shutdown); later `ensure` calls fail. */
  dispose(): void {
    this.#disposed = true;
    for (const kill of this.#kills) kill();
  }

  // ── internals ────────────────────────────────────────────────────────────

  async #install(plan: DependencyPlan, dir: string, options: EnsureOptions): Promise<void> {
    if (this.#disposed) throw new FuncdError("FUNCTION_UNAVAILABLE", "The daemon is shutting down");
    const { installer } = plan;
    await installer.check?.();
    const uid = this.#uid;
    const setpriv = uid === undefined ? undefined : (await findTools()).setpriv;
    if (uid !== undefined && setpriv === undefined) {
      throw new FuncdError(
        "DEPLOY_FAILED",
        `Cannot install the dependencies of "${options.functionName}": setpriv (util-linux) is needed to run ${installer.tool} as an unprivileged user instead of root`,
      );
    }
    const began = performance.now();
    const homes = await this.#prepareCacheDirs(uid);
    const tmp = path.join(this.#o.root, `.tmp-${plan.key.slice(0, 16)}-${randomBytes(4).toString("hex")}`);
    this.#temps.add(tmp);
    try {
      const work = path.join(tmp, "work");
      const out = path.join(tmp, "out");
      const scratch = path.join(tmp, "tmp");
      await mkdir(tmp, { mode: 0o700 });
      await Promise.all([mkdir(out, { mode: 0o755 }), mkdir(scratch, { mode: 0o700 })]);
      await this.#writeWork(work, plan.files);
      const targetDir = path.join(out, installer.target);
      if (uid !== undefined) await chownTree(tmp, uid);

      const present = new Set(plan.files.map((f) => f.path));
      const argv = installer.command({ workDir: work, targetDir, present });
      options.onProgress?.(`installing dependencies (${installer.label(present)})`);
      const lines = new LastLines(KEEP_LINES);
      let kill: (() => void) | undefined;
      const timeoutMs = this.#o.timeoutMs ?? DEFAULT_INSTALL_TIMEOUT_MS;
      const outcome = await runInstall({
        argv,
        cwd: work,
        env: installEnv(installer, {
          HOME: homes.home,
          TMPDIR: scratch,
          npm_config_cache: homes.npm,
          PIP_CACHE_DIR: homes.pip,
          PYTHONNOUSERSITE: "1",
        }),
        installer,
        uid,
        setpriv,
        timeoutMs,
        clock: this.#clock,
        onLine: (line) => {
          if (line.trim() === "") return;
          lines.push(line);
          options.onLine?.(line);
        },
        onStart: (k) => {
          kill = k;
          this.#kills.add(k);
        },
      });
      if (kill) this.#kills.delete(kill);
      if (!outcome.ok)
        throw new InstallFailure(
          installer.tool,
          outcome,
          lines.snapshot(),
          timeoutMs,
          installer.always === true,
        );

      // npm installs next to package.json; pip was given the target directly.
      const produced = path.join(work, installer.target);
      if (!existsSync(targetDir)) {
        if (existsSync(produced)) await rename(produced, targetDir);
        else await mkdir(targetDir, { mode: 0o755 });
      }
      await sealTree(out, uid !== undefined);
      await rename(out, dir).catch((err: NodeJS.ErrnoException) => {
        // Only one install per key runs in this process; a folder there now is as good as ours.
        if (!existsSync(dir)) throw err;
      });
      const seconds = ((performance.now() - began) / 1000).toFixed(1);
      options.onProgress?.(`dependencies installed in ${seconds} s`);
      this.#o.logger.info(
        { function: options.functionName, key: plan.key, tool: installer.tool, seconds: Number(seconds) },
        "installed dependencies",
      );
    } finally {
      this.#temps.delete(tmp);
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /** The function files the install may see, from the blob store. */
  async #writeWork(work: string, files: readonly ManifestEntry[]): Promise<void> {
    await mkdir(work, { mode: 0o755 });
    for (const file of files) {
      const data = this.#o.blobs.get(file.hash);
      if (!data)
        throw new FuncdError("INTERNAL", `Blob ${file.hash} of ${file.path} is missing from the store`);
      const target = path.join(work, file.path);
      await mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
      await writeFile(target, data, { mode: file.mode & 0o755 });
    }
  }

  /** The package managers' download caches and the installs' home, owned by the install uid. */
  async #prepareCacheDirs(uid: number | undefined) {
    const dirs = {
      home: path.join(this.#o.cacheDir, "home"),
      npm: path.join(this.#o.cacheDir, "npm"),
      pip: path.join(this.#o.cacheDir, "pip"),
    };
    await mkdir(this.#o.root, { recursive: true, mode: 0o711 });
    await mkdir(this.#o.cacheDir, { recursive: true, mode: 0o711 });
    for (const dir of Object.values(dirs)) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      if (uid !== undefined) await lchown(dir, uid, uid);
    }
    if (uid !== undefined) {
      // The install uid must walk from / to its folders inside the data dir (which is 0700 root's).
      this.#access ??= new UidAccess(this.#o.logger, [path.dirname(this.#o.root), this.#o.cacheDir]);
      await chmod(this.#o.root, 0o711);
      await chmod(this.#o.cacheDir, 0o711);
      await this.#access.makeSearchable([this.#o.root, this.#o.cacheDir]);
    }
    return dirs;
  }
}

async function chownTree(dir: string, uid: number): Promise<void> {
  await lchown(dir, uid, uid);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(full, uid);
    else await lchown(full, uid, uid);
  }
}

/**
 * Makes a finished install immutable for everyone but its owner (root, when the daemon is root) and
 * readable by all: its files are hard-linked into many functions' artifacts, run by different uids, and a
 * per-function permission change on a shared inode would leak to the others.
 */
async function sealTree(dir: string, toRoot: boolean): Promise<void> {
  const visit = async (full: string): Promise<void> => {
    const info = await lstat(full);
    if (toRoot) await lchown(full, 0, 0);
    if (info.isSymbolicLink()) return;
    if (info.isDirectory()) {
      await Promise.all((await readdir(full)).map((name) => visit(path.join(full, name))));
      await chmod(full, 0o755);
      return;
    }
    await chmod(full, info.mode & 0o111 ? 0o755 : 0o644);
  };
  await visit(dir);
}

function formatMs(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000} minute${ms === 60_000 ? "" : "s"}`;
  return `${Math.round(ms / 100) / 10} s`;
}
