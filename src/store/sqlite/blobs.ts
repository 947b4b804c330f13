import { createHash } from "node:crypto";
import type { Database } from "better-sqlite3";
import type { BlobRepo } from "../types.js";

/** How the blob repository tells time and how long an unreferenced blob is safe from collection. */
export interface BlobRepoOptions {
  clock: { now(): number };
  graceMs: number;
}

/**
 * The `blobs` table: file contents addressed by their sha256 (hex), so identical
 * files across revisions and functions are stored once.
 */
export function sqliteBlobRepo(db: Database, options: BlobRepoOptions): BlobRepo {
  // Re-putting known bytes keeps the one row but refreshes created_at: a deploy that
  // reuses a blob no revision references any more must not lose it to a collection
  // that runs while its build is still in progress.
  const putStmt = db.prepare<[{ hash: string; data: Buffer; size: number; created_at: number }]>(
    `INSERT INTO blobs (hash, data, size, created_at) VALUES (@hash, @data, @size, @created_at)
     ON CONFLICT (hash) DO UPDATE SET created_at = MAX(created_at, excluded.created_at)`,
  );
  const getStmt = db.prepare<[string], { data: Buffer }>("SELECT data FROM blobs WHERE hash = ?");
  // NOT IN over a subquery is materialised once; the IS NOT NULL matters because a
  // single NULL in the list would make NOT IN match nothing and silently stop GC.
  const gcStmt = db.prepare<[number]>(
    `DELETE FROM blobs
     WHERE created_at <= ?
       AND hash NOT IN (
         SELECT json_extract(entry.value, '$.hash')
         FROM revisions, json_each(revisions.files) AS entry
         WHERE json_extract(entry.value, '$.hash') IS NOT NULL
       )`,
  );

  return {
    put(data) {
      const hash = createHash("sha256").update(data).digest("hex");
      putStmt.run({ hash, data, size: data.byteLength, created_at: options.clock.now() });
      return hash;
    },
    get(hash) {
      return getStmt.get(hash)?.data;
    },
    collectGarbage() {
      return gcStmt.run(options.clock.now() - options.graceMs).changes;
    },
  };
}
