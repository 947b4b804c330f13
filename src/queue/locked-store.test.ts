import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import Database from "better-sqlite3";
import { request } from "undici";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Delivered, Delivery } from "../gateway/gateway.js";
import { createLogger } from "../shared/logger.js";
import { ManualClock } from "../shared/manual-clock.js";
import { openSqliteStore } from "../store/sqlite/index.js";
import type { NewQueueItem, Store } from "../store/types.js";
import { CallbackSender } from "./callbacks.js";
import { Dispatcher } from "./dispatcher.js";
import { QueueIntake } from "./intake.js";
import type { StoreRetryHooks } from "./store-retry.js";

/**
 * The queue when another connection holds SQLite's write lock for longer than busy_timeout (shortened to
 * 20 ms here): claims, completions and enqueues are tried again, not lost, logged once, and counted.
 */
let dir: string;
let file: string;
let store: Store;
let clock: ManualClock;
let logs: { level: number; msg: string }[];
let retries: { retried: string[]; gaveUp: string[] };
let hooks: StoreRetryHooks;
const open: Database.Database[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "funcd-locked-"));
  file = path.join(dir, "funcd.db");
  store = openSqliteStore(file, { fsyncEnqueue: false, busyTimeoutMs: 20 });
  clock = new ManualClock();
  logs = [];
  retries = { retried: [], gaveUp: [] };
  hooks = { retried: (op) => retries.retried.push(op), gaveUp: (op) => retries.gaveUp.push(op) };
});

afterEach(() => {
  for (const db of open.splice(0)) db.close();
  store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const logger = createLogger(
  "debug",
  new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n")) if (line.trim()) logs.push(JSON.parse(line));
      done();
    },
  }),
);
const errors = () => logs.filter((l) => l.level >= 50).map((l) => l.msg);

/** A second connection (as the execution writer's thread has) holding the write lock until released. */
function holdWriteLock(): { release(): void } {
  const other = new Database(file);
  open.push(other);
  other.exec("BEGIN IMMEDIATE");
  return { release: () => other.exec("COMMIT") };
}

let counter = 0;
function item(functionName: string): NewQueueItem {
  const id = `exec-${++counter}`;
  return {
    id,
    functionName,
    method: "POST",
    path: "/",
    prefix: `/async-function/${functionName}`,
    headers: {},
    body: Buffer.from("{}"),
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
  };
}

/** A function that answers 200, holding each delivery until `release()` while `hold` is set. */
class RecordingFunction {
  readonly seen: string[] = [];
  hold = false;
  readonly #pending: (() => void)[] = [];

  readonly deliver = async (d: Delivery): Promise<Delivered> => {
    this.seen.push(String(d.headers["x-funcd-execution-id"]));
    if (this.hold) await new Promise<void>((resolve) => this.#pending.push(resolve));
    const body = Buffer.from("ok");
    return {
      reached: true,
      statusCode: 200,
      headers: {},
      body,
      bodyBytes: body.length,
      error: null,
      errorText: null,
      outcome: "success",
      coldStart: false,
      instanceId: "i-1",
      revisionId: "r-1",
      startedAt: clock.now(),
      durationMs: 1,
    };
  };

  release(): void {
    this.hold = false;
    for (const resolve of this.#pending.splice(0)) resolve();
  }
}

function dispatcher(fn: RecordingFunction, over: Partial<ConstructorParameters<typeof Dispatcher>[0]> = {}) {
  const callbacks = new CallbackSender({
    queue: store.queue,
    executions: store.executions,
    clock,
    logger,
    retries: 0,
    timeoutMs: 1000,
    backoff: { baseMs: 1000, capMs: 1000 },
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
    storeRetries: hooks,
    ...over,
  });
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
}

describe("Dispatcher on a locked database", () => {
  it("writes a completion that found the database locked once the lock is gone, and delivers it only once", async () => {
    const fn = new RecordingFunction();
    fn.hold = true;
    const d = dispatcher(fn);
    const [one] = [item("a")];
    store.queue.enqueueMany([one as NewQueueItem]);
    d.start();
    await settle();
    expect(fn.seen).toEqual([one?.id]);

    const lock = holdWriteLock();
    fn.release();
    await settle();
    clock.advance(50);
    await settle();
    expect(retries.retried).toEqual(["queue.finish", "queue.finish"]);
    expect(store.executions.get(one?.id ?? "")?.state).toBe("running");

    lock.release();
    clock.advance(100);
    await settle();
    expect(store.executions.get(one?.id ?? "")).toMatchObject({ state: "succeeded", statusCode: 200 });
    expect(store.queue.counts()).toEqual({ queued: 0, running: 0, "dead-lettered": 0 });
    // Past the lease and a sweep: nothing is handed out again.
    clock.advance(120_000);
    await settle();
    expect(fn.seen).toEqual([one?.id]);
    expect(errors()).toEqual([]);
    expect(retries.gaveUp).toEqual([]);
    await d.close();
  });

  it("gives a completion up after its attempts, logs it once, and the lease hands the invocation out again", async () => {
    const fn = new RecordingFunction();
    fn.hold = true;
    const d = dispatcher(fn, { completionBackoff: { attempts: 3, baseMs: 10, capMs: 10 } });
    const one = item("a");
    store.queue.enqueueMany([one]);
    d.start();
    await settle();

    const lock = holdWriteLock();
    fn.release();
    await settle();
    clock.advance(10);
    await settle();
    clock.advance(10);
    await settle();
    expect(retries.retried).toEqual(["queue.finish", "queue.finish"]);
    expect(retries.gaveUp).toEqual(["queue.finish"]);
    expect(errors()).toEqual(["async delivery failed; the invocation runs again when its lease runs out"]);

    lock.release();
    clock.advance(90_000); // past the 60 s lease and the next sweep
    await settle();
    expect(fn.seen).toEqual([one.id, one.id]);
    expect(store.executions.get(one.id)).toMatchObject({ state: "succeeded", attempt: 2 });
    await d.close();
  });

  it("retries claims that find the database locked, logs the failure once and the recovery once", async () => {
    const fn = new RecordingFunction();
    const d = dispatcher(fn);
    const items = [item("a"), item("a"), item("a")];
    store.queue.enqueueMany(items);
    d.start(); // recovers and finds "a" due; the claim runs on the next turn of the loop
    const lock = holdWriteLock();
    await settle();
    for (const ms of [20, 40, 80]) {
      clock.advance(ms);
      await settle();
    }
    expect(fn.seen).toEqual([]);
    expect(retries.retried).toEqual(["queue.claim", "queue.claim", "queue.claim", "queue.claim"]);
    expect(errors()).toEqual(["could not claim async invocations; retrying until it works (logged once)"]);

    lock.release();
    clock.advance(160);
    await settle();
    expect(fn.seen).toEqual(items.map((i) => i.id));
    expect(store.queue.counts()).toEqual({ queued: 0, running: 0, "dead-lettered": 0 });
    expect(logs.filter((l) => l.msg === "claiming async invocations works again")).toHaveLength(1);
    expect(errors()).toHaveLength(1);
    await d.close();
  });
});

describe("QueueIntake on a locked database", () => {
  let server: http.Server;
  let url: string;

  beforeEach(async () => {
    const intake = new QueueIntake({
      queue: store.queue,
      clock,
      logger,
      maxBodyBytes: 1024,
      defaultRetries: 2,
      onEnqueued: () => {},
      storeRetries: hooks,
    });
    let n = 0;
    server = http.createServer((req, res) =>
      intake.accept(req, res, {
        match: { functionName: "fn", subPath: "/", prefix: "/async-function/fn" },
        search: "",
        requestId: `req-${++n}`,
        executionId: `locked-exec-${n}`,
      }),
    );
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterEach(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  async function until(check: () => boolean): Promise<void> {
    for (let i = 0; i < 200 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  }

  it("commits an enqueue that found the database locked once the lock is gone and answers 202", async () => {
    const lock = holdWriteLock();
    const answer = request(url, { method: "POST", body: '{"x":1}' });
    await until(() => retries.retried.length > 0);
    expect(retries.retried).toEqual(["queue.enqueue"]);
    lock.release();
    clock.advance(50);
    const res = await answer;
    expect(res.statusCode).toBe(202);
    const body = (await res.body.json()) as { executionId: string };
    expect(store.executions.get(body.executionId)?.state).toBe("queued");
    expect(errors()).toEqual([]);
  });

  it("answers 503 with Retry-After when the database stays locked through every attempt", async () => {
    const lock = holdWriteLock();
    const answer = request(url, { method: "POST", body: '{"x":1}' });
    for (let attempt = 1; attempt < 4; attempt++) {
      await until(() => retries.retried.length >= attempt);
      clock.advance(200);
    }
    const res = await answer;
    expect(res.statusCode).toBe(503);
    expect(res.headers["retry-after"]).toBe("1");
    expect(((await res.body.json()) as { type: string }).type).toContain("queue-unavailable");
    expect(retries).toEqual({
      retried: ["queue.enqueue", "queue.enqueue", "queue.enqueue"],
      gaveUp: ["queue.enqueue"],
    });
    lock.release();
    expect(store.queue.counts()).toEqual({ queued: 0, running: 0, "dead-lettered": 0 });
  });
});
