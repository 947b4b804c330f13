import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { WorkerExecutionSink } from "../../src/observability/worker-sink.js";
import { timeOrderedId } from "../../src/shared/ids.js";
import { createLogger } from "../../src/shared/logger.js";
import { openSqliteStore } from "../../src/store/sqlite/index.js";

/** The writer thread runs from the build (`dist/`, made by `npm test`), as in the daemon. */
const WRITER = new URL("../../dist/observability/execution-writer.js", import.meta.url);
const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

function record(i: number) {
  return {
    id: timeOrderedId(),
    functionName: "hello",
    revisionId: "r1",
    trigger: "http" as const,
    startedAt: 1_000 + i,
    durationMs: 1,
    statusCode: 200,
    outcome: "success" as const,
    coldStart: false,
    instanceId: "hello-1",
    error: null,
    requestBytes: 0,
    responseBytes: 5,
    requestId: null,
  };
}

async function waitFor(check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await sleep(10);
}

/** A store in a fresh folder and a writer thread on its file, with these backlog limits. */
async function openWriter(limits: { escalateAt: number; relaxAt: number; dropAt: number }) {
  const dir = await mkdtemp(path.join(tmpdir(), "funcd-writer-"));
  dirs.push(dir);
  const file = path.join(dir, "funcd.db");
  const store = openSqliteStore(file);
  const sink = new WorkerExecutionSink(file, createLogger("silent"), limits, WRITER);
  return { store, sink };
}

describe("execution writer thread", () => {
  it("writes every batch handed to it, even past the backlog that raises its priority", async () => {
    const { store, sink } = await openWriter({ escalateAt: 50, relaxAt: 10, dropAt: 10_000 });
    for (let b = 0; b < 20; b++) sink.insertMany(Array.from({ length: 25 }, (_, i) => record(b * 25 + i)));
    await waitFor(() => sink.waiting === 0);
    expect(sink.waiting).toBe(0);
    expect(sink.dropped).toBe(0);
    expect(store.executions.query({ functionName: "hello", limit: 1000 })).toHaveLength(500);
    await sink.close();
    store.close();
  });

  it("drops and counts batches past its bound instead of growing without limit", async () => {
    const { store, sink } = await openWriter({ escalateAt: 100, relaxAt: 10, dropAt: 100 });
    // Handed over in one go: the writer has not answered yet, so the second batch finds 100 waiting.
    sink.insertMany(Array.from({ length: 100 }, (_, i) => record(i)));
    sink.insertMany(Array.from({ length: 30 }, (_, i) => record(100 + i)));
    expect(sink.dropped).toBe(30);
    await sink.close();
    expect(store.executions.query({ functionName: "hello", limit: 1000 })).toHaveLength(100);
    store.close();
  });
});
