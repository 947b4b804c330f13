import type { Database } from "better-sqlite3";
import type { LogQuery, LogRepo, StoredLogLine } from "../types.js";
import { type LockWaitObserver, writeTransaction } from "./write-transaction.js";

/** Lines kept per function when the store is opened without `logsPerFunction`. */
export const DEFAULT_LOGS_PER_FUNCTION = 5000;
/** Appended lines per function between automatic prunes (fewer when the bound is smaller). */
const PRUNE_EVERY = 500;

interface LogRow {
  id: number;
  time: number;
  function_name: string;
  revision_id: string;
  instance_id: string;
  stream: string;
  request_id: string | null;
  text: string;
}

function toLine(row: LogRow): StoredLogLine {
  return {
    id: row.id,
    time: row.time,
    functionName: row.function_name,
    revisionId: row.revision_id,
    instanceId: row.instance_id,
    stream: row.stream as StoredLogLine["stream"],
    requestId: row.request_id,
    text: row.text,
  };
}

/**
 * The `logs` table: function output, bounded per function. `appendMany` prunes a
 * function every few hundred lines it appends for it, so a chatty function cannot
 * grow the database without limit even if nobody calls `prune`. The counters live
 * in memory: after a restart the first prune comes a little later, which only
 * delays it by one interval.
 */
export function sqliteLogRepo(
  db: Database,
  logsPerFunction: number = DEFAULT_LOGS_PER_FUNCTION,
  onLockWait?: LockWaitObserver,
): LogRepo {
  const keep = Math.max(0, Math.trunc(logsPerFunction));
  // A small bound would otherwise be overshot many times before the first prune.
  const pruneEvery = Math.max(1, Math.min(PRUNE_EVERY, keep));
  const appendedSincePrune = new Map<string, number>();

  const insertStmt = db.prepare<[Omit<LogRow, "id">]>(
    `INSERT INTO logs (time, function_name, revision_id, instance_id, stream, request_id, text)
     VALUES (@time, @function_name, @revision_id, @instance_id, @stream, @request_id, @text)`,
  );
  // Newest first with an optional LIMIT (-1 means none); the caller reverses. Both
  // filters are range/equality on the (function_name, id) index, so one statement serves all.
  const queryStmt = db.prepare<
    [{ functionName: string; afterId: number; requestId: string | null; limit: number }],
    LogRow
  >(
    `SELECT id, time, function_name, revision_id, instance_id, stream, request_id, text
     FROM logs
     WHERE function_name = @functionName AND id > @afterId
       AND (@requestId IS NULL OR request_id = @requestId)
     ORDER BY id DESC
     LIMIT @limit`,
  );
  const functionsStmt = db.prepare<[], { function_name: string }>("SELECT DISTINCT function_name FROM logs");
  // Deletes everything older than the keep-th newest line; when the function has
  // fewer lines the subquery is NULL, `id < NULL` is never true, and nothing goes.
  const pruneOneStmt = db.prepare<[{ functionName: string; keep: number }]>(
    `DELETE FROM logs
     WHERE function_name = @functionName
       AND id < (SELECT id FROM logs WHERE function_name = @functionName
                 ORDER BY id DESC LIMIT 1 OFFSET @keep - 1)`,
  );
  const deleteForStmt = db.prepare<[string]>("DELETE FROM logs WHERE function_name = ?");
  // Through the (function_name, id) index: the scan is bounded by the function's kept lines.
  const lastTimeStmt = db.prepare<[string, string], { time: number | null }>(
    "SELECT max(time) AS time FROM logs WHERE function_name = ? AND instance_id = ?",
  );

  function pruneOne(functionName: string, keepLines: number): number {
    // OFFSET -1 would behave like OFFSET 0 and keep one line, so "keep none" is a plain delete.
    if (keepLines <= 0) return deleteForStmt.run(functionName).changes;
    return pruneOneStmt.run({ functionName, keep: keepLines }).changes;
  }

  const appendMany = writeTransaction(
    db,
    "logs.append",
    (lines: Omit<StoredLogLine, "id">[]) => {
      for (const line of lines) {
        insertStmt.run({
          time: line.time,
          function_name: line.functionName,
          revision_id: line.revisionId,
          instance_id: line.instanceId,
          stream: line.stream,
          request_id: line.requestId,
          text: line.text,
        });
        appendedSincePrune.set(line.functionName, (appendedSincePrune.get(line.functionName) ?? 0) + 1);
      }
      for (const [functionName, count] of appendedSincePrune) {
        if (count >= pruneEvery) {
          pruneOne(functionName, keep);
          appendedSincePrune.set(functionName, 0);
        }
      }
    },
    onLockWait,
  );

  const pruneAll = writeTransaction(
    db,
    "logs.prune",
    (keepLines: number) => {
      let removed = 0;
      for (const { function_name } of functionsStmt.all()) removed += pruneOne(function_name, keepLines);
      appendedSincePrune.clear();
      return removed;
    },
    onLockWait,
  );

  return {
    appendMany(lines) {
      if (lines.length === 0) return;
      try {
        appendMany(lines);
      } catch (err) {
        // The transaction rolled back, so the counters overcount; forgetting them
        // only postpones the next automatic prune.
        appendedSincePrune.clear();
        throw err;
      }
    },
    query(query: LogQuery) {
      const rows = queryStmt.all({
        functionName: query.functionName,
        afterId: query.afterId ?? 0,
        requestId: query.requestId ?? null,
        limit:
          query.tail === undefined || !Number.isFinite(query.tail) ? -1 : Math.max(0, Math.trunc(query.tail)),
      });
      return rows.reverse().map(toLine);
    },
    prune(keepPerFunction) {
      return pruneAll(Math.max(0, Math.trunc(keepPerFunction)));
    },
    lastTimeOf(functionName, instanceId) {
      return lastTimeStmt.get(functionName, instanceId)?.time ?? undefined;
    },
    deleteFor(functionName) {
      appendedSincePrune.delete(functionName);
      return deleteForStmt.run(functionName).changes;
    },
  };
}
