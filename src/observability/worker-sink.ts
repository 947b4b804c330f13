import { Worker } from "node:worker_threads";
import type { Logger } from "../shared/logger.js";
import type { ExecutionRecord } from "../store/types.js";

/** Where the recorder's batches go: the store itself, or a writer thread. */
export interface ExecutionSink {
  insertMany(records: ExecutionRecord[]): void;
  close?(): Promise<void>;
}

export interface WorkerSinkLimits {
  /** Records waiting for the writer above which it gets normal CPU priority back. */
  escalateAt: number;
  /** …and below which it goes back to the lowest. */
  relaxAt: number;
  /** Records waiting above which new batches are dropped (counted), so memory stays bounded. */
  dropAt: number;
}

/** The limits, and who hears about the writer's lock waits and retries (the daemon's metrics). */
export interface WorkerSinkOptions extends Partial<WorkerSinkLimits> {
  /** Each batch's wait for SQLite's write lock, in milliseconds. */
  onLockWait?: (operation: string, waitedMs: number) => void;
  /** A batch written again because the database stayed locked past busy_timeout. */
  onBusyRetry?: (operation: string) => void;
}

const DEFAULT_LIMITS: WorkerSinkLimits = { escalateAt: 100_000, relaxAt: 10_000, dropAt: 400_000 };

type WriterMessage =
  | { type: "written"; count: number; waitedMs: number; retries: number }
  | { type: "error"; message: string; lost: number }
  | { type: "priority"; nice: number; ok: boolean }
  | { type: "closed" };

/**
 * Sends batches to `execution-writer.js` on its own thread; see there for why. The writer runs at the
 * lowest priority, so under full load records wait in memory (a few hundred bytes each) rather than
 * cost throughput; when more than `escalateAt` wait, the writer gets normal priority until the backlog
 * is under `relaxAt`. Past `dropAt` (the writer cannot keep up even so) batches are dropped and counted.
 */
export class WorkerExecutionSink implements ExecutionSink {
  readonly #worker: Worker;
  readonly #logger: Logger;
  readonly #limits: WorkerSinkLimits;
  readonly #options: WorkerSinkOptions;
  #closed = false;
  #waiting = 0;
  #escalated = false;
  #dropped = 0;

  /** `writerUrl`: the compiled writer; tests that run from the sources point it at the build. */
  constructor(
    databaseFile: string,
    logger: Logger,
    options: WorkerSinkOptions = {},
    writerUrl: URL = new URL("./execution-writer.js", import.meta.url),
  ) {
    this.#logger = logger;
    const { onLockWait: _w, onBusyRetry: _r, ...limits } = options;
    this.#limits = { ...DEFAULT_LIMITS, ...limits };
    this.#options = options;
    this.#worker = new Worker(writerUrl, {
      workerData: { file: databaseFile },
    });
    this.#worker.unref();
    this.#worker.on("message", (message: WriterMessage) => this.#onMessage(message));
    this.#worker.on("error", (err) => logger.error({ err }, "the execution writer thread failed"));
  }

  /** Records handed over and not yet written. */
  get waiting(): number {
    return this.#waiting;
  }

  /** Records dropped because the writer could not keep up. */
  get dropped(): number {
    return this.#dropped;
  }

  insertMany(records: ExecutionRecord[]): void {
    if (this.#closed || records.length === 0) return;
    if (this.#waiting >= this.#limits.dropAt) {
      if (this.#dropped === 0)
        this.#logger.warn({ waiting: this.#waiting }, "execution writer cannot keep up; dropping records");
      this.#dropped += records.length;
      return;
    }
    this.#waiting += records.length;
    this.#worker.postMessage({ type: "batch", records });
    if (!this.#escalated && this.#waiting > this.#limits.escalateAt) this.#setEscalated(true);
  }

  #onMessage(message: WriterMessage): void {
    if (message.type === "written") {
      this.#waiting -= message.count;
      this.#options.onLockWait?.("executions.insert", message.waitedMs);
      for (let i = 0; i < message.retries; i++) this.#options.onBusyRetry?.("executions.insert");
      if (this.#escalated && this.#waiting < this.#limits.relaxAt) this.#setEscalated(false);
    } else if (message.type === "error") {
      this.#logger.error({ err: message.message, lost: message.lost }, "could not write execution records");
    } else if (message.type === "priority" && !message.ok && message.nice === 0) {
      // Without CAP_SYS_NICE a thread cannot get its priority back; the dropAt bound still holds.
      this.#logger.debug("execution writer cannot raise its priority (needs CAP_SYS_NICE)");
    }
  }

  #setEscalated(escalated: boolean): void {
    this.#escalated = escalated;
    this.#worker.postMessage({ type: "priority", nice: escalated ? 0 : 19 });
  }

  /** Lets the writer finish every batch sent so far (at normal priority), then stops it. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const done = new Promise<void>((resolve) => {
      this.#worker.once("exit", () => resolve());
      this.#worker.on("message", (message: WriterMessage) => {
        if (message.type === "closed") void this.#worker.terminate();
      });
    });
    this.#worker.postMessage({ type: "priority", nice: 0 });
    this.#worker.postMessage({ type: "close" });
    await Promise.race([done, new Promise((resolve) => setTimeout(resolve, 5000))]);
  }
}
