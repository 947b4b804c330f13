import type { Database } from "better-sqlite3";
import type { ImageUseRepo } from "../types.js";

/** The `images` table: when each funcd image last started serving. */
export function sqliteImageUseRepo(db: Database): ImageUseRepo {
  // Never moves a date back: a late write of an older use must not make an image look older than it is.
  const touchStmt = db.prepare<[string, number]>(
    `INSERT INTO images (tag, last_used_at) VALUES (?, ?)
     ON CONFLICT (tag) DO UPDATE SET last_used_at = MAX(last_used_at, excluded.last_used_at)`,
  );
  const getStmt = db.prepare<[string], { last_used_at: number }>(
    "SELECT last_used_at FROM images WHERE tag = ?",
  );
  const allStmt = db.prepare<[], { tag: string; last_used_at: number }>(
    "SELECT tag, last_used_at FROM images",
  );
  const deleteStmt = db.prepare<[string]>("DELETE FROM images WHERE tag = ?");
  return {
    touch(tag, at) {
      touchStmt.run(tag, Math.round(at));
    },
    lastUsed(tag) {
      return getStmt.get(tag)?.last_used_at;
    },
    all() {
      return new Map(allStmt.all().map((row) => [row.tag, row.last_used_at]));
    },
    forget(tag) {
      return deleteStmt.run(tag).changes > 0;
    },
  };
}
