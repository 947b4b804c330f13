/**
 * The data dir a daemon owns: reachable by the uids its sandboxed functions run as, and held by one
 * daemon at a time. Runs first in `createApp`, before anything in the data dir is read or changed.
 */
import {
  accessSync,
  chmodSync,
  constants,
  cpSync,
  mkdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { isRoot } from "./drivers/process/sandbox.js";
import { FuncdError, messageOf } from "./shared/errors.js";

/** What a running daemon writes about itself, for the message a second one prints. */
interface Owner {
  pid: number;
  startedAt: string;
  /** Where it listens, once it does: `{ gateway: "http://…" }`. */
  listening?: Record<string, string>;
}

export interface DataDirClaim {
  /**
   * The runtime templates instances start from: the package's folder, or a copy in the data dir when the
   * package sits where sandboxed uids cannot reach (a clone in root's 0700 home).
   */
  readonly templatesDir: string;
  /** Records where this daemon listens, so a second daemon can name it. */
  announce(listening: Record<string, string>): void;
  /** Lets another daemon take the data dir (the kernel does the same when this process dies). */
  release(): void;
}

const LOCK_FILE = "daemon.lock";
const OWNER_FILE = "daemon.json";

/**
 * Claims `dataDir` for this daemon: checks sandboxed uids can reach it (root only), creates it, and takes
 * its exclusive lock — or throws, having changed nothing, when another daemon holds it.
 */
export function claimDataDir(dataDir: string, templatesDir: string): DataDirClaim {
  const root = isRoot();
  if (root) requireReachable(dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o711 });
  const lock = lockDataDir(dataDir);
  const ownerFile = path.join(dataDir, OWNER_FILE);
  const owner: Owner = { pid: process.pid, startedAt: new Date().toISOString() };
  const writeOwner = () => writeFileSync(ownerFile, `${JSON.stringify(owner)}\n`, { mode: 0o600 });
  writeOwner();
  // 0711: others may traverse (sandboxed instances run as their own uid and reach their artifact folder
  // through it) but not list it; the token and the database inside are 0600.
  chmodSync(dataDir, 0o711);
  const templates = root ? reachableTemplates(templatesDir, dataDir) : templatesDir;
  let released = false;
  return {
    templatesDir: templates,
    announce(listening) {
      owner.listening = { ...owner.listening, ...listening };
      writeOwner();
    },
    release() {
      if (released) return;
      released = true;
      // Removed while the lock is still ours: no other daemon can have written its own meanwhile.
      rmSync(ownerFile, { force: true });
      lock.close();
    },
  };
}

/**
 * An exclusive lock on `<dataDir>/daemon.lock`, through SQLite (better-sqlite3 is already a dependency):
 * with `locking_mode=EXCLUSIVE` a connection that has written keeps its POSIX (fcntl) lock on the file
 * until it closes, and the kernel drops that lock when the process ends however it ends — kill -9
 * included, so no stale lock is ever left behind. Node has no flock() of its own, and a lock *file*
 * (proper-lockfile and the like) is a convention the kernel does not release: it needs staleness
 * guesses, which is how two daemons end up sharing a data dir.
 */
function lockDataDir(dataDir: string): Database.Database {
  const file = path.join(dataDir, LOCK_FILE);
  // timeout 0: a held lock fails at once (better-sqlite3 would otherwise wait 5 s for it).
  const db = new Database(file, { timeout: 0 });
  try {
    db.pragma("locking_mode = EXCLUSIVE");
    db.exec("BEGIN EXCLUSIVE");
    db.exec("CREATE TABLE IF NOT EXISTS lock (id INTEGER PRIMARY KEY)");
    db.exec("COMMIT");
    return db;
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code !== "SQLITE_BUSY") throw err;
    throw new FuncdError("DATA_DIR_LOCKED", lockedMessage(dataDir), { cause: err });
  }
}

function lockedMessage(dataDir: string): string {
  let owner: Owner | undefined;
  try {
    owner = JSON.parse(readFileSync(path.join(dataDir, OWNER_FILE), "utf8")) as Owner;
  } catch {
    // Written right after the lock is taken: the other daemon may be a moment from writing it.
  }
  const where = owner?.listening ? `, ${Object.values(owner.listening).join(", ")}` : "";
  const who = owner ? `another funcd daemon (pid ${owner.pid}${where})` : "another funcd daemon";
  return `The data dir ${dataDir} is in use by ${who}. Two daemons on one data dir would overwrite each other's functions, secrets and instances: stop that one first, or give this one a data dir of its own with --data-dir DIR (FUNCD_DATA_DIR=DIR)`;
}

/**
 * A root daemon runs sandboxed functions as unprivileged uids that must walk from `/` to their files in
 * the data dir. funcd changes modes inside its data dir only, so every existing folder above it must
 * already be searchable by others; otherwise refuse, saying how to choose.
 */
function requireReachable(dataDir: string): void {
  const blocked = firstUnsearchableAncestor(dataDir);
  if (blocked === undefined) return;
  const mode = (statSync(blocked).mode & 0o777).toString(8).padStart(4, "0");
  throw new FuncdError(
    "DATA_DIR_UNREACHABLE",
    `Sandboxed functions run as their own unprivileged uids and must reach the data dir ${dataDir}, but ${blocked} is not searchable by other users (mode ${mode}); funcd does not change modes outside its data dir. Choose a data dir they can reach with --data-dir DIR (FUNCD_DATA_DIR=DIR), e.g. /var/lib/funcd, or allow it yourself: chmod o+x ${blocked}`,
  );
}

/** The highest existing folder strictly above `dir` that others cannot search (no o+x), if any. */
function firstUnsearchableAncestor(dir: string): string | undefined {
  const chain: string[] = [];
  for (let d = path.dirname(path.resolve(dir)); ; d = path.dirname(d)) {
    chain.unshift(d);
    if (d === path.dirname(d)) break;
  }
  for (const d of chain) {
    let mode: number;
    try {
      mode = statSync(d).mode;
    } catch {
      return undefined; // From here down funcd creates the folders itself (0711).
    }
    if ((mode & 0o001) === 0) return d;
  }
  return undefined;
}

/**
 * The templates folder instances can reach: the package's own when every folder above it is searchable by
 * others, else a fresh copy at `<dataDir>/templates` (a clone in root's 0700 home would otherwise need
 * that home opened up, and funcd changes nothing outside its data dir).
 */
function reachableTemplates(templatesDir: string, dataDir: string): string {
  if (firstUnsearchableAncestor(path.join(templatesDir, "x")) === undefined) return templatesDir;
  const copy = path.join(dataDir, "templates");
  try {
    rmSync(copy, { recursive: true, force: true });
    cpSync(templatesDir, copy, { recursive: true, dereference: true });
    chmodSync(copy, 0o755);
    accessSync(copy, constants.R_OK);
    return copy;
  } catch (err) {
    throw new FuncdError(
      "DATA_DIR_UNREACHABLE",
      `The runtime templates at ${templatesDir} are not reachable by sandboxed uids and copying them to ${copy} failed: ${messageOf(err)}`,
      { cause: err },
    );
  }
}
