import type { Database } from "better-sqlite3";
import type {
  AttemptRecord,
  CallbackStatus,
  DeadLetter,
  FinalState,
  NewQueueItem,
  QueueItem,
  QueueRepo,
} from "../types.js";
import { type LockWaitObserver, writeTransaction } from "./write-transaction.js";

export interface SqliteQueueOptions {
  /**
   * Sync the WAL to disk before an enqueue returns (SQLite `synchronous = FULL` for that transaction),
   * so a 202 survives power loss, not only a killed daemon. Group commit makes it one fsync per batch.
   */
  fsyncEnqueue?: boolean;
  /** Told how long each write transaction waited for the write lock. */
  onLockWait?: LockWaitObserver;
}

interface QueueRow {
  id: string;
  function_name: string;
  method: string;
  path: string;
  prefix: string;
  headers: string;
  body: Buffer | null;
  request_id: string;
  callback_url: string | null;
  max_retries: number;
  attempt: number;
  queued_at: number;
  enqueued_at: number;
}

interface DeadLetterRow {
  id: string;
  function_name: string;
  method: string;
  path: string;
  request_id: string;
  attempt: number;
  queued_at: number;
  finished_at: number;
  status_code: number | null;
  error: string | null;
  callback_url: string | null;
}

const ITEM_COLUMNS =
  "id, function_name, method, path, prefix, headers, body, request_id, callback_url, max_retries, attempt, " +
  "queued_at, enqueued_at";

function toItem(row: QueueRow): QueueItem {
  return {
    id: row.id,
    functionName: row.function_name,
    method: row.method,
    path: row.path,
    prefix: row.prefix,
    headers: JSON.parse(row.headers) as QueueItem["headers"],
    body: row.body,
    requestId: row.request_id,
    callbackUrl: row.callback_url,
    maxRetries: row.max_retries,
    attempt: row.attempt,
    queuedAt: row.queued_at,
    enqueuedAt: row.enqueued_at,
  };
}

/** The columns of an execution record one attempt sets. */
function attemptParams(id: string, attempt: AttemptRecord | null) {
  return {
    id,
    has_attempt: attempt ? 1 : 0,
    started_at: attempt?.startedAt ?? null,
    duration_ms: attempt?.durationMs ?? null,
    status_code: attempt?.statusCode ?? null,
    outcome: attempt?.outcome ?? null,
    error: attempt?.error ?? null,
    cold_start: attempt ? (attempt.coldStart ? 1 : 0) : null,
    instance_id: attempt?.instanceId ?? null,
    revision_id: attempt?.revisionId ?? null,
    response_bytes: attempt?.responseBytes ?? null,
    result: attempt?.result ? JSON.stringify(attempt.result) : null,
  };
}

/** SET clause that copies an attempt onto the execution record, leaving it alone when there was none. */
const ATTEMPT_SET = `
  started_at = CASE WHEN @has_attempt THEN @started_at ELSE started_at END,
  duration_ms = CASE WHEN @has_attempt THEN @duration_ms ELSE duration_ms END,
  status_code = CASE WHEN @has_attempt THEN @status_code ELSE status_code END,
  outcome = CASE WHEN @has_attempt THEN @outcome ELSE outcome END,
  error = COALESCE(@final_error, CASE WHEN @has_attempt THEN @error ELSE error END),
  cold_start = CASE WHEN @has_attempt THEN @cold_start ELSE cold_start END,
  instance_id = CASE WHEN @has_attempt THEN @instance_id ELSE instance_id END,
  revision_id = CASE WHEN @has_attempt THEN @revision_id ELSE revision_id END,
  response_bytes = CASE WHEN @has_attempt THEN @response_bytes ELSE response_bytes END,
  result = CASE WHEN @has_attempt THEN @result ELSE result END`;

/**
 * The `queue` table and the async side of `executions`: every state change of
 * an item updates its execution record in the same transaction.
 */
export function sqliteQueueRepo(db: Database, options: SqliteQueueOptions = {}): QueueRepo {
  // Every transaction here writes, most after reading first: all begin IMMEDIATE (see write-transaction.ts).
  const tx = <A extends unknown[], R>(operation: string, fn: (...args: A) => R) =>
    writeTransaction(db, operation, fn, options.onLockWait);
  const insertItem = db.prepare(
    `INSERT INTO queue (id, function_name, state, method, path, prefix, headers, body, request_id, callback_url,
                        max_retries, attempt, queued_at, enqueued_at, run_at)
     VALUES (@id, @function_name, 'queued', @method, @path, @prefix, @headers, @body, @request_id, @callback_url,
             @max_retries, 0, @queued_at, @queued_at, @queued_at)`,
  );
  const insertRecord = db.prepare(
    `INSERT INTO executions (id, function_name, revision_id, trigger, started_at, duration_ms, status_code, outcome,
                             cold_start, instance_id, error, request_bytes, response_bytes, request_id,
                             state, queued_at, attempt, request, callback)
     VALUES (@id, @function_name, NULL, 'async', @queued_at, 0, 0, 'pending', 0, NULL, NULL, @request_bytes, 0,
             @request_id, 'queued', @queued_at, 0, @request, @callback)`,
  );
  const enqueue = tx("queue.enqueue", (items: NewQueueItem[]) => {
    for (const item of items) {
      const callback: CallbackStatus | null = item.callbackUrl
        ? { url: item.callbackUrl, status: "pending", attempts: 0, statusCode: null, error: null, at: null }
        : null;
      insertItem.run({
        id: item.id,
        function_name: item.functionName,
        method: item.method,
        path: item.path,
        prefix: item.prefix,
        headers: JSON.stringify(item.headers),
        body: item.body,
        request_id: item.requestId,
        callback_url: item.callbackUrl,
        max_retries: item.maxRetries,
        queued_at: item.queuedAt,
      });
      insertRecord.run({
        id: item.id,
        function_name: item.functionName,
        queued_at: item.queuedAt,
        request_bytes: item.body?.length ?? 0,
        request_id: item.requestId,
        request: JSON.stringify(item.request),
        callback: callback ? JSON.stringify(callback) : null,
      });
    }
  });

  const expiredStmt = db.prepare<[number], { id: string }>(
    "SELECT id FROM queue WHERE state = 'running' AND lease_until < ?",
  );
  // The attempt stays counted: the function may well have run it before the daemon went away.
  const requeueExpired = db.prepare<[string]>(
    "UPDATE queue SET state = 'queued', lease_until = NULL WHERE id = ?",
  );
  const recordQueued = db.prepare<[string]>(
    "UPDATE executions SET state = 'queued' WHERE id = ? AND state = 'running'",
  );
  const recover = tx("queue.recover", (now: number, except?: ReadonlySet<string>) => {
    let count = 0;
    for (const { id } of expiredStmt.all(now)) {
      if (except?.has(id)) continue;
      requeueExpired.run(id);
      recordQueued.run(id);
      count++;
    }
    return count;
  });

  const dueFunctionsStmt = db.prepare<[number], { function_name: string }>(
    "SELECT DISTINCT function_name FROM queue WHERE state = 'queued' AND run_at <= ?",
  );
  const nextDueStmt = db.prepare<[string], { due: number | null }>(
    "SELECT MIN(run_at) AS due FROM queue WHERE function_name = ? AND state = 'queued'",
  );
  const selectDue = db.prepare<[string, number, number], QueueRow>(
    `SELECT ${ITEM_COLUMNS} FROM queue WHERE function_name = ? AND state = 'queued' AND run_at <= ?
     ORDER BY run_at, seq LIMIT ?`,
  );
  const markRunning = db.prepare<[number, string]>(
    "UPDATE queue SET state = 'running', attempt = attempt + 1, lease_until = ? WHERE id = ?",
  );
  const recordRunning = db.prepare<[number, number, string]>(
    "UPDATE executions SET state = 'running', attempt = ?, started_at = ? WHERE id = ?",
  );
  const requeueStmt = db.prepare(
    `UPDATE queue SET state = 'queued', run_at = @run_at, lease_until = NULL,
            attempt = attempt - CASE WHEN @counted THEN 0 ELSE 1 END,
            status_code = COALESCE(@status_code, status_code), error = COALESCE(@error, error)
     WHERE id = @id RETURNING attempt`,
  );
  const recordAttempt = db.prepare(
    `UPDATE executions SET state = @state, attempt = @attempt, finished_at = @finished_at, ${ATTEMPT_SET}
     WHERE id = @id`,
  );
  const retry = tx(
    "queue.retry",
    (id: string, runAt: number, attempt: AttemptRecord | null, counted: boolean) => {
      const row = requeueStmt.get({
        id,
        run_at: runAt,
        counted: counted ? 1 : 0,
        status_code: attempt?.statusCode ?? null,
        error: attempt?.error ?? null,
      }) as { attempt: number } | undefined;
      if (!row) return;
      recordAttempt.run({
        ...attemptParams(id, attempt),
        state: "queued",
        attempt: row.attempt,
        finished_at: null,
        final_error: null,
      });
    },
  );

  const itemStmt = db.prepare<[string], { attempt: number; callback_url: string | null }>(
    "SELECT attempt, callback_url FROM queue WHERE id = ?",
  );
  const deleteItem = db.prepare<[string]>("DELETE FROM queue WHERE id = ?");
  const settleItem = db.prepare(
    `UPDATE queue SET state = @state, lease_until = NULL, finished_at = @now,
            status_code = COALESCE(@status_code, status_code), error = COALESCE(@error, error),
            callback_state = CASE WHEN callback_url IS NULL THEN NULL ELSE 'pending' END,
            callback_at = CASE WHEN callback_url IS NULL THEN NULL ELSE @now END
     WHERE id = @id`,
  );
  function finishRow(
    id: string,
    state: FinalState,
    now: number,
    attempt: AttemptRecord | null,
    error: string | undefined,
    known?: { attempt: number; callback_url: string | null },
  ): void {
    const item = known ?? itemStmt.get(id);
    if (!item) return;
    recordAttempt.run({
      ...attemptParams(id, attempt),
      state,
      attempt: item.attempt,
      finished_at: now,
      final_error: error ?? null,
    });
    if (state === "dead-lettered" || item.callback_url !== null) {
      // Dead letters wait for a redrive; "done" items only for their callback.
      settleItem.run({
        id,
        state: state === "dead-lettered" ? "dead-lettered" : "done",
        now,
        status_code: attempt?.statusCode ?? null,
        error: error ?? attempt?.error ?? null,
      });
    } else {
      deleteItem.run(id);
    }
  }
  const finish = tx(
    "queue.finish",
    (id: string, state: FinalState, now: number, attempt: AttemptRecord | null, error?: string) =>
      finishRow(id, state, now, attempt, error),
  );

  const claim = tx(
    "queue.claim",
    (
      functionName: string,
      limit: number,
      now: number,
      leaseUntil: number,
      expiry: { enqueuedBefore: number; error: (attempts: number) => string },
    ) => {
      const items: QueueItem[] = [];
      const expired: { id: string; callbackUrl: string | null }[] = [];
      // Expired items do not take a slot, so keep reading until `limit` live ones or no more are due.
      while (items.length < limit) {
        const rows = selectDue.all(functionName, now, limit - items.length);
        if (rows.length === 0) break;
        for (const row of rows) {
          if (row.enqueued_at < expiry.enqueuedBefore) {
            finishRow(row.id, "dead-lettered", now, null, expiry.error(row.attempt), row);
            expired.push({ id: row.id, callbackUrl: row.callback_url });
            continue;
          }
          const item = toItem(row);
          item.attempt++;
          markRunning.run(leaseUntil, item.id);
          recordRunning.run(item.attempt, now, item.id);
          items.push(item);
        }
      }
      return { items, expired };
    },
  );

  const deadLettersStmt = db.prepare<[string, number, number], DeadLetterRow>(
    `SELECT id, function_name, method, path, request_id, attempt, queued_at, finished_at, status_code, error,
            callback_url
     FROM queue WHERE function_name = ? AND state = 'dead-lettered' AND finished_at < ?
     ORDER BY finished_at DESC, seq DESC LIMIT ?`,
  );

  const selectDead = db.prepare<[string], { id: string }>(
    "SELECT id FROM queue WHERE function_name = ? AND state = 'dead-lettered'",
  );
  const redriveItem = db.prepare(
    `UPDATE queue SET state = 'queued', attempt = 0, enqueued_at = @now, run_at = @now, lease_until = NULL,
            finished_at = NULL, status_code = NULL, error = NULL, callback_state = NULL, callback_at = NULL
     WHERE id = @id AND function_name = @function_name AND state = 'dead-lettered'
     RETURNING id, function_name, method, path, request_id, callback_url, queued_at, body`,
  );
  // The record may have been pruned by count while the dead letter waited; a redrive brings it back.
  const upsertRecord = db.prepare(
    `INSERT INTO executions (id, function_name, revision_id, trigger, started_at, duration_ms, status_code, outcome,
                             cold_start, instance_id, error, request_bytes, response_bytes, request_id,
                             state, queued_at, attempt, callback)
     VALUES (@id, @function_name, NULL, 'async', @now, 0, 0, 'pending', 0, NULL, NULL, @request_bytes, 0,
             @request_id, 'queued', @queued_at, 0, @callback)
     ON CONFLICT (id) DO UPDATE SET state = 'queued', attempt = 0, started_at = @now, duration_ms = 0,
             status_code = 0, outcome = 'pending', error = NULL, finished_at = NULL, result = NULL,
             callback = @callback`,
  );
  const redrive = tx(
    "queue.redrive",
    (functionName: string, ids: readonly string[] | undefined, now: number) => {
      const wanted = ids ?? selectDead.all(functionName).map((r) => r.id);
      const done: string[] = [];
      for (const id of wanted) {
        const row = redriveItem.get({ id, function_name: functionName, now }) as
          | {
              id: string;
              function_name: string;
              request_id: string;
              callback_url: string | null;
              queued_at: number;
              body: Buffer | null;
            }
          | undefined;
        if (!row) continue;
        const callback: CallbackStatus | null = row.callback_url
          ? { url: row.callback_url, status: "pending", attempts: 0, statusCode: null, error: null, at: null }
          : null;
        upsertRecord.run({
          id,
          function_name: row.function_name,
          now,
          request_bytes: row.body?.length ?? 0,
          request_id: row.request_id,
          queued_at: row.queued_at,
          callback: callback ? JSON.stringify(callback) : null,
        });
        done.push(id);
      }
      return done;
    },
  );

  const dropStmt = db.prepare<[string]>(
    "DELETE FROM queue WHERE function_name = ? AND state IN ('queued', 'running')",
  );
  const dropRestStmt = db.prepare<[string]>("DELETE FROM queue WHERE function_name = ?");
  const dropFor = tx("queue.drop", (functionName: string) => {
    const active = dropStmt.run(functionName).changes;
    dropRestStmt.run(functionName);
    return active;
  });

  const pruneDeadStmt = db.prepare<[number]>(
    "DELETE FROM queue WHERE state = 'dead-lettered' AND finished_at < ? AND callback_state IS NOT 'pending'",
  );

  const pendingCallbacksStmt = db.prepare<[], { id: string; due: number }>(
    "SELECT id, callback_at AS due FROM queue WHERE callback_state = 'pending' ORDER BY callback_at",
  );
  const callbackItem = db.prepare(
    `UPDATE queue SET callback_state = @callback_state, callback_at = @callback_at WHERE id = @id
     RETURNING state`,
  );
  const recordCallback = db.prepare<[string, string]>("UPDATE executions SET callback = ? WHERE id = ?");
  const updateCallback = tx("queue.callback", (id: string, status: CallbackStatus, nextAt: number | null) => {
    recordCallback.run(JSON.stringify(status), id);
    const row = callbackItem.get({
      id,
      callback_state: nextAt === null ? status.status : "pending",
      callback_at: nextAt,
    }) as { state: string } | undefined;
    // A finished item stayed only for its callback.
    if (row?.state === "done" && nextAt === null) deleteItem.run(id);
  });

  const countsStmt = db.prepare<[], { state: string; n: number }>(
    "SELECT state, COUNT(*) AS n FROM queue GROUP BY state",
  );
  const countsForStmt = db.prepare<[string], { state: string; n: number }>(
    "SELECT state, COUNT(*) AS n FROM queue WHERE function_name = ? GROUP BY state",
  );

  return {
    enqueueMany(items) {
      if (items.length === 0) return;
      if (!options.fsyncEnqueue) {
        enqueue(items);
        return;
      }
      // Per connection, and better-sqlite3 is synchronous: no other statement runs in between.
      db.pragma("synchronous = FULL");
      try {
        enqueue(items);
      } finally {
        db.pragma("synchronous = NORMAL");
      }
    },
    recover(now, except) {
      return recover(now, except);
    },
    dueFunctions(now) {
      return dueFunctionsStmt.all(now).map((r) => r.function_name);
    },
    nextDue(functionName) {
      return nextDueStmt.get(functionName)?.due ?? undefined;
    },
    claim(functionName, limit, now, leaseUntil, expiry) {
      if (limit <= 0) return { items: [], expired: [] };
      return claim(functionName, limit, now, leaseUntil, expiry);
    },
    retry(id, runAt, attempt, counted) {
      retry(id, runAt, attempt, counted);
    },
    finish(id, state, now, attempt, error) {
      finish(id, state, now, attempt, error);
    },
    deadLetters(functionName, limit, before) {
      return deadLettersStmt.all(functionName, before ?? Number.MAX_SAFE_INTEGER, limit).map(
        (r): DeadLetter => ({
          id: r.id,
          functionName: r.function_name,
          method: r.method,
          path: r.path,
          requestId: r.request_id,
          attempts: r.attempt,
          queuedAt: r.queued_at,
          deadLetteredAt: r.finished_at,
          statusCode: r.status_code,
          error: r.error,
          callbackUrl: r.callback_url,
        }),
      );
    },
    redrive(functionName, ids, now) {
      return redrive(functionName, ids, now);
    },
    dropFor(functionName) {
      return dropFor(functionName);
    },
    pruneDeadLetters(olderThan) {
      return pruneDeadStmt.run(olderThan).changes;
    },
    pendingCallbacks() {
      return pendingCallbacksStmt.all();
    },
    updateCallback(id, status, nextAt) {
      updateCallback(id, status, nextAt);
    },
    counts(functionName) {
      const rows = functionName === undefined ? countsStmt.all() : countsForStmt.all(functionName);
      const out = { queued: 0, running: 0, "dead-lettered": 0 };
      for (const row of rows) if (row.state in out) out[row.state as keyof typeof out] = row.n;
      return out;
    },
  };
}
