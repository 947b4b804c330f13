/**
 * Worker thread that writes sync execution records into the SQLite file
 * through its own connection (WAL lets it write beside the daemon's). The
 * inserts cost ~5 µs a record; at thousands of invocations a second that was
 * a tenth of the gateway thread's time, which the worker takes off it.
 *
 * It also runs at the lowest CPU priority (nice 19, Linux: the thread's own
 * tid): on a machine whose cores are busy serving requests, recording waits
 * for a spare moment instead of taking a share from the gateway and the
 * instances — records are write-behind by design. The sink raises it back to
 * normal priority when too many records wait (see worker-sink.ts).
 */
import { readlinkSync } from "node:fs";
import { setPriority } from "node:os";
import { parentPort, workerData } from "node:worker_threads";
import Database from "better-sqlite3";
import { isStoreBusy } from "../store/busy.js";
import { sqliteExecutionRepo } from "../store/sqlite/executions.js";
import { BUSY_TIMEOUT_MS } from "../store/sqlite/write-transaction.js";
import type { ExecutionRecord } from "../store/types.js";

type Message =
  | { type: "batch"; records: ExecutionRecord[] }
  | { type: "priority"; nice: number }
  | { type: "close" };

const port = parentPort;
if (!port) throw new Error("execution-writer runs as a worker thread");
const db = new Database((workerData as { file: string }).file);
db.pragma("journal_mode = WAL");
db.pragma("synchronous = NORMAL");
db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
/** Lock waits since the last "written" message, reported with it: the daemon's metrics live on its main thread. */
let waitedMs = 0;
const repo = sqliteExecutionRepo(db, (_operation, ms) => {
  waitedMs += ms;
});

/** This thread's kernel task id: `/proc/thread-self` links to `<pid>/task/<tid>`. Undefined off Linux. */
function threadId(): number | undefined {
  try {
    const tid = Number(readlinkSync("/proc/thread-self").split("/").pop());
    return Number.isInteger(tid) && tid > 0 ? tid : undefined;
  } catch {
    return undefined;
  }
}

const tid = threadId();
/** Sets this thread's nice value; reports whether it could (raising priority needs CAP_SYS_NICE). */
function renice(nice: number): boolean {
  if (tid === undefined) return false;
  try {
    setPriority(tid, nice);
    return true;
  } catch {
    return false;
  }
}
renice(19);

/** Attempts at a batch that finds the database locked past busy_timeout, before its records are given up. */
const WRITE_ATTEMPTS = 3;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Writes a batch, retrying lock conflicts (this thread may block: it has nothing else to do); returns the retries. */
function write(records: ExecutionRecord[]): number {
  for (let attempt = 1; ; attempt++) {
    try {
      repo.insertMany(records);
      return attempt - 1;
    } catch (err) {
      if (isStoreBusy(err) && attempt < WRITE_ATTEMPTS) {
        Atomics.wait(sleeper, 0, 0, 100 * attempt);
        continue;
      }
      port?.postMessage({ type: "error", message: String(err), lost: records.length });
      return attempt - 1;
    }
  }
}

port.on("message", (message: Message) => {
  if (message.type === "close") {
    db.close();
    port.postMessage({ type: "closed" });
    port.close();
    return;
  }
  if (message.type === "priority") {
    port.postMessage({ type: "priority", nice: message.nice, ok: renice(message.nice) });
    return;
  }
  const retries = write(message.records);
  port.postMessage({ type: "written", count: message.records.length, waitedMs, retries });
  waitedMs = 0;
});
