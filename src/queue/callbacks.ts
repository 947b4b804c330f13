import { request } from "undici";
import type { Clock } from "../shared/clock.js";
import { messageOf } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import type { CallbackStatus, ExecutionRecord, ExecutionRepo, QueueRepo } from "../store/types.js";
import { backoffMs } from "./policy.js";

/** POSTs `body` to `url`; resolves with the answer's status, rejects when there is none. */
export type CallbackTransport = (url: string, body: string, timeoutMs: number) => Promise<number>;

export interface CallbackOptions {
  queue: QueueRepo;
  executions: ExecutionRepo;
  clock: Clock;
  logger: Logger;
  /** Attempts after the first failed one. */
  retries: number;
  timeoutMs: number;
  backoff: { baseMs: number; capMs: number };
  random?: () => number;
  /** Callbacks sent at once, at most. Default 8. */
  concurrency?: number;
  transport?: CallbackTransport;
}

/** What a callback receives: the outcome of the invocation and what the function answered (bounded). */
export function callbackPayload(record: ExecutionRecord) {
  const result = record.result;
  return {
    executionId: record.id,
    function: record.functionName,
    status: record.state ?? (record.outcome === "success" ? "succeeded" : "failed"),
    outcome: record.outcome,
    statusCode: record.statusCode,
    attempts: record.attempt ?? 1,
    error: record.error,
    requestId: record.requestId,
    headers: result?.headers ?? {},
    body: result?.body ?? "",
    encoding: result?.encoding ?? "utf8",
    truncated: result?.truncated ?? false,
  };
}

const undiciTransport: CallbackTransport = async (url, body, timeoutMs) => {
  const res = await request(url, {
    method: "POST",
    headers: { "content-type": "application/json", "user-agent": "funcd-callback" },
    body,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    signal: AbortSignal.timeout(timeoutMs),
  });
  await res.body.dump();
  return res.statusCode;
};

/**
 * Delivers results to `X-Callback-Url`s. A callback is due once its invocation
 * is over; it is retried with backoff until a 2xx or its retries run out, and
 * every attempt is recorded on the execution. Pending callbacks are in the
 * store, so they survive a restart.
 */
export class CallbackSender {
  readonly #o: CallbackOptions;
  readonly #transport: CallbackTransport;
  readonly #random: () => number;
  readonly #ready: string[] = [];
  readonly #timers = new Map<string, { cancel(): void }>();
  readonly #sending = new Set<Promise<void>>();
  #active = 0;
  #closed = false;

  constructor(options: CallbackOptions) {
    this.#o = options;
    this.#transport = options.transport ?? undiciTransport;
    this.#random = options.random ?? Math.random;
  }

  /** Picks up callbacks a previous run left pending. */
  start(): void {
    for (const { id, due } of this.#o.queue.pendingCallbacks()) this.schedule(id, due);
  }

  /** Sends the callback of execution `id` at `due` (or now). */
  schedule(id: string, due: number): void {
    if (this.#closed) return;
    const wait = due - this.#o.clock.now();
    if (wait <= 0) {
      this.#ready.push(id);
      this.#pump();
      return;
    }
    this.#timers.get(id)?.cancel();
    this.#timers.set(
      id,
      this.#o.clock.setTimeout(() => {
        this.#timers.delete(id);
        this.#ready.push(id);
        this.#pump();
      }, wait),
    );
  }

  /** Stops sending; waits for the callbacks in flight. The rest stay pending in the store. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const timer of this.#timers.values()) timer.cancel();
    this.#timers.clear();
    await Promise.all(this.#sending);
  }

  #pump(): void {
    const limit = this.#o.concurrency ?? 8;
    while (!this.#closed && this.#active < limit && this.#ready.length > 0) {
      const id = this.#ready.shift() as string;
      this.#active++;
      const sending = this.#send(id).finally(() => {
        this.#active--;
        this.#sending.delete(sending);
        this.#pump();
      });
      this.#sending.add(sending);
    }
  }

  async #send(id: string): Promise<void> {
    const record = this.#o.executions.get(id);
    const previous = record?.callback;
    // Gone (its function was deleted) or already settled: nothing to send.
    if (!record || !previous || previous.status !== "pending") return;
    const at = this.#o.clock.now();
    let statusCode: number | null = null;
    let error: string | null = null;
    try {
      statusCode = await this.#transport(
        previous.url,
        JSON.stringify(callbackPayload(record)),
        this.#o.timeoutMs,
      );
      if (statusCode < 200 || statusCode > 299) error = `the callback URL answered ${statusCode}`;
    } catch (err) {
      error = messageOf(err);
    }
    if (this.#closed) return;
    const attempts = previous.attempts + 1;
    const settled = error === null || attempts > this.#o.retries;
    const status: CallbackStatus = {
      url: previous.url,
      status: error === null ? "delivered" : settled ? "failed" : "pending",
      attempts,
      statusCode,
      error,
      at,
    };
    const nextAt = settled ? null : this.#o.clock.now() + backoffMs(attempts, this.#o.backoff, this.#random);
    try {
      this.#o.queue.updateCallback(id, status, nextAt);
    } catch (err) {
      this.#o.logger.error({ err, execution: id }, "could not record a callback attempt");
      return;
    }
    if (status.status === "failed") {
      this.#o.logger.warn(
        { execution: id, function: record.functionName, url: previous.url, error },
        `callback failed after ${attempts} attempts`,
      );
    }
    if (nextAt !== null) this.schedule(id, nextAt);
  }
}
