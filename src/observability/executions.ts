import type { Clock } from "../shared/clock.js";
import type { Logger } from "../shared/logger.js";
import type { ExecutionRecord } from "../store/types.js";
import type { ExecutionSink } from "./worker-sink.js";

/**
 * Execution records are written off the hot path: the gateway hands a record
 * over and returns; a timer writes the batch in one transaction.
 */
export class ExecutionRecorder {
  readonly #repo: ExecutionSink;
  #pending: ExecutionRecord[] = [];
  readonly #timer: { cancel(): void };
  readonly #maxPending: number;

  readonly #logger: Logger | undefined;
  readonly #enabled: boolean;

  constructor(
    repo: ExecutionSink,
    clock: Clock,
    options: { logger?: Logger; flushEveryMs?: number; maxPending?: number; enabled?: boolean } = {},
  ) {
    const { flushEveryMs = 250, maxPending = 10_000 } = options;
    this.#repo = repo;
    this.#logger = options.logger;
    this.#enabled = options.enabled ?? true;
    this.#maxPending = maxPending;
    this.#timer = clock.setInterval(() => this.flush(), flushEveryMs);
  }

  record(execution: ExecutionRecord): void {
    if (!this.#enabled) return;
    // Under a flood the store, not the gateway, gives way: drop the oldest unsaved records.
    if (this.#pending.length >= this.#maxPending) this.#pending.shift();
    this.#pending.push(execution);
  }

  flush(): void {
    if (this.#pending.length === 0) return;
    const batch = this.#pending;
    this.#pending = [];
    try {
      this.#repo.insertMany(batch);
    } catch (err) {
      // Runs on a timer: a store error must cost records, never the daemon.
      this.#logger?.error({ err, lost: batch.length }, "could not write execution records");
    }
  }

  async close(): Promise<void> {
    this.#timer.cancel();
    this.flush();
    await this.#repo.close?.();
  }
}
