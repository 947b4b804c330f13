import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import type { Delivered, Delivery } from "../../src/gateway/gateway.js";
import { WorkerExecutionSink } from "../../src/observability/worker-sink.js";
import { CallbackSender } from "../../src/queue/callbacks.js";
import { Dispatcher } from "../../src/queue/dispatcher.js";
import { systemClock } from "../../src/shared/clock.js";
import { timeOrderedId } from "../../src/shared/ids.js";
import { createLogger } from "../../src/shared/logger.js";
import { openSqliteStore } from "../../src/store/sqlite/index.js";
import type { ExecutionRecord, NewQueueItem } from "../../src/store/types.js";

/**
 * The daemon's two SQLite connections at once: the queue's (claims and completions on the main thread) and
 * the execution writer's (sync records, on its own thread from `dist/`, as in the daemon). Issue 21: under
 * load the queue's transactions failed with "database is locked" and finished invocations ran again.
 */
const WRITER = new URL("../../dist/observability/execution-writer.js", import.meta.url);
const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** Log lines as parsed JSON, to assert on what the daemon would have logged. */
function capturingLogger() {
  const lines: { level: number; msg: string; err?: { message?: string } }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split("\n")) if (line.trim()) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: createLogger("info", stream), lines };
}

function syncRecord(i: number): ExecutionRecord {
  return {
    id: timeOrderedId(),
    functionName: "hello",
    revisionId: "r1",
    trigger: "http",
    startedAt: Date.now() + i,
    durationMs: 1,
    statusCode: 200,
    outcome: "success",
    coldStart: false,
    instanceId: "hello-1",
    error: null,
    requestBytes: 0,
    responseBytes: 5,
    requestId: null,
  };
}

function asyncItem(functionName: string): NewQueueItem {
  const id = timeOrderedId();
  return {
    id,
    functionName,
    method: "POST",
    path: "/",
    prefix: `/async-function/${functionName}`,
    headers: { "content-type": "application/json" },
    body: Buffer.from(`{"id":"${id}"}`),
    requestId: id,
    callbackUrl: null,
    maxRetries: 2,
    queuedAt: Date.now(),
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

/** A function that counts deliveries by execution id and answers 200 after a turn of the event loop. */
function recordingFunction() {
  const deliveries = new Map<string, number>();
  const deliver = async (d: Delivery): Promise<Delivered> => {
    const id = String(d.headers["x-funcd-execution-id"]);
    deliveries.set(id, (deliveries.get(id) ?? 0) + 1);
    const startedAt = Date.now();
    await new Promise((resolve) => setImmediate(resolve));
    const body = Buffer.from("ok");
    return {
      reached: true,
      statusCode: 200,
      headers: { "content-type": "text/plain" },
      body,
      bodyBytes: body.length,
      error: null,
      errorText: null,
      outcome: "success",
      coldStart: false,
      instanceId: "i-1",
      revisionId: "r-1",
      startedAt,
      durationMs: Date.now() - startedAt,
    };
  };
  return { deliveries, deliver };
}

describe("async queue beside the execution writer", () => {
  it("claims and finishes thousands of invocations with no busy error and no second delivery", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "funcd-contention-"));
    dirs.push(dir);
    const file = path.join(dir, "funcd.db");
    const { logger, lines } = capturingLogger();
    const store = openSqliteStore(file, { fsyncEnqueue: false });
    const retried: string[] = [];
    const sink = new WorkerExecutionSink(file, logger, { onBusyRetry: (op) => retried.push(op) }, WRITER);
    const fn = recordingFunction();
    const callbacks = new CallbackSender({
      queue: store.queue,
      executions: store.executions,
      clock: systemClock,
      logger,
      retries: 0,
      timeoutMs: 1000,
      backoff: { baseMs: 1000, capMs: 1000 },
    });
    // A short lease and a fast sweep: an invocation whose completion was not written is handed out again
    // within the test, as it would be 30 s later in the daemon.
    const dispatcher = new Dispatcher({
      queue: store.queue,
      deliver: fn.deliver,
      callbacks,
      clock: systemClock,
      logger,
      policy: { baseMs: 100, capMs: 1000, maxEventAgeMs: 3_600_000 },
      workers: 32,
      perFunction: 16,
      leaseMs: () => 300,
      deadLetterRetentionMs: 3_600_000,
      sweepEveryMs: 100,
      storeRetries: { retried: (op) => retried.push(op) },
    });
    dispatcher.start();

    // The writer commits a batch of sync records every millisecond or two, as under ~2,000 req/s of sync load.
    let writing = true;
    const writer = (async () => {
      let i = 0;
      while (writing) {
        sink.insertMany(Array.from({ length: 50 }, () => syncRecord(i++)));
        await sleep(1);
      }
    })();

    const functions = ["a", "b", "c", "d"];
    const accepted: string[] = [];
    for (let round = 0; round < 250; round++) {
      const batch = functions.flatMap((name) => [asyncItem(name), asyncItem(name)]);
      store.queue.enqueueMany(batch);
      accepted.push(...batch.map((b) => b.id));
      dispatcher.wake(functions);
      await sleep(2);
    }
    // Every accepted invocation delivered and its completion written, or the 45 s deadline.
    const deadline = Date.now() + 45_000;
    const settled = () => {
      const counts = store.queue.counts();
      return counts.queued + counts.running === 0 && dispatcher.inFlight() === 0;
    };
    while (!settled() && Date.now() < deadline) await sleep(50);
    // Longer than a lease and a sweep: a completion that was lost would now be delivered a second time.
    await sleep(600);
    writing = false;
    await writer;
    await dispatcher.close();
    await sink.close();

    const problems = lines.filter((l) => l.level >= 40).map((l) => `${l.msg}: ${l.err?.message ?? ""}`);
    expect(problems).toEqual([]);
    // Write transactions wait for the lock inside SQLite (busy_timeout): not one needed the queue's retries.
    expect(retried).toEqual([]);
    expect(accepted).toHaveLength(2000);
    expect(fn.deliveries.size).toBe(accepted.length);
    const twice = [...fn.deliveries].filter(([, n]) => n > 1);
    expect(twice).toEqual([]);
    expect(store.queue.counts()).toEqual({ queued: 0, running: 0, "dead-lettered": 0 });
    const states = new Set(accepted.map((id) => store.executions.get(id)?.state));
    expect([...states]).toEqual(["succeeded"]);
    store.close();
  });
});
