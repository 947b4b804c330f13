import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import type { Store } from "../types.js";
import { sqliteBlobRepo } from "./blobs.js";
import { sqliteExecutionRepo } from "./executions.js";
import { sqliteFunctionRepo } from "./functions.js";
import { sqliteImageUseRepo } from "./images.js";
import { DEFAULT_LOGS_PER_FUNCTION, sqliteLogRepo } from "./logs.js";
import { migrate } from "./migrations.js";
import { sqliteQueueRepo } from "./queue.js";
import { sqliteRevisionRepo } from "./revisions.js";
import { keyFileSealer } from "./seal.js";
import { sqliteSecretRepo } from "./secrets.js";
import { BUSY_TIMEOUT_MS, type LockWaitObserver, writeTransaction } from "./write-transaction.js";

/** Tuning for {@link openSqliteStore}; every key has a default. */
export interface SqliteStoreOptions {
  /** Log lines kept per function; older lines are pruned as new ones arrive. Default 5000. */
  logsPerFunction?: number;
  /**
   * How long a blob no revision references is spared by garbage collection. A deploy
   * stores its files first and writes the revision only after the build, so a
   * collection in between must not take them. Default one hour.
   */
  blobGraceMs?: number;
  /** Dates blobs for the grace period; any `Clock` from shared/clock.ts fits. Default `Date.now`. */
  clock?: { now(): number };
  /**
   * fsync the WAL before an async invocation's enqueue returns (`synchronous = FULL` for those
   * transactions), so an accepted invocation survives power loss too. Default true.
   */
  fsyncEnqueue?: boolean;
  /**
   * The key file secret values are sealed with (made on first use). Default `secrets.key` beside the
   * database file; an in-memory store keeps a random key in memory.
   */
  secretKeyFile?: string;
  /**
   * Told, for every write transaction, how long it waited for SQLite's write lock (another connection —
   * the execution writer's thread — was committing). The daemon turns it into a metric.
   */
  onLockWait?: LockWaitObserver;
  /** How long a statement waits for another connection's lock before SQLITE_BUSY. Default 5 s; tests shorten it. */
  busyTimeoutMs?: number;
}

const DEFAULT_BLOB_GRACE_MS = 3_600_000;

/**
 * Open (creating if needed) the SQLite database at `file` and bring its schema up to
 * date. `":memory:"` gives a private in-memory store, handy in tests.
 *
 * Throws when the database was written by a newer funcd (its schema version is
 * higher than this build knows), naming both versions.
 */
export function openSqliteStore(file: string, options: SqliteStoreOptions = {}): Store {
  const inMemory = file === ":memory:";
  if (!inMemory) prepareFile(file);

  const db = new Database(file);
  try {
    // WAL lets the API read while the recorder writes; NORMAL is durable across
    // application crashes and only risks the last commits on power loss, which is
    // the right trade for logs and execution records.
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = NORMAL");
    db.pragma("foreign_keys = ON");
    // A write waits up to 5 s for another connection's commit (the execution writer's thread). Write
    // transactions begin IMMEDIATE so that this wait applies to them (write-transaction.ts).
    db.pragma(`busy_timeout = ${Math.max(0, Math.trunc(options.busyTimeoutMs ?? BUSY_TIMEOUT_MS))}`);
    migrate(db, inMemory ? "(in memory)" : `"${file}"`);
  } catch (err) {
    db.close();
    throw err;
  }

  const clock = options.clock ?? { now: () => Date.now() };
  const onLockWait = options.onLockWait;
  // Deploys, rollbacks and deletes group repository calls in one transaction; nested ones are savepoints.
  const storeTransaction = writeTransaction(db, "store.transaction", (fn: () => unknown) => fn(), onLockWait);
  return {
    functions: sqliteFunctionRepo(db),
    revisions: sqliteRevisionRepo(db),
    blobs: sqliteBlobRepo(db, { clock, graceMs: options.blobGraceMs ?? DEFAULT_BLOB_GRACE_MS }),
    executions: sqliteExecutionRepo(db, onLockWait),
    logs: sqliteLogRepo(db, options.logsPerFunction ?? DEFAULT_LOGS_PER_FUNCTION, onLockWait),
    queue: sqliteQueueRepo(db, {
      fsyncEnqueue: options.fsyncEnqueue ?? true,
      ...(onLockWait ? { onLockWait } : {}),
    }),
    images: sqliteImageUseRepo(db),
    secrets: sqliteSecretRepo(
      db,
      keyFileSealer(
        options.secretKeyFile ??
          (inMemory ? null : path.join(path.dirname(path.resolve(file)), "secrets.key")),
      ),
      onLockWait,
    ),
    transaction<T>(fn: () => T): T {
      // better-sqlite3 turns nested calls into savepoints, so repositories'
      // own transactions compose with this one.
      return storeTransaction(fn) as T;
    },
    close() {
      if (!db.open) return;
      // Lets SQLite refresh statistics for the query planner, cheaply, as its docs advise at close.
      db.pragma("optimize");
      db.close();
    },
  };
}

/**
 * The database holds function code and environment variables (and sealed secrets),
 * so it is created readable by its owner only. SQLite gives the -wal and -shm files
 * the same mode as the database file.
 */
function prepareFile(file: string): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true, mode: 0o700 });
  fs.closeSync(fs.openSync(file, "a", 0o600));
  fs.chmodSync(file, 0o600);
}
