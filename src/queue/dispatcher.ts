import { EventEmitter } from "node:events";
import type { Delivered, Delivery } from "../gateway/gateway.js";
import type { Clock } from "../shared/clock.js";
import type { Logger } from "../shared/logger.js";
import { isStoreBusy } from "../store/busy.js";
import type { AttemptRecord, QueueItem, QueueRepo } from "../store/types.js";
import type { CallbackSender } from "./callbacks.js";
import { captureBody, RECORD_BODY_BYTES } from "./capture.js";
import { decide, type RetryPolicy, tooOld } from "./policy.js";
import {
  type BusyBackoff,
  busyDelay,
  COMPLETION_BACKOFF,
  retryWhileBusy,
  type StoreRetryHooks,
} from "./store-retry.js";

export interface DispatcherOptions {
  queue: QueueRepo;
  /** The gateway's delivery hop (`Gateway.deliver`). */
  deliver: (delivery: Delivery) => Promise<Delivered>;
  callbacks: CallbackSender;
  clock: Clock;
  logger: Logger;
  policy: RetryPolicy;
  /** Deliveries in flight across all functions, at most. */
  workers: number;
  /** Deliveries in flight per function, at most. */
  perFunction: number;
  /** How long a claimed invocation stays `running` before a sweep may hand it out again. */
  leaseMs: (functionName: string) => number;
  /** Dead letters older than this are dropped. */
  deadLetterRetentionMs: number;
  random?: () => number;
  /** How often expired leases and lost wake-ups are looked for. Default 30 s. */
  sweepEveryMs?: number;
  /** Told when a store write found the database locked and is tried again, or given up (metrics). */
  storeRetries?: StoreRetryHooks;
  /** How a completion that finds the database locked is retried. Default {@link COMPLETION_BACKOFF}. */
  completionBackoff?: BusyBackoff;
}

/** Claims that fail are tried again after 20 ms, doubling to 1 s, for as long as they fail. */
const CLAIM_BACKOFF: BusyBackoff = { attempts: Number.POSITIVE_INFINITY, baseMs: 20, capMs: 1000 };

/**
 * The async workers: a dispatcher that claims due invocations per function
 * (oldest first, within the per-function and global concurrency), delivers
 * them through the gateway, and records the outcome — success, failure,
 * a retry at a backoff time, or a dead letter — in one transaction each.
 *
 * Work is found without polling: an enqueue or redrive wakes its function, a
 * retry sets a timer for when it falls due, and a function stays "ready" while
 * its claims come back full. A slow sweep catches anything else.
 */
export class Dispatcher {
  readonly #o: DispatcherOptions;
  readonly #random: () => number;
  /** Functions that may have due invocations, in round-robin order. */
  readonly #ready = new Set<string>();
  readonly #inFlight = new Map<string, number>();
  readonly #delivering = new Map<string, Promise<void>>();
  readonly #wakeups = new Map<string, { at: number; timer: { cancel(): void } }>();
  readonly #cancel = new EventEmitter();
  #total = 0;
  #pumpScheduled = false;
  #sweeper: { cancel(): void } | null = null;
  #retryTimer: { cancel(): void } | null = null;
  /** Claims failed in a row; the first is logged, the others counted, and the end of the run logged. */
  #claimFailures = 0;
  #closed = false;
  /** After close's grace: results that still arrive are not written (the store may be closed). */
  #abandoned = false;

  constructor(options: DispatcherOptions) {
    this.#o = options;
    this.#random = options.random ?? Math.random;
    // One listener per delivery waiting for an instance; there can be `workers` of them.
    this.#cancel.setMaxListeners(0);
  }

  /**
   * Starts delivering. Nothing runs yet at this point, so every `running`
   * invocation was left by a previous run (a crash): all go back to the queue.
   */
  start(): void {
    const recovered = this.#o.queue.recover(Number.POSITIVE_INFINITY);
    if (recovered > 0) {
      this.#o.logger.warn({ recovered }, "async invocations in flight when funcd stopped are queued again");
    }
    // Every function with queued work, due or not: a claim that finds none due sets a wake-up.
    for (const name of this.#o.queue.dueFunctions(Number.POSITIVE_INFINITY)) this.#ready.add(name);
    this.#o.callbacks.start();
    this.#sweeper = this.#o.clock.setInterval(() => this.#sweep(), this.#o.sweepEveryMs ?? 30_000);
    this.#schedulePump();
  }

  /** New work for these functions (enqueued or redriven). */
  wake(functionNames: Iterable<string>): void {
    for (const name of functionNames) this.#ready.add(name);
    this.#schedulePump();
  }

  /** How many deliveries are in flight (all functions, or one). */
  inFlight(functionName?: string): number {
    return functionName === undefined ? this.#total : (this.#inFlight.get(functionName) ?? 0);
  }

  /**
   * Stops claiming; gives deliveries in flight `graceMs` to finish and be
   * recorded, then abandons them — they stay `running` in the store and the
   * next start queues them again (at-least-once).
   */
  async close(graceMs = 2000): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#sweeper?.cancel();
    this.#retryTimer?.cancel();
    for (const wakeup of this.#wakeups.values()) wakeup.timer.cancel();
    this.#wakeups.clear();
    if (this.#delivering.size > 0) {
      let timer: { cancel(): void } | undefined;
      await Promise.race([
        Promise.all(this.#delivering.values()),
        new Promise<void>((resolve) => {
          timer = this.#o.clock.setTimeout(resolve, graceMs);
        }),
      ]);
      timer?.cancel();
    }
    this.#abandoned = true;
    this.#cancel.emit("abort");
    await this.#o.callbacks.close();
  }

  #schedulePump(): void {
    if (this.#pumpScheduled || this.#closed) return;
    this.#pumpScheduled = true;
    // One pump per loop turn, however many enqueues and completions happened in it.
    setImmediate(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  #pump(): void {
    if (this.#closed) return;
    for (const name of [...this.#ready]) {
      const globalFree = this.#o.workers - this.#total;
      if (globalFree <= 0) return;
      const free = Math.min(globalFree, this.#o.perFunction - (this.#inFlight.get(name) ?? 0));
      if (free <= 0) continue;
      const now = this.#o.clock.now();
      let claimed: ReturnType<QueueRepo["claim"]>;
      try {
        claimed = this.#o.queue.claim(name, free, now, now + this.#o.leaseMs(name), {
          enqueuedBefore: now - this.#o.policy.maxEventAgeMs,
          error: (attempts) => tooOld(this.#o.policy.maxEventAgeMs, attempts),
        });
      } catch (err) {
        this.#claimFailed(name, err);
        continue;
      }
      if (this.#claimFailures > 0) {
        this.#o.logger.info({ failures: this.#claimFailures }, "claiming async invocations works again");
        this.#claimFailures = 0;
      }
      this.#ready.delete(name);
      // A full claim may leave more behind: back of the line, so other functions get their turn.
      if (claimed.items.length === free) this.#ready.add(name);
      else this.#wakeWhenDue(name);
      for (const { id, callbackUrl } of claimed.expired) {
        this.#o.logger.info({ function: name, execution: id }, "async invocation dead-lettered: too old");
        if (callbackUrl) this.#o.callbacks.schedule(id, now);
      }
      for (const item of claimed.items) this.#run(item);
    }
  }

  /**
   * The function stays ready and the pump runs again after a backoff, rather than at the next enqueue or
   * sweep. Logged once per run of failures, not per attempt: a locked database could otherwise log a line
   * every few milliseconds.
   */
  #claimFailed(name: string, err: unknown): void {
    this.#claimFailures++;
    if (isStoreBusy(err)) this.#o.storeRetries?.retried?.("queue.claim");
    if (this.#claimFailures === 1) {
      this.#o.logger.error(
        { err, function: name },
        "could not claim async invocations; retrying until it works (logged once)",
      );
    }
    if (this.#retryTimer || this.#closed) return;
    this.#retryTimer = this.#o.clock.setTimeout(
      () => {
        this.#retryTimer = null;
        this.#schedulePump();
      },
      busyDelay(CLAIM_BACKOFF, Math.min(this.#claimFailures, 30)),
    );
  }

  /**
   * Writes an outcome, trying again while the database is locked: an invocation that ran must not stay
   * `running` (and run again when its lease runs out) because the execution writer was committing.
   * Nothing is written once close() has abandoned the deliveries (the store may be closed by then).
   */
  #writeOutcome(operation: string, write: () => void): Promise<void> {
    return retryWhileBusy(
      operation,
      () => {
        if (!this.#abandoned) write();
      },
      {
        clock: this.#o.clock,
        backoff: this.#o.completionBackoff ?? COMPLETION_BACKOFF,
        hooks: this.#o.storeRetries,
      },
    );
  }

  /** Sets a timer for the function's next queued invocation (a retry waiting out its backoff). */
  #wakeWhenDue(name: string): void {
    let due: number | undefined;
    try {
      due = this.#o.queue.nextDue(name);
    } catch (err) {
      this.#o.logger.error({ err, function: name }, "could not read the async queue");
      return;
    }
    if (due === undefined || this.#closed) return;
    const existing = this.#wakeups.get(name);
    if (existing && existing.at <= due) return;
    existing?.timer.cancel();
    const timer = this.#o.clock.setTimeout(
      () => {
        this.#wakeups.delete(name);
        this.wake([name]);
      },
      Math.max(0, due - this.#o.clock.now()),
    );
    this.#wakeups.set(name, { at: due, timer });
  }

  #run(item: QueueItem): void {
    const name = item.functionName;
    this.#inFlight.set(name, (this.#inFlight.get(name) ?? 0) + 1);
    this.#total++;
    const running = this.#deliver(item)
      .catch((err: unknown) => {
        // Nothing was recorded: the item stays `running` until the sweep hands it out again.
        this.#o.logger.error(
          { err, function: name, execution: item.id },
          "async delivery failed; the invocation runs again when its lease runs out",
        );
      })
      .finally(() => {
        this.#total--;
        const left = (this.#inFlight.get(name) ?? 1) - 1;
        if (left === 0) this.#inFlight.delete(name);
        else this.#inFlight.set(name, left);
        this.#delivering.delete(item.id);
        this.#schedulePump();
      });
    this.#delivering.set(item.id, running);
  }

  async #deliver(item: QueueItem): Promise<void> {
    const headers = {
      ...item.headers,
      "x-funcd-execution-id": item.id,
      "x-funcd-attempt": String(item.attempt),
    };
    const result = await this.#o.deliver({
      functionName: item.functionName,
      method: item.method,
      path: item.path,
      headers,
      body: item.body,
      keepBytes: RECORD_BODY_BYTES,
      cancel: this.#cancel,
    });
    if (this.#abandoned || (this.#closed && !result.reached)) return;
    const now = this.#o.clock.now();
    const attempt: AttemptRecord = {
      startedAt: result.startedAt,
      durationMs: result.durationMs,
      statusCode: result.statusCode,
      // Sync records call a 4xx answer a success (the function did its job); for an async invocation it
      // is a final failure, and its record says so.
      outcome: result.outcome === "success" && result.statusCode >= 400 ? "error" : result.outcome,
      error:
        result.errorText ?? (result.statusCode >= 400 ? `The function answered ${result.statusCode}` : null),
      coldStart: result.coldStart,
      instanceId: result.instanceId,
      revisionId: result.revisionId,
      responseBytes: result.bodyBytes,
      result: result.reached
        ? {
            statusCode: result.statusCode,
            headers: result.headers,
            ...captureBody(result.body, result.bodyBytes),
          }
        : null,
    };
    const decision = decide(
      {
        reached: result.reached,
        statusCode: result.statusCode,
        attempt: item.attempt,
        maxRetries: item.maxRetries,
        enqueuedAt: item.enqueuedAt,
      },
      now,
      this.#o.policy,
      this.#random,
    );
    const log = { function: item.functionName, execution: item.id, attempt: item.attempt };
    switch (decision.kind) {
      case "retry":
        await this.#writeOutcome("queue.retry", () =>
          this.#o.queue.retry(item.id, decision.runAt, attempt, decision.counted),
        );
        this.#o.logger.debug(
          { ...log, status: result.statusCode, runAt: decision.runAt },
          "async retry scheduled",
        );
        this.#wakeWhenDue(item.functionName);
        return;
      case "succeeded":
      case "failed":
        await this.#writeOutcome("queue.finish", () =>
          this.#o.queue.finish(item.id, decision.kind, now, attempt),
        );
        break;
      case "dead-letter": {
        const last = attempt.error ?? `status ${attempt.statusCode}`;
        await this.#writeOutcome("queue.finish", () =>
          this.#o.queue.finish(
            item.id,
            "dead-lettered",
            now,
            attempt,
            `${decision.reason}; last error: ${last}`,
          ),
        );
        this.#o.logger.info({ ...log, reason: decision.reason }, "async invocation dead-lettered");
        break;
      }
    }
    if (item.callbackUrl && !this.#abandoned) this.#o.callbacks.schedule(item.id, now);
  }

  #sweep(): void {
    if (this.#closed) return;
    const now = this.#o.clock.now();
    try {
      const recovered = this.#o.queue.recover(now, new Set(this.#delivering.keys()));
      if (recovered > 0)
        this.#o.logger.warn({ recovered }, "async invocations whose lease ran out are queued again");
      for (const name of this.#o.queue.dueFunctions(now)) this.#ready.add(name);
      const pruned = this.#o.queue.pruneDeadLetters(now - this.#o.deadLetterRetentionMs);
      if (pruned > 0) this.#o.logger.info({ pruned }, "dropped dead letters past retention");
    } catch (err) {
      if (isStoreBusy(err)) {
        // Nothing is lost: the next sweep looks again.
        this.#o.storeRetries?.retried?.("queue.recover");
        this.#o.logger.warn(
          { err },
          "async queue sweep found the database locked; the next sweep tries again",
        );
      } else this.#o.logger.error({ err }, "async queue sweep failed");
    }
    this.#schedulePump();
  }
}
