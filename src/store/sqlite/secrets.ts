import type { Database } from "better-sqlite3";
import type { SecretMeta, SecretRepo } from "../types.js";
import type { Sealer } from "./seal.js";
import { type LockWaitObserver, writeTransaction } from "./write-transaction.js";

interface SecretRow {
  name: string;
  created_at: number;
  updated_at: number;
}

function toMeta(row: SecretRow): SecretMeta {
  return { name: row.name, createdAt: row.created_at, updatedAt: row.updated_at };
}

/** The `secrets` table: values sealed by `sealer` before they are written, opened only by `value()`. */
export function sqliteSecretRepo(db: Database, sealer: Sealer, onLockWait?: LockWaitObserver): SecretRepo {
  const getStmt = db.prepare<[string], SecretRow>(
    "SELECT name, created_at, updated_at FROM secrets WHERE name = ?",
  );
  const listStmt = db.prepare<[], SecretRow>(
    "SELECT name, created_at, updated_at FROM secrets ORDER BY name",
  );
  const valueStmt = db.prepare<[string], { value: Buffer }>("SELECT value FROM secrets WHERE name = ?");
  const insertStmt = db.prepare<[string, Buffer, number, number]>(
    "INSERT INTO secrets (name, value, created_at, updated_at) VALUES (?, ?, ?, ?)",
  );
  const updateStmt = db.prepare<[Buffer, number, string]>(
    "UPDATE secrets SET value = ?, updated_at = ? WHERE name = ?",
  );
  const deleteStmt = db.prepare<[string]>("DELETE FROM secrets WHERE name = ?");
  const put = writeTransaction(
    db,
    "secrets.put",
    (name: string, sealed: Buffer, now: number) => {
      const at = Math.round(now);
      const existing = getStmt.get(name);
      if (existing) updateStmt.run(sealed, at, name);
      else insertStmt.run(name, sealed, at, at);
      return { created: existing === undefined, meta: toMeta(getStmt.get(name) as SecretRow) };
    },
    onLockWait,
  );

  return {
    put(name, value, now) {
      // Sealed before the transaction: the key file is made (on first use) outside of it.
      return put(name, sealer.seal(name, value), now);
    },
    get(name) {
      const row = getStmt.get(name);
      return row === undefined ? undefined : toMeta(row);
    },
    list() {
      return listStmt.all().map(toMeta);
    },
    value(name) {
      const row = valueStmt.get(name);
      return row === undefined ? undefined : sealer.open(name, row.value);
    },
    delete(name) {
      return deleteStmt.run(name).changes > 0;
    },
  };
}
