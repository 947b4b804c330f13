import type { Database, Statement } from "better-sqlite3";
import type {
  ExecutionOutcome,
  ExecutionQuery,
  ExecutionRecord,
  ExecutionRepo,
  ExecutionState,
} from "../types.js";
import { type LockWaitObserver, writeTransaction } from "./write-transaction.js";

/** Page size when a query does not say. */
export const DEFAULT_EXECUTION_LIMIT = 50;
/** The largest page a query may ask for; bigger requests are clamped. */
export const MAX_EXECUTION_LIMIT = 1000;

interface ExecutionRow {
  id: string;
  function_name: string;
  revision_id: string | null;
  trigger: string;
  started_at: number;
  duration_ms: number;
  status_code: number;
  outcome: string;
  cold_start: number;
  instance_id: string | null;
  error: string | null;
  request_bytes: number;
  response_bytes: number;
  request_id: string | null;
}

/** The async columns (migration 4); NULL on sync records. */
interface AsyncColumns {
  state: string | null;
  queued_at: number | null;
  finished_at: number | null;
  attempt: number | null;
  request: string | null;
  result: string | null;
  callback: string | null;
}

/** What sync records write: the async columns stay NULL, so the recorder's batched insert is unchanged. */
const COLUMNS =
  "id, function_name, revision_id, trigger, started_at, duration_ms, status_code, outcome, cold_start, " +
  "instance_id, error, request_bytes, response_bytes, request_id";
const SELECT_COLUMNS = `${COLUMNS}, state, queued_at, finished_at, attempt, request, result, callback`;
/** Pages of records leave out the request and result bodies (up to 64 KiB each); `get` has them. */
const LIST_COLUMNS = `${COLUMNS}, state, queued_at, finished_at, attempt, NULL AS request, NULL AS result, callback`;

/** Records of async invocations still queued or running are never pruned: their queue item needs them. */
const PRUNABLE = "(state IS NULL OR state NOT IN ('queued', 'running'))";

function toRecord(row: ExecutionRow & AsyncColumns): ExecutionRecord {
  const record: ExecutionRecord = {
    id: row.id,
    functionName: row.function_name,
    revisionId: row.revision_id,
    trigger: row.trigger as ExecutionRecord["trigger"],
    startedAt: row.started_at,
    durationMs: row.duration_ms,
    statusCode: row.status_code,
    outcome: row.outcome as ExecutionOutcome,
    coldStart: row.cold_start !== 0,
    instanceId: row.instance_id,
    error: row.error,
    requestBytes: row.request_bytes,
    responseBytes: row.response_bytes,
    requestId: row.request_id,
  };
  if (row.state !== null) record.state = row.state as ExecutionState;
  if (row.queued_at !== null) record.queuedAt = row.queued_at;
  if (row.finished_at !== null) record.finishedAt = row.finished_at;
  if (row.attempt !== null) record.attempt = row.attempt;
  if (row.request !== null) record.request = JSON.parse(row.request) as ExecutionRecord["request"] & {};
  if (row.result !== null) record.result = JSON.parse(row.result) as ExecutionRecord["result"] & {};
  if (row.callback !== null) record.callback = JSON.parse(row.callback) as ExecutionRecord["callback"] & {};
  return record;
}

function toRow(record: ExecutionRecord): ExecutionRow {
  return {
    id: record.id,
    function_name: record.functionName,
    revision_id: record.revisionId,
    trigger: record.trigger,
    started_at: record.startedAt,
    duration_ms: record.durationMs,
    status_code: record.statusCode,
    outcome: record.outcome,
    cold_start: record.coldStart ? 1 : 0,
    instance_id: record.instanceId,
    error: record.error,
    request_bytes: record.requestBytes,
    response_bytes: record.responseBytes,
    request_id: record.requestId,
  };
}

type Filter = "functionName" | "outcome" | "since" | "before";
const FILTER_SQL: Record<Filter, string> = {
  functionName: "function_name = @functionName",
  outcome: "outcome = @outcome",
  since: "started_at >= @since",
  before: "started_at < @before",
};
const FILTERS = Object.keys(FILTER_SQL) as Filter[];

type QueryParams = Partial<Record<Filter, string | number>> & { limit: number };

/** The `executions` table: one row per invocation, written in batches by the recorder. */
export function sqliteExecutionRepo(db: Database, onLockWait?: LockWaitObserver): ExecutionRepo {
  const insertStmt = db.prepare<[ExecutionRow]>(
    `INSERT INTO executions (${COLUMNS})
     VALUES (@id, @function_name, @revision_id, @trigger, @started_at, @duration_ms, @status_code,
             @outcome, @cold_start, @instance_id, @error, @request_bytes, @response_bytes, @request_id)`,
  );
  const insertMany = writeTransaction(
    db,
    "executions.insert",
    (records: ExecutionRecord[]) => {
      for (const record of records) insertStmt.run(toRow(record));
    },
    onLockWait,
  );
  const getStmt = db.prepare<[string], ExecutionRow & AsyncColumns>(
    `SELECT ${SELECT_COLUMNS} FROM executions WHERE id = ?`,
  );
  const deleteForStmt = db.prepare<[string]>("DELETE FROM executions WHERE function_name = ?");
  const pruneOldStmt = db.prepare<[number]>(`DELETE FROM executions WHERE started_at < ? AND ${PRUNABLE}`);
  const functionsStmt = db.prepare<[], { function_name: string }>(
    "SELECT DISTINCT function_name FROM executions",
  );
  // Keeps the newest `keep` rows of one function: everything at or below the (keep+1)-th newest goes.
  const pruneCountStmt = db.prepare<[string, string, number]>(
    `DELETE FROM executions WHERE function_name = ? AND ${PRUNABLE} AND started_at <= (
       SELECT started_at FROM executions WHERE function_name = ? ORDER BY started_at DESC LIMIT 1 OFFSET ?)`,
  );
  const prune = writeTransaction(
    db,
    "executions.prune",
    (olderThan: number, keepPerFunction: number) => {
      let removed = pruneOldStmt.run(olderThan).changes;
      for (const { function_name } of functionsStmt.all()) {
        removed += pruneCountStmt.run(function_name, function_name, keepPerFunction).changes;
      }
      return removed;
    },
    onLockWait,
  );

  // One statement per combination of filters present (at most 16), prepared on first
  // use. A single "(@x IS NULL OR col = @x)" statement would be simpler but keeps
  // SQLite from using the (function_name, started_at) index, since the plan is fixed
  // before the parameters are known.
  const queryStmts = new Map<string, Statement<[QueryParams], ExecutionRow & AsyncColumns>>();
  function queryStmt(present: Filter[]): Statement<[QueryParams], ExecutionRow & AsyncColumns> {
    const key = present.join(",");
    let stmt = queryStmts.get(key);
    if (stmt === undefined) {
      const where = present.length === 0 ? "" : `WHERE ${present.map((f) => FILTER_SQL[f]).join(" AND ")}`;
      // id breaks ties so pages are stable when several executions start in the same millisecond.
      stmt = db.prepare<[QueryParams], ExecutionRow & AsyncColumns>(
        `SELECT ${LIST_COLUMNS} FROM executions ${where} ORDER BY started_at DESC, id DESC LIMIT @limit`,
      );
      queryStmts.set(key, stmt);
    }
    return stmt;
  }

  return {
    insertMany(records) {
      if (records.length > 0) insertMany(records);
    },
    prune(olderThan, keepPerFunction) {
      return prune(olderThan, keepPerFunction);
    },
    get(id) {
      const row = getStmt.get(id);
      return row === undefined ? undefined : toRecord(row);
    },
    query(query: ExecutionQuery) {
      const requested = Math.trunc(query.limit ?? DEFAULT_EXECUTION_LIMIT);
      const limit = Number.isNaN(requested)
        ? DEFAULT_EXECUTION_LIMIT
        : Math.min(requested, MAX_EXECUTION_LIMIT);
      if (limit <= 0) return [];
      const params: QueryParams = { limit };
      const present: Filter[] = [];
      for (const filter of FILTERS) {
        const value = query[filter];
        if (value !== undefined) {
          params[filter] = value;
          present.push(filter);
        }
      }
      return queryStmt(present).all(params).map(toRecord);
    },
    deleteFor(functionName) {
      return deleteForStmt.run(functionName).changes;
    },
  };
}
