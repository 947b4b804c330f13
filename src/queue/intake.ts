import type { IncomingMessage, ServerResponse } from "node:http";
import { type AsyncCall, type AsyncIntake, forwardHeaders, tooLarge } from "../gateway/gateway.js";
import { sendProblem } from "../gateway/problem.js";
import type { Clock } from "../shared/clock.js";
import { FuncdError, messageOf } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import { isStoreBusy } from "../store/busy.js";
import type { NewQueueItem, QueueRepo } from "../store/types.js";
import { captureBody, redactHeaders } from "./capture.js";
import { type BusyBackoff, busyDelay, type StoreRetryHooks } from "./store-retry.js";

export interface IntakeOptions {
  queue: QueueRepo;
  clock: Clock;
  logger: Logger;
  maxBodyBytes: number;
  /** Retries after the first attempt unless the request's `X-Funcd-Retries` says otherwise (0–10). */
  defaultRetries: number;
  /** Told which functions got new work, once it is committed. */
  onEnqueued: (functionNames: Set<string>) => void;
  /** Told when an enqueue found the database locked and is tried again, or given up (metrics). */
  storeRetries?: StoreRetryHooks;
}

/**
 * An enqueue that finds the database locked is tried again 3 times over ~350 ms (the client is waiting
 * for its 202), then answered 503 with Retry-After.
 */
const ENQUEUE_BACKOFF: BusyBackoff = { attempts: 4, baseMs: 50, capMs: 200 };

/** Request headers that steer funcd and are not passed to the function. */
const CONTROL_HEADERS = ["x-callback-url", "x-invocation-type", "content-length"];

interface Pending {
  item: NewQueueItem;
  resolve(): void;
  reject(err: unknown): void;
}

/**
 * The async entry point: reads the whole request (up to the body limit),
 * commits it to the store and only then answers 202 with the execution id.
 * Enqueues that arrive while a commit runs are committed together in the next
 * one (group commit), so the rate is bounded by transactions, not rows.
 */
export class QueueIntake implements AsyncIntake {
  readonly #o: IntakeOptions;
  #pending: Pending[] = [];
  #scheduled = false;
  /** Failed attempts at the batch now waiting to be committed. */
  #failures = 0;

  constructor(options: IntakeOptions) {
    this.#o = options;
  }

  readonly accept = (req: IncomingMessage, res: ServerResponse, call: AsyncCall): void => {
    void this.#accept(req, res, call);
  };

  async #accept(req: IncomingMessage, res: ServerResponse, call: AsyncCall): Promise<void> {
    const instance = req.url;
    let item: NewQueueItem;
    try {
      const callbackUrl = parseCallbackUrl(req.headers["x-callback-url"]);
      const maxRetries = parseRetries(req.headers["x-funcd-retries"], this.#o.defaultRetries);
      const method = req.method ?? "POST";
      const body = method === "GET" || method === "HEAD" ? null : await readBody(req, this.#o.maxBodyBytes);
      const headers = forwardHeaders(
        req.headers,
        call.requestId,
        call.match.prefix,
        req.socket.remoteAddress,
      );
      for (const name of CONTROL_HEADERS) delete headers[name];
      const path = call.match.subPath + call.search;
      item = {
        id: call.executionId,
        functionName: call.match.functionName,
        method,
        path,
        prefix: call.match.prefix,
        headers,
        body: body && body.length > 0 ? body : null,
        requestId: call.requestId,
        callbackUrl,
        maxRetries,
        queuedAt: this.#o.clock.now(),
        request: { method, path, headers: redactHeaders(headers), ...captureBody(body) },
      };
    } catch (err) {
      req.resume();
      if (res.destroyed) return;
      sendProblem(
        res,
        err instanceof FuncdError ? err : new FuncdError("BAD_REQUEST", messageOf(err)),
        instance,
      );
      return;
    }

    try {
      await this.#commit(item);
    } catch (err) {
      this.#o.logger.error({ err, function: item.functionName }, "could not queue an async invocation");
      sendProblem(
        res,
        new FuncdError(
          "QUEUE_UNAVAILABLE",
          `The invocation of "${item.functionName}" could not be stored: ${messageOf(err)}`,
          {
            retryAfter: 1,
          },
        ),
        instance,
      );
      return;
    }
    const location = `/api/v1/executions/${encodeURIComponent(item.id)}`;
    const body = JSON.stringify({ executionId: item.id, status: "queued", location });
    res.writeHead(202, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
      location,
    });
    res.end(body);
  }

  /** Resolves once the item is committed, together with whatever else arrived meanwhile. */
  #commit(item: NewQueueItem): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ item, resolve, reject });
      if (this.#scheduled) return;
      this.#scheduled = true;
      // setImmediate runs after the poll phase: every request read in this loop turn joins the batch.
      setImmediate(() => this.#flush());
    });
  }

  #flush(): void {
    this.#scheduled = false;
    const batch = this.#pending;
    this.#pending = [];
    if (batch.length === 0) return;
    try {
      this.#o.queue.enqueueMany(batch.map((p) => p.item));
    } catch (err) {
      if (isStoreBusy(err)) {
        if (++this.#failures < ENQUEUE_BACKOFF.attempts) {
          this.#o.storeRetries?.retried?.("queue.enqueue");
          // The batch waits for the next attempt, and whatever arrives meanwhile joins it.
          this.#pending = batch.concat(this.#pending);
          this.#scheduled = true;
          this.#o.clock.setTimeout(() => this.#flush(), busyDelay(ENQUEUE_BACKOFF, this.#failures));
          return;
        }
        this.#o.storeRetries?.gaveUp?.("queue.enqueue");
      }
      this.#failures = 0;
      for (const p of batch) p.reject(err);
      return;
    }
    this.#failures = 0;
    for (const p of batch) p.resolve();
    this.#o.onEnqueued(new Set(batch.map((p) => p.item.functionName)));
  }
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > limit) throw tooLarge(declared, limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge(size, limit);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** `X-Callback-Url`: an absolute http(s) URL, or absent. */
export function parseCallbackUrl(value: string | string[] | undefined): string | null {
  const raw = first(value)?.trim();
  if (!raw) return null;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new FuncdError("INVALID_CALLBACK_URL", `X-Callback-Url "${raw}" is not an absolute URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new FuncdError(
      "INVALID_CALLBACK_URL",
      `X-Callback-Url "${raw}" must be an http or https URL, not ${url.protocol.replace(/:$/, "")}`,
    );
  }
  return url.href;
}

/** `X-Funcd-Retries`: 0 to 10 retries after the first attempt. */
export function parseRetries(value: string | string[] | undefined, fallback: number): number {
  const raw = first(value)?.trim();
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 10) {
    throw new FuncdError("BAD_REQUEST", `X-Funcd-Retries must be a whole number from 0 to 10, not "${raw}"`);
  }
  return n;
}
