/**
 * Durable async invocations: the intake (202 after a durable write), the
 * dispatcher (workers that deliver through the gateway, with retries, event
 * age and dead letters) and the callback sender.
 */
import type { Delivered, Delivery } from "../gateway/gateway.js";
import type { DaemonMetrics } from "../observability/metrics.js";
import type { Clock } from "../shared/clock.js";
import type { Logger } from "../shared/logger.js";
import type { Store } from "../store/types.js";
import { CallbackSender } from "./callbacks.js";
import { Dispatcher } from "./dispatcher.js";
import { QueueIntake } from "./intake.js";
import type { StoreRetryHooks } from "./store-retry.js";

export { callbackPayload } from "./callbacks.js";

/** The daemon settings async invocations read (a slice of `Config`). */
export interface AsyncSettings {
  maxBodyBytes: number;
  asyncWorkers: number;
  asyncConcurrencyPerFunction: number;
  asyncRetries: number;
  asyncBackoffBaseMs: number;
  asyncBackoffCapMs: number;
  maxEventAgeMs: number;
  callbackRetries: number;
  callbackTimeoutMs: number;
  executionRetentionMs: number;
  coldStartWaitMs: number;
}

export interface AsyncInvocationsOptions {
  store: Store;
  clock: Clock;
  logger: Logger;
  settings: AsyncSettings;
  deliver: (delivery: Delivery) => Promise<Delivered>;
  /** The function's timeout; a claimed invocation's lease outlasts a cold start plus a timeout. */
  timeoutOf: (functionName: string) => number;
  /** Store writes retried because the database was locked are counted here. */
  metrics?: DaemonMetrics;
}

/** The parts, wired; `intake` goes to the gateway, `start` after the functions are restored. */
export class AsyncInvocations {
  readonly intake: QueueIntake;
  readonly dispatcher: Dispatcher;
  readonly #store: Store;
  readonly #clock: Clock;

  constructor(o: AsyncInvocationsOptions) {
    const s = o.settings;
    this.#store = o.store;
    this.#clock = o.clock;
    const backoff = { baseMs: s.asyncBackoffBaseMs, capMs: s.asyncBackoffCapMs };
    const metrics = o.metrics;
    const storeRetries: StoreRetryHooks = {
      retried: (operation) => metrics?.storeBusyRetries.inc({ operation }),
      gaveUp: (operation) => metrics?.storeBusyFailures.inc({ operation }),
    };
    const callbacks = new CallbackSender({
      queue: o.store.queue,
      executions: o.store.executions,
      clock: o.clock,
      logger: o.logger,
      retries: s.callbackRetries,
      timeoutMs: s.callbackTimeoutMs,
      backoff,
    });
    this.dispatcher = new Dispatcher({
      queue: o.store.queue,
      deliver: o.deliver,
      callbacks,
      clock: o.clock,
      logger: o.logger,
      policy: { ...backoff, maxEventAgeMs: s.maxEventAgeMs },
      workers: s.asyncWorkers,
      perFunction: s.asyncConcurrencyPerFunction,
      leaseMs: (name) => o.timeoutOf(name) + s.coldStartWaitMs + 60_000,
      deadLetterRetentionMs: s.executionRetentionMs,
      storeRetries,
    });
    this.intake = new QueueIntake({
      queue: o.store.queue,
      clock: o.clock,
      logger: o.logger,
      maxBodyBytes: s.maxBodyBytes,
      defaultRetries: s.asyncRetries,
      onEnqueued: (names) => this.dispatcher.wake(names),
      storeRetries,
    });
  }

  start(): void {
    this.dispatcher.start();
  }

  /** Dead letters of `functionName` back to the queue (all when `ids` is omitted). */
  redrive(functionName: string, ids?: readonly string[]): string[] {
    const done = this.#store.queue.redrive(functionName, ids, this.#clock.now());
    if (done.length > 0) this.dispatcher.wake([functionName]);
    return done;
  }

  close(graceMs?: number): Promise<void> {
    return this.dispatcher.close(graceMs);
  }
}
