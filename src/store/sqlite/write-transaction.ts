import type { Database } from "better-sqlite3";

/**
 * How long a statement waits for another connection's lock before failing with SQLITE_BUSY. Every
 * connection to the database sets it: the daemon's (open.ts) and the execution writer thread's.
 */
export const BUSY_TIMEOUT_MS = 5000;

/** Told, after a write transaction got SQLite's write lock, how long it waited for it (milliseconds). */
export type LockWaitObserver = (operation: string, waitedMs: number) => void;

/**
 * Wraps `fn` in a transaction that begins IMMEDIATE: it takes the database's write lock at BEGIN, where
 * SQLite's busy handler (`busy_timeout`) waits for another connection's commit.
 *
 * better-sqlite3's plain `db.transaction(fn)` begins DEFERRED: the transaction starts as a reader and
 * becomes a writer at its first write. When that first write comes after a read (a claim selects the due
 * rows, then marks them running) and the other connection — the execution writer's thread — holds the
 * write lock or has committed since the read, SQLite cannot wait without risking a deadlock, so it answers
 * SQLITE_BUSY ("database is locked") at once, whatever `busy_timeout` says (issue 21). Every transaction
 * that may write goes through here.
 *
 * Nested inside another transaction it is a savepoint, as better-sqlite3 does, and waits for nothing.
 * `observe` gets the time spent waiting for the lock (BEGIN IMMEDIATE runs before `fn`), top-level only.
 */
export function writeTransaction<A extends unknown[], R>(
  db: Database,
  operation: string,
  fn: (...args: A) => R,
  observe?: LockWaitObserver,
): (...args: A) => R {
  const tx = db.transaction((beganAt: number, nested: boolean, ...args: A): R => {
    if (!nested) observe?.(operation, performance.now() - beganAt);
    return fn(...args);
  });
  return (...args: A) => tx.immediate(performance.now(), db.inTransaction, ...args);
}
