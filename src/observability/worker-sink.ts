import { Worker } from "node:worker_threads";
import type { Logger } from "../shared/logger.js";
import type { ExecutionRecord } from "../store/types.js";

/** Where the recorder's batches go: the store itself, or a writer thread. */
export interface ExecutionSink {
  insertMany(records: ExecutionRecord[]): void;
  close?(): Promise<void>;
}

/** Sends batches to `execution-writer.js` on its own thread; see there for why. */
export class WorkerExecutionSink implements ExecutionSink {
  readonly #worker: Worker;
  #closed = false;

  constructor(databaseFile: string, logger: Logger) {
    this.#worker = new Worker(new URL("./execution-writer.js", import.meta.url), {
      workerData: { file: databaseFile },
    });
    this.#worker.unref();
    this.#worker.on("message", (message: { type: string; message?: string; lost?: number }) => {
      if (message.type === "error")
        logger.error({ err: message.message, lost: message.lost }, "could not write execution records");
    });
    this.#worker.on("error", (err) => logger.error({ err }, "the execution writer thread failed"));
  }

  insertMany(records: ExecutionRecord[]): void {
    if (!this.#closed) this.#worker.postMessage({ type: "batch", records });
  }

  /** Lets the writer finish every batch sent so far, then stops it. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const done = new Promise<void>((resolve) => {
      this.#worker.once("exit", () => resolve());
      this.#worker.on("message", (message: { type: string }) => {
        if (message.type === "closed") void this.#worker.terminate();
      });
    });
    this.#worker.postMessage({ type: "close" });
    await Promise.race([done, new Promise((resolve) => setTimeout(resolve, 5000))]);
  }
}
