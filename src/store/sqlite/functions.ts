import type { Database } from "better-sqlite3";
import type { FunctionSpec } from "../../deploy/spec.js";
import type { FunctionRecord, FunctionRepo } from "../types.js";

interface FunctionRow {
  name: string;
  spec: string;
  active_revision: string | null;
  created_at: number;
  updated_at: number;
}

function toRecord(row: FunctionRow): FunctionRecord {
  return {
    name: row.name,
    // Specs were validated by the API before they were stored; reading trusts them.
    spec: JSON.parse(row.spec) as FunctionSpec,
    activeRevision: row.active_revision,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** The `functions` table: one row per deployed function. */
export function sqliteFunctionRepo(db: Database): FunctionRepo {
  const columns = "name, spec, active_revision, created_at, updated_at";
  const getStmt = db.prepare<[string], FunctionRow>(`SELECT ${columns} FROM functions WHERE name = ?`);
  const listStmt = db.prepare<[], FunctionRow>(`SELECT ${columns} FROM functions ORDER BY name`);
  // An upsert rather than INSERT OR REPLACE: REPLACE deletes the old row first,
  // which would fire delete triggers or cascades if a later migration adds them.
  const putStmt = db.prepare<[FunctionRow]>(
    `INSERT INTO functions (${columns})
     VALUES (@name, @spec, @active_revision, @created_at, @updated_at)
     ON CONFLICT (name) DO UPDATE SET
       spec = excluded.spec,
       active_revision = excluded.active_revision,
       created_at = excluded.created_at,
       updated_at = excluded.updated_at`,
  );
  const deleteStmt = db.prepare<[string]>("DELETE FROM functions WHERE name = ?");

  return {
    get(name) {
      const row = getStmt.get(name);
      return row === undefined ? undefined : toRecord(row);
    },
    list() {
      return listStmt.all().map(toRecord);
    },
    put(record) {
      putStmt.run({
        name: record.name,
        spec: JSON.stringify(record.spec),
        active_revision: record.activeRevision,
        created_at: record.createdAt,
        updated_at: record.updatedAt,
      });
    },
    delete(name) {
      return deleteStmt.run(name).changes > 0;
    },
  };
}
