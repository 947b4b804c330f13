/**
 * Worker thread that writes sync execution records into the SQLite file
 * through its own connection (WAL lets it write beside the daemon's). The
 * inserts cost ~8 µs a record; at thousands of invocations a second that was
 * a tenth of the gateway thread's time, which the worker takes off it.
 */
import { parentPort, workerData } from "node:worker_threads";
import Database from "better-sqlite3";
import { sqliteExecutionRepo } from "../store/sqlite/executions.js";
import type { ExecutionRecord } from "../store/types.js";

type Message = { type: "batch"; records: ExecutionRecord[] } | { type: "close" };

const port = parentPort;
if (!port) throw new Error("execution-writer runs as a worker thread");
const db = new Database((workerData as { file: string }).file);
db.pragma("journal_mode = WAL");
db.pragma("synchronous = NORMAL");
db.pragma("busy_timeout = 5000");
const repo = sqliteExecutionRepo(db);

port.on("message", (message: Message) => {
  if (message.type === "close") {
    db.close();
    port.postMessage({ type: "closed" });
    port.close();
    return;
  }
  try {
    repo.insertMany(message.records);
  } catch (err) {
    port.postMessage({ type: "error", message: String(err), lost: message.records.length });
  }
});
