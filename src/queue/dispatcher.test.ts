import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Delivered, Delivery } from "../gateway/gateway.js";
import { FuncdError } from "../shared/errors.js";
import { createLogger } from "../shared/logger.js";
import { ManualClock } from "../shared/manual-clock.js";
import { openSqliteStore } from "../store/sqlite/index.js";
import type { NewQueueItem, Store } from "../store/types.js";
import { CallbackSender, type CallbackTransport } from "./callbacks.js";
import { Dispatcher } from "./dispatcher.js";

const logger = createLogger("silent");
let dir: string;
let store: Store;
let clock: ManualClock;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "funcd-queue-"));
  store = openSqliteStore(path.join(dir, "funcd.db"), { fsyncEnqueue: false });
  clock = new ManualClock();
});

afterEach(() => {
  store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

let counter = 0;
function item(functionName: string, over: Partial<NewQueueItem> = {}): NewQueueItem {
  const id = `exec-${++counter}`;
  return {
    id,
    functionName,
    method: "POST",
    path: "/",
    prefix: `/function/${functionName}`,
    headers: { "x-request-id": id },
    body: Buffer.from(`{"n":${counter}}`),
    requestId: id,
    callbackUrl: null,
    maxRetries: 2,
    queuedAt: clock.now(),
    request: {
      method: "POST",
      path: "/",
      headers: {},
      body: "",
      encoding: "utf8",
      bytes: 0,
      truncated: false,
    },
    ...over,
  };
}

/** A function that answers from a script: `answer(delivery)` gives its status. */
class FakeFunction {
  readonly seen: Delivery[] = [];
  inFlight = 0;
  maxInFlight = 0;
  readonly #pending: (() => void)[] = [];
  hold = false;

  constructor(readonly answer: (d: Delivery) => number | FuncdError = () => 200) {}

  readonly deliver = async (d: Delivery): Promise<Delivered> => {
    this.seen.push(d);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    if (this.hold) await new Promise<void>((resolve) => this.#pending.push(resolve));
    this.inFlight--;
    const a = this.answer(d);
    const error = a instanceof FuncdError ? a : null;
    const status = error ? error.status : (a as number);
    const body = Buffer.from(status < 400 ? "ok" : "boom");
    return {
      reached: !(error && error.code === "FUNCTION_UNAVAILABLE"),
      statusCode: status,
      headers: { "content-type": "text/plain" },
      body,
      bodyBytes: body.length,
      error,
      errorText: error ? error.message : null,
      outcome: status < 500 ? "success" : "error",
      coldStart: false,
      instanceId: "i-1",
      revisionId: "r-1",
      startedAt: clock.now(),
      durationMs: 3,
    };
  };

  release(): void {
    this.hold = false;
    for (const resolve of this.#pending.splice(0)) resolve();
  }
}

function dispatcher(
  fn: FakeFunction,
  over: Partial<ConstructorParameters<typeof Dispatcher>[0]> = {},
  transport?: CallbackTransport,
) {
  const callbacks = new CallbackSender({
    queue: store.queue,
    executions: store.executions,
    clock,
    logger,
    retries: 2,
    timeoutMs: 1000,
    backoff: { baseMs: 1000, capMs: 10_000 },
    random: () => 0.5,
    ...(transport ? { transport } : {}),
  });
  return new Dispatcher({
    queue: store.queue,
    deliver: fn.deliver,
    callbacks,
    clock,
    logger,
    policy: { baseMs: 1000, capMs: 60_000, maxEventAgeMs: 3_600_000 },
    workers: 8,
    perFunction: 4,
    leaseMs: () => 60_000,
    deadLetterRetentionMs: 86_400_000,
    random: () => 0.5,
    ...over,
  });
}

/** Lets the dispatcher's setImmediate pumps and the fake deliveries run to quiet. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
}

function enqueue(...items: NewQueueItem[]): NewQueueItem[] {
  store.queue.enqueueMany(items);
  return items;
}

describe("Dispatcher", () => {
  it("delivers queued invocations oldest first with execution id and attempt headers", async () => {
    const fn = new FakeFunction();
    const d = dispatcher(fn, { perFunction: 1 });
    const items = enqueue(item("a"), item("a"), item("a"));
    d.start();
    await settle();
    expect(fn.seen.map((s) => s.headers["x-funcd-execution-id"])).toEqual(items.map((i) => i.id));
    expect(fn.seen.every((s) => s.headers["x-funcd-attempt"] === "1")).toBe(true);
    const record = store.executions.get(items[0]?.id ?? "");
    expect(record).toMatchObject({ state: "succeeded", attempt: 1, statusCode: 200, outcome: "success" });
    expect(record?.result).toMatchObject({ statusCode: 200, body: "ok", encoding: "utf8" });
    expect(store.queue.counts()).toEqual({ queued: 0, running: 0, "dead-lettered": 0 });
    await d.close();
  });

  it("keeps at most perFunction deliveries of one function and workers in all in flight", async () => {
    const fn = new FakeFunction();
    fn.hold = true;
    const d = dispatcher(fn, { perFunction: 3, workers: 5 });
    enqueue(...Array.from({ length: 10 }, () => item("a")), ...Array.from({ length: 10 }, () => item("b")));
    d.start();
    await settle();
    expect(fn.inFlight).toBe(5);
    expect(d.inFlight("a")).toBeLessThanOrEqual(3);
    expect(d.inFlight("b")).toBeLessThanOrEqual(3);
    while (fn.seen.length < 20 || fn.inFlight > 0) {
      fn.release();
      fn.hold = true;
      await settle();
    }
    expect(fn.maxInFlight).toBe(5);
    expect(store.queue.counts()).toEqual({ queued: 0, running: 0, "dead-lettered": 0 });
    await d.close();
  });

  it("retries a failing invocation after a backoff and records the attempts", async () => {
    const fn = new FakeFunction((del) => (del.headers["x-funcd-attempt"] === "3" ? 200 : 500));
    const d = dispatcher(fn);
    const [it1] = enqueue(item("a"));
    d.start();
    await settle();
    expect(fn.seen).toHaveLength(1);
    expect(store.executions.get(it1?.id ?? "")).toMatchObject({
      state: "queued",
      attempt: 1,
      statusCode: 500,
    });
    clock.advance(499); // first retry: half of 1000 ms with this random
    await settle();
    expect(fn.seen).toHaveLength(1);
    clock.advance(1);
    await settle();
    expect(fn.seen).toHaveLength(2);
    clock.advance(1000); // second retry: half of 2000 ms
    await settle();
    expect(fn.seen.map((s) => s.headers["x-funcd-attempt"])).toEqual(["1", "2", "3"]);
    expect(store.executions.get(it1?.id ?? "")).toMatchObject({
      state: "succeeded",
      attempt: 3,
      statusCode: 200,
    });
    await d.close();
  });

  it("does not retry a 4xx other than 408/429 and records it as failed", async () => {
    const fn = new FakeFunction(() => 422);
    const d = dispatcher(fn);
    const [one] = enqueue(item("a"));
    d.start();
    await settle();
    clock.advance(120_000);
    await settle();
    expect(fn.seen).toHaveLength(1);
    expect(store.executions.get(one?.id ?? "")).toMatchObject({
      state: "failed",
      outcome: "error",
      statusCode: 422,
    });
    expect(store.queue.deadLetters("a", 10)).toEqual([]);
    await d.close();
  });

  it("dead-letters after the last retry, and a redrive runs it again with attempts reset", async () => {
    let healthy = false;
    const fn = new FakeFunction(() => (healthy ? 200 : 503));
    const d = dispatcher(fn);
    const [one] = enqueue(item("a", { maxRetries: 1 }));
    d.start();
    await settle();
    clock.advance(60_000);
    await settle();
    expect(fn.seen).toHaveLength(2);
    const [letter] = store.queue.deadLetters("a", 10);
    expect(letter).toMatchObject({ id: one?.id, attempts: 2, statusCode: 503 });
    expect(letter?.error).toContain("2 attempts failed (1 retry allowed)");
    expect(store.executions.get(one?.id ?? "")).toMatchObject({ state: "dead-lettered", attempt: 2 });

    healthy = true;
    expect(store.queue.redrive("a", undefined, clock.now())).toEqual([one?.id]);
    d.wake(["a"]);
    await settle();
    expect(fn.seen.at(-1)?.headers["x-funcd-attempt"]).toBe("1");
    expect(store.executions.get(one?.id ?? "")).toMatchObject({ state: "succeeded", attempt: 1 });
    expect(store.queue.deadLetters("a", 10)).toEqual([]);
    await d.close();
  });

  it("an invocation no instance could take is retried without using up its retries", async () => {
    let calls = 0;
    const fn = new FakeFunction(() =>
      ++calls <= 3 ? new FuncdError("FUNCTION_UNAVAILABLE", "no instance ready") : 200,
    );
    const d = dispatcher(fn);
    const [one] = enqueue(item("a", { maxRetries: 0 }));
    d.start();
    for (let i = 0; i < 4; i++) {
      await settle();
      clock.advance(1000);
    }
    await settle();
    expect(calls).toBe(4);
    expect(fn.seen.map((s) => s.headers["x-funcd-attempt"])).toEqual(["1", "1", "1", "1"]);
    expect(store.executions.get(one?.id ?? "")).toMatchObject({ state: "succeeded", attempt: 1 });
    await d.close();
  });

  it("an invocation older than the maximum event age is dead-lettered without another attempt", async () => {
    const fn = new FakeFunction(() => 500);
    const d = dispatcher(fn, { policy: { baseMs: 10_000, capMs: 10_000, maxEventAgeMs: 30_000 } });
    const [stale] = enqueue(item("a"));
    clock.advance(31_000);
    const [fresh] = enqueue(item("a", { maxRetries: 10 }));
    d.start();
    await settle();
    expect(fn.seen.map((s) => s.headers["x-funcd-execution-id"])).toEqual([fresh?.id]);
    const stored = store.executions.get(stale?.id ?? "");
    expect(stored).toMatchObject({ state: "dead-lettered", attempt: 0 });
    expect(stored?.error).toContain("maximum event age of 30000 ms");
    for (let i = 0; i < 10; i++) {
      clock.advance(10_000);
      await settle();
    }
    expect(store.executions.get(fresh?.id ?? "")?.state).toBe("dead-lettered");
    expect(fn.seen.length).toBeLessThan(6);
    await d.close();
  });

  it("start() queues again what a crashed run left running, keeping the attempt count", async () => {
    const [one] = enqueue(item("a"));
    store.queue.claim("a", 10, clock.now(), clock.now() + 60_000, { enqueuedBefore: 0, error: () => "" });
    expect(store.queue.counts().running).toBe(1);
    const fn = new FakeFunction();
    const d = dispatcher(fn);
    d.start();
    await settle();
    expect(fn.seen.map((s) => s.headers["x-funcd-attempt"])).toEqual(["2"]);
    expect(store.executions.get(one?.id ?? "")).toMatchObject({ state: "succeeded", attempt: 2 });
    await d.close();
  });

  it("sends the result to the callback URL, retrying until it answers 2xx", async () => {
    const statuses = [500, 502, 200];
    const sent: { url: string; body: Record<string, unknown> }[] = [];
    const transport: CallbackTransport = async (url, body) => {
      sent.push({ url, body: JSON.parse(body) as Record<string, unknown> });
      return statuses.shift() ?? 200;
    };
    const fn = new FakeFunction();
    const d = dispatcher(fn, {}, transport);
    const [one] = enqueue(item("a", { callbackUrl: "http://127.0.0.1:9/done" }));
    d.start();
    await settle();
    expect(sent).toHaveLength(1);
    expect(sent[0]?.body).toMatchObject({
      executionId: one?.id,
      function: "a",
      status: "succeeded",
      statusCode: 200,
      attempts: 1,
      body: "ok",
      encoding: "utf8",
    });
    expect(store.executions.get(one?.id ?? "")?.callback).toMatchObject({
      status: "pending",
      attempts: 1,
      statusCode: 500,
    });
    clock.advance(500);
    await settle();
    clock.advance(1000);
    await settle();
    expect(sent).toHaveLength(3);
    expect(store.executions.get(one?.id ?? "")?.callback).toMatchObject({
      status: "delivered",
      attempts: 3,
      statusCode: 200,
      error: null,
    });
    // Delivered: nothing of the invocation is left in the queue.
    expect(store.queue.pendingCallbacks()).toEqual([]);
    await d.close();
  });

  it("gives up on a callback after its retries and records the failure", async () => {
    const transport: CallbackTransport = async () => {
      throw new Error("connect ECONNREFUSED 127.0.0.1:9");
    };
    const fn = new FakeFunction(() => 400);
    const d = dispatcher(fn, {}, transport);
    const [one] = enqueue(item("a", { callbackUrl: "http://127.0.0.1:9/done" }));
    d.start();
    for (let i = 0; i < 5; i++) {
      await settle();
      clock.advance(10_000);
    }
    expect(store.executions.get(one?.id ?? "")?.callback).toMatchObject({
      status: "failed",
      attempts: 3,
      error: "connect ECONNREFUSED 127.0.0.1:9",
    });
    expect(store.queue.pendingCallbacks()).toEqual([]);
    await d.close();
  });

  it("a pending callback left by a previous run is sent after start()", async () => {
    const sent: string[] = [];
    const [one] = enqueue(item("a", { callbackUrl: "http://127.0.0.1:9/done" }));
    const [claimed] = store.queue.claim("a", 1, clock.now(), clock.now() + 1000, {
      enqueuedBefore: 0,
      error: () => "",
    }).items;
    store.queue.finish(claimed?.id ?? "", "succeeded", clock.now(), null);
    expect(store.queue.pendingCallbacks()).toHaveLength(1);
    const d = dispatcher(new FakeFunction(), {}, async (_url, body) => {
      sent.push((JSON.parse(body) as { executionId: string }).executionId);
      return 204;
    });
    d.start();
    await settle();
    expect(sent).toEqual([one?.id]);
    await d.close();
  });

  it("dropping a deleted function's queue leaves nothing to deliver", async () => {
    const fn = new FakeFunction();
    enqueue(item("gone"), item("gone"), item("kept"));
    expect(store.queue.dropFor("gone")).toBe(2);
    const d = dispatcher(fn);
    d.start();
    await settle();
    expect(fn.seen.map((s) => s.functionName)).toEqual(["kept"]);
    await d.close();
  });
});
