import type { Database } from "better-sqlite3";
import type { FunctionSpec } from "../../deploy/spec.js";
import type { ManifestEntry, RevisionRecord, RevisionRepo, RevisionStatus } from "../types.js";

interface RevisionRow {
  id: string;
  function_name: string;
  number: number;
  spec: string;
  files: string;
  status: string;
  error: string | null;
  created_at: number;
  deps_key: string | null;
  image: string | null;
  build_log: string | null;
}

function toRecord(row: RevisionRow): RevisionRecord {
  return {
    id: row.id,
    functionName: row.function_name,
    number: row.number,
    spec: JSON.parse(row.spec) as FunctionSpec,
    files: JSON.parse(row.files) as ManifestEntry[],
    status: row.status as RevisionStatus,
    error: row.error,
    createdAt: row.created_at,
    // Absent rather than null when there is none: a record reads back as it was written.
    ...(row.deps_key === null ? {} : { depsKey: row.deps_key }),
    ...(row.image === null ? {} : { image: row.image }),
    ...(row.build_log === null ? {} : { buildLog: row.build_log }),
  };
}

/** The `revisions` table: immutable snapshots of spec + code manifest, numbered per function. */
export function sqliteRevisionRepo(db: Database): RevisionRepo {
  const columns =
    "id, function_name, number, spec, files, status, error, created_at, deps_key, image, build_log";
  const getStmt = db.prepare<[string], RevisionRow>(`SELECT ${columns} FROM revisions WHERE id = ?`);
  const listStmt = db.prepare<[string], RevisionRow>(
    `SELECT ${columns} FROM revisions WHERE function_name = ? ORDER BY number DESC`,
  );
  const nextStmt = db.prepare<[string], { next: number }>(
    "SELECT COALESCE(MAX(number), 0) + 1 AS next FROM revisions WHERE function_name = ?",
  );
  // Ids are content hashes, so putting the same id again is the same revision: update
  // it in place (e.g. a failed build retried) rather than fail on the primary key.
  const putStmt = db.prepare<[RevisionRow]>(
    `INSERT INTO revisions (${columns})
     VALUES (@id, @function_name, @number, @spec, @files, @status, @error, @created_at, @deps_key, @image,
             @build_log)
     ON CONFLICT (id) DO UPDATE SET
       function_name = excluded.function_name,
       number = excluded.number,
       spec = excluded.spec,
       files = excluded.files,
       status = excluded.status,
       error = excluded.error,
       created_at = excluded.created_at,
       deps_key = excluded.deps_key,
       image = excluded.image,
       build_log = excluded.build_log`,
  );
  const deleteForStmt = db.prepare<[string]>("DELETE FROM revisions WHERE function_name = ?");
  const imagesStmt = db.prepare<[], { image: string; id: string }>(
    "SELECT image, id FROM revisions WHERE image IS NOT NULL ORDER BY function_name, number",
  );

  return {
    get(id) {
      const row = getStmt.get(id);
      return row === undefined ? undefined : toRecord(row);
    },
    listFor(functionName) {
      return listStmt.all(functionName).map(toRecord);
    },
    nextNumber(functionName) {
      return nextStmt.get(functionName)?.next ?? 1;
    },
    put(record) {
      putStmt.run({
        id: record.id,
        function_name: record.functionName,
        number: record.number,
        spec: JSON.stringify(record.spec),
        files: JSON.stringify(record.files),
        status: record.status,
        error: record.error,
        created_at: record.createdAt,
        deps_key: record.depsKey ?? null,
        image: record.image ?? null,
        build_log: record.buildLog ?? null,
      });
    },
    deleteFor(functionName) {
      return deleteForStmt.run(functionName).changes;
    },
    images() {
      const users = new Map<string, string[]>();
      for (const row of imagesStmt.all()) users.set(row.image, [...(users.get(row.image) ?? []), row.id]);
      return users;
    },
  };
}
