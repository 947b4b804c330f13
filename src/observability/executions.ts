import type { Clock } from "../shared/clock.js";
import type { ExecutionRecord, ExecutionRepo } from "../store/types.js";

/**
 * Execution records are written off the hot path: the gateway hands a record
 * over and returns; a timer writes the batch in one transaction.
 */
export class ExecutionRecorder {
  readonly #repo: ExecutionRepo;
  #pending: ExecutionRecord[] = [];
  readonly #timer: { cancel(): void };
  readonly #maxPending: number;

  constructor(repo: ExecutionRepo, clock: Clock, flushEveryMs = 250, maxPending = 10_000) {
    this.#repo = repo;
    this.#maxPending = maxPending;
    this.#timer = clock.setInterval(() => this.flush(), flushEveryMs);
  }

  record(execution: ExecutionRecord): void {
    // Under a flood the store, not the gateway, gives way: drop the oldest unsaved records.
    if (this.#pending.length >= this.#maxPending) this.#pending.shift();
    this.#pending.push(execution);
  }

  flush(): void {
    if (this.#pending.length === 0) return;
    const batch = this.#pending;
    this.#pending = [];
    this.#repo.insertMany(batch);
  }

  close(): void {
    this.#timer.cancel();
    this.flush();
  }
}
