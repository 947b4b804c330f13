import { EventEmitter } from "node:events";
import type { LogLine } from "../drivers/driver.js";
import type { Clock } from "../shared/clock.js";
import type { Logger } from "../shared/logger.js";
import type { LogQuery, LogRepo, StoredLogLine } from "../store/types.js";

/**
 * Collects instance output, writes it to the store in batches (never one
 * INSERT per line on the request path) and fans stored lines out to followers.
 */
export class LogHub {
  readonly #repo: LogRepo;
  readonly #events = new EventEmitter();
  #pending: Omit<StoredLogLine, "id">[] = [];
  readonly #timer: { cancel(): void };

  readonly #logger: Logger | undefined;

  constructor(repo: LogRepo, clock: Clock, options: { logger?: Logger; flushEveryMs?: number } = {}) {
    const flushEveryMs = options.flushEveryMs ?? 100;
    this.#repo = repo;
    this.#logger = options.logger;
    this.#events.setMaxListeners(0);
    this.#timer = clock.setInterval(() => this.flush(), flushEveryMs);
  }

  /** A `LogSink` for drivers. */
  readonly sink = (line: LogLine): void => {
    this.#pending.push({
      time: line.time,
      functionName: line.functionName,
      revisionId: line.revisionId,
      instanceId: line.instanceId,
      stream: line.stream,
      requestId: line.requestId ?? null,
      text: line.text,
    });
  };

  /** Writes buffered lines and tells followers. */
  flush(): void {
    if (this.#pending.length === 0) return;
    const batch = this.#pending;
    this.#pending = [];
    try {
      this.#repo.appendMany(batch);
    } catch (err) {
      // Runs on a timer: a store error must cost log lines, never the daemon.
      this.#logger?.error({ err, lost: batch.length }, "could not write log lines");
      return;
    }
    const byFunction = new Set(batch.map((l) => l.functionName));
    for (const name of byFunction) this.#events.emit(name);
  }

  query(query: LogQuery): StoredLogLine[] {
    this.flush();
    return this.#repo.query(query);
  }

  /** Calls `onLines` with every line stored for `functionName` after `afterId`. Returns an unsubscribe function. */
  follow(functionName: string, afterId: number, onLines: (lines: StoredLogLine[]) => void): () => void {
    let last = afterId;
    const listener = () => {
      const lines = this.#repo.query({ functionName, afterId: last });
      if (lines.length === 0) return;
      last = lines[lines.length - 1]?.id ?? last;
      onLines(lines);
    };
    this.#events.on(functionName, listener);
    return () => this.#events.off(functionName, listener);
  }

  close(): void {
    this.#timer.cancel();
    this.flush();
  }
}
