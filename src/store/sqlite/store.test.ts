import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FunctionSpecSchema } from "../../deploy/spec.js";
import { isFuncdError } from "../../shared/errors.js";
import type { ExecutionRecord, ManifestEntry, RevisionRecord, Store, StoredLogLine } from "../types.js";
import { MIGRATIONS, migrate, SCHEMA_VERSION } from "./migrations.js";
import { openSqliteStore, type SqliteStoreOptions } from "./open.js";

let dir: string;
let file: string;
const opened: Store[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "funcd-store-"));
  file = path.join(dir, "data", "funcd.db");
});

afterEach(() => {
  for (const store of opened.splice(0)) store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function open(options?: SqliteStoreOptions): Store {
  const store = openSqliteStore(file, options);
  opened.push(store);
  return store;
}

function reopen(store: Store, options?: SqliteStoreOptions): Store {
  store.close();
  return open(options);
}

const spec = (name: string) => FunctionSpecSchema.parse({ name });

function revision(functionName: string, number: number, files: ManifestEntry[] = []): RevisionRecord {
  return {
    id: `${functionName}-rev-${number}`,
    functionName,
    number,
    spec: spec(functionName),
    files,
    status: "ready",
    error: null,
    createdAt: 1_000 + number,
  };
}

function execution(id: string, functionName: string, startedAt: number): ExecutionRecord {
  return {
    id,
    functionName,
    revisionId: `${functionName}-rev-1`,
    trigger: "http",
    startedAt,
    durationMs: 12.5,
    statusCode: 200,
    outcome: "success",
    coldStart: false,
    instanceId: "i-1",
    error: null,
    requestBytes: 10,
    responseBytes: 20,
    requestId: `req-${id}`,
  };
}

function logLines(functionName: string, count: number, from = 0): Omit<StoredLogLine, "id">[] {
  return Array.from({ length: count }, (_, i) => ({
    time: 5_000 + from + i,
    functionName,
    revisionId: "r1",
    instanceId: "i1",
    stream: "stdout" as const,
    requestId: null,
    text: `line ${from + i}`,
  }));
}

describe("SQLite store", () => {
  it("a function survives closing and reopening the store", () => {
    let store = open();
    const record = { name: "sum", spec: spec("sum"), activeRevision: "abc", createdAt: 1, updatedAt: 2 };
    store.functions.put(record);
    store = reopen(store);
    expect(store.functions.get("sum")).toEqual(record);
    expect(store.functions.list()).toEqual([record]);
  });

  it("putting a function again replaces it, and delete reports whether it existed", () => {
    const store = open();
    store.functions.put({ name: "sum", spec: spec("sum"), activeRevision: null, createdAt: 1, updatedAt: 1 });
    store.functions.put({ name: "sum", spec: spec("sum"), activeRevision: "r2", createdAt: 1, updatedAt: 5 });
    expect(store.functions.list()).toHaveLength(1);
    expect(store.functions.get("sum")?.activeRevision).toBe("r2");
    expect(store.functions.delete("sum")).toBe(true);
    expect(store.functions.delete("sum")).toBe(false);
    expect(store.functions.get("sum")).toBeUndefined();
  });

  it("the database file is readable by its owner only", () => {
    open();
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  });

  it("putting the same bytes twice stores one blob with one hash", () => {
    const store = open();
    const a = store.blobs.put(Buffer.from("hello"));
    const b = store.blobs.put(Buffer.from("hello"));
    expect(a).toBe(b);
    expect(a).toBe("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    expect(store.blobs.get(a)?.toString()).toBe("hello");
    const db = new Database(file, { readonly: true });
    try {
      expect(db.prepare("SELECT COUNT(*) AS n FROM blobs").get()).toEqual({ n: 1 });
    } finally {
      db.close();
    }
  });

  it("garbage collection removes only blobs no revision references", () => {
    let clock = 0;
    const store = open({ clock: { now: () => clock }, blobGraceMs: 1000 });
    const kept = store.blobs.put(Buffer.from("kept"));
    const orphan = store.blobs.put(Buffer.from("orphan"));
    store.revisions.put(revision("sum", 1, [{ path: "handler.js", hash: kept, size: 4, mode: 0o644 }]));
    clock = 5000;
    expect(store.blobs.collectGarbage()).toBe(1);
    expect(store.blobs.get(kept)?.toString()).toBe("kept");
    expect(store.blobs.get(orphan)).toBeUndefined();
  });

  it("garbage collection spares unreferenced blobs stored within the grace period", () => {
    let clock = 0;
    const store = open({ clock: { now: () => clock }, blobGraceMs: 1000 });
    const pending = store.blobs.put(Buffer.from("being deployed"));
    clock = 500;
    expect(store.blobs.collectGarbage()).toBe(0);
    expect(store.blobs.get(pending)).toBeDefined();
    // Storing the same bytes again restarts the grace period.
    clock = 900;
    store.blobs.put(Buffer.from("being deployed"));
    clock = 1500;
    expect(store.blobs.collectGarbage()).toBe(0);
    clock = 2000;
    expect(store.blobs.collectGarbage()).toBe(1);
  });

  it("revisions list newest first and numbers increase per function", () => {
    const store = open();
    expect(store.revisions.nextNumber("sum")).toBe(1);
    const manifest = [{ path: "handler.js", hash: "h", size: 1, mode: 0o644 }];
    for (const n of [1, 2, 3]) {
      expect(store.revisions.nextNumber("sum")).toBe(n);
      store.revisions.put(revision("sum", n, manifest));
    }
    store.revisions.put(revision("other", 1));
    expect(store.revisions.nextNumber("sum")).toBe(4);
    expect(store.revisions.nextNumber("other")).toBe(2);
    expect(store.revisions.listFor("sum").map((r) => r.number)).toEqual([3, 2, 1]);
    expect(store.revisions.get("sum-rev-2")).toEqual(revision("sum", 2, manifest));
    expect(store.revisions.get("missing")).toBeUndefined();
  });

  it("a revision keeps its image and build log, and the store lists every image revisions run as", () => {
    const store = open();
    const built = { ...revision("sum", 1), image: "funcd/sum:0123456789abcdef", buildLog: "step 1/4\nok" };
    store.revisions.put(built);
    store.revisions.put({ ...revision("sum", 2), image: "funcd/sum:fedcba9876543210" });
    store.revisions.put(revision("sum", 3));
    store.revisions.put({ ...revision("other", 1), image: "funcd/sum:0123456789abcdef" });
    expect(reopen(store).revisions.get("sum-rev-1")).toEqual(built);
    const again = opened.at(-1) as Store;
    expect(again.revisions.get("sum-rev-3")).toEqual(revision("sum", 3));
    expect(again.revisions.images()).toEqual(
      new Map([
        ["funcd/sum:0123456789abcdef", ["other-rev-1", "sum-rev-1"]],
        ["funcd/sum:fedcba9876543210", ["sum-rev-2"]],
      ]),
    );
  });

  it("image use keeps the latest date per tag", () => {
    const store = open();
    store.images.touch("funcd/a:1", 2_000);
    store.images.touch("funcd/a:1", 1_000);
    store.images.touch("funcd/b:1", 1_500);
    expect(store.images.lastUsed("funcd/a:1")).toBe(2_000);
    expect(store.images.all()).toEqual(
      new Map([
        ["funcd/a:1", 2_000],
        ["funcd/b:1", 1_500],
      ]),
    );
    expect(store.images.forget("funcd/a:1")).toBe(true);
    expect(store.images.lastUsed("funcd/a:1")).toBeUndefined();
  });

  it("executions are paginated newest first with a before cursor", () => {
    const store = open();
    store.executions.insertMany(
      Array.from({ length: 7 }, (_, i) => execution(`e${i}`, i % 2 === 0 ? "sum" : "other", 100 + i)),
    );
    const all = store.executions.query({});
    expect(all.map((e) => e.id)).toEqual(["e6", "e5", "e4", "e3", "e2", "e1", "e0"]);
    expect(all[0]).toEqual(execution("e6", "sum", 106));

    const first = store.executions.query({ functionName: "sum", limit: 2 });
    expect(first.map((e) => e.id)).toEqual(["e6", "e4"]);
    const cursor = first.at(-1)?.startedAt;
    const second = store.executions.query({
      functionName: "sum",
      limit: 2,
      ...(cursor ? { before: cursor } : {}),
    });
    expect(second.map((e) => e.id)).toEqual(["e2", "e0"]);

    expect(store.executions.query({ since: 105 }).map((e) => e.id)).toEqual(["e6", "e5"]);
    expect(store.executions.get("e3")?.functionName).toBe("other");
  });

  it("execution queries default to 50 rows and never return more than 1000", () => {
    const store = open();
    store.executions.insertMany(Array.from({ length: 1200 }, (_, i) => execution(`e${i}`, "sum", i)));
    expect(store.executions.query({})).toHaveLength(50);
    expect(store.executions.query({ limit: 5000 })).toHaveLength(1000);
  });

  it("a failing execution batch stores none of its records", () => {
    const store = open();
    store.executions.insertMany([execution("dup", "sum", 1)]);
    expect(() =>
      store.executions.insertMany([execution("new", "sum", 2), execution("dup", "sum", 3)]),
    ).toThrow();
    expect(store.executions.get("new")).toBeUndefined();
  });

  it("executions can be filtered by outcome", () => {
    const store = open();
    store.executions.insertMany([
      execution("ok", "sum", 1),
      { ...execution("slow", "sum", 2), outcome: "timeout", statusCode: 504, coldStart: true },
    ]);
    const timeouts = store.executions.query({ functionName: "sum", outcome: "timeout" });
    expect(timeouts.map((e) => [e.id, e.coldStart])).toEqual([["slow", true]]);
  });

  it("log tail returns the newest lines oldest-first", () => {
    const store = open();
    store.logs.appendMany(logLines("sum", 10));
    store.logs.appendMany(logLines("other", 3));
    const tail = store.logs.query({ functionName: "sum", tail: 3 });
    expect(tail.map((l) => l.text)).toEqual(["line 7", "line 8", "line 9"]);
    expect(tail[0]).toMatchObject({ functionName: "sum", stream: "stdout", requestId: null, time: 5007 });
    expect(store.logs.query({ functionName: "sum" })).toHaveLength(10);
  });

  it("following logs returns only lines after the given id", () => {
    const store = open();
    store.logs.appendMany(logLines("sum", 3));
    const seen = store.logs.query({ functionName: "sum" });
    const lastId = seen.at(-1)?.id ?? 0;
    expect(store.logs.query({ functionName: "sum", afterId: lastId })).toEqual([]);
    store.logs.appendMany(logLines("sum", 2, 3));
    const next = store.logs.query({ functionName: "sum", afterId: lastId });
    expect(next.map((l) => l.text)).toEqual(["line 3", "line 4"]);
    expect(next.every((l) => l.id > lastId)).toBe(true);
  });

  it("logs can be filtered by request id", () => {
    const store = open();
    store.logs.appendMany(logLines("sum", 5).map((l, i) => (i === 2 ? { ...l, requestId: "req-1" } : l)));
    expect(store.logs.query({ functionName: "sum", requestId: "req-1" }).map((l) => l.text)).toEqual([
      "line 2",
    ]);
  });

  it("logs are pruned to the per-function bound", () => {
    const store = open({ logsPerFunction: 10 });
    // Appending past the bound prunes automatically, keeping the newest lines.
    store.logs.appendMany(logLines("sum", 25));
    expect(store.logs.query({ functionName: "sum" }).map((l) => l.text)).toEqual(
      logLines("sum", 10, 15).map((l) => l.text),
    );
    // An explicit prune keeps the newest N of every function.
    store.logs.appendMany(logLines("other", 8));
    expect(store.logs.prune(5)).toBe(5 + 3);
    expect(store.logs.query({ functionName: "sum" }).map((l) => l.text)).toEqual(
      logLines("sum", 5, 20).map((l) => l.text),
    );
    expect(store.logs.query({ functionName: "other" })).toHaveLength(5);
  });

  it("a chatty function's logs stay bounded across many batches", () => {
    const store = open({ logsPerFunction: 50 });
    for (let batch = 0; batch < 40; batch++) store.logs.appendMany(logLines("sum", 7, batch * 7));
    const lines = store.logs.query({ functionName: "sum" });
    expect(lines.length).toBeLessThanOrEqual(2 * 50);
    expect(lines.at(-1)?.text).toBe(`line ${40 * 7 - 1}`);
  });

  it("deleting a function's revisions/logs/executions leaves other functions' rows", () => {
    const store = open();
    for (const name of ["sum", "other"]) {
      store.revisions.put(revision(name, 1));
      store.executions.insertMany([execution(`${name}-e`, name, 1)]);
      store.logs.appendMany(logLines(name, 4));
    }
    store.transaction(() => {
      expect(store.revisions.deleteFor("sum")).toBe(1);
      expect(store.executions.deleteFor("sum")).toBe(1);
      expect(store.logs.deleteFor("sum")).toBe(4);
    });
    expect(store.revisions.listFor("sum")).toEqual([]);
    expect(store.executions.query({ functionName: "sum" })).toEqual([]);
    expect(store.logs.query({ functionName: "sum" })).toEqual([]);
    expect(store.revisions.listFor("other")).toHaveLength(1);
    expect(store.executions.query({ functionName: "other" })).toHaveLength(1);
    expect(store.logs.query({ functionName: "other" })).toHaveLength(4);
  });

  it("a transaction that throws leaves nothing behind", () => {
    const store = open();
    expect(() =>
      store.transaction(() => {
        store.functions.put({
          name: "sum",
          spec: spec("sum"),
          activeRevision: null,
          createdAt: 1,
          updatedAt: 1,
        });
        store.revisions.put(revision("sum", 1));
        throw new Error("deploy failed halfway");
      }),
    ).toThrow("deploy failed halfway");
    expect(store.functions.get("sum")).toBeUndefined();
    expect(store.revisions.listFor("sum")).toEqual([]);
  });

  it("a database from a newer funcd is refused with both versions in the message", () => {
    open().close();
    const db = new Database(file);
    db.pragma(`user_version = ${SCHEMA_VERSION + 41}`);
    db.close();
    let error: unknown;
    try {
      open();
    } catch (err) {
      error = err;
    }
    expect(isFuncdError(error)).toBe(true);
    const message = (error as Error).message;
    expect(message).toContain(`schema version is ${SCHEMA_VERSION + 41}`);
    expect(message).toContain(`up to version ${SCHEMA_VERSION}`);
    expect(message).toContain(file);
  });

  it("migrations run once (reopening does not re-run them)", () => {
    let store = open();
    store.functions.put({ name: "sum", spec: spec("sum"), activeRevision: null, createdAt: 1, updatedAt: 1 });
    // Migration 1 uses plain CREATE TABLE, so running it again would throw.
    store = reopen(store);
    expect(store.functions.get("sum")?.name).toBe("sum");
    store.close();

    // A counting migration shows each step runs exactly once across opens.
    const counting = [
      ...MIGRATIONS,
      {
        version: SCHEMA_VERSION + 1,
        name: "count",
        up: "CREATE TABLE runs (n); INSERT INTO runs VALUES (1);",
      },
    ];
    const db = new Database(file);
    try {
      expect(migrate(db, file, counting)).toEqual([SCHEMA_VERSION + 1]);
      expect(migrate(db, file, counting)).toEqual([]);
      expect(db.prepare("SELECT COUNT(*) AS n FROM runs").get()).toEqual({ n: 1 });
      expect(db.pragma("user_version", { simple: true })).toBe(SCHEMA_VERSION + 1);
    } finally {
      db.close();
    }
  });

  it("a failing migration leaves the database at the last complete version", () => {
    const db = new Database(path.join(dir, "partial.db"));
    try {
      const broken = [
        ...MIGRATIONS,
        { version: SCHEMA_VERSION + 1, name: "broken", up: "CREATE TABLE t (x); NOPE;" },
      ];
      expect(() => migrate(db, "partial.db", broken)).toThrow();
      expect(db.pragma("user_version", { simple: true })).toBe(SCHEMA_VERSION);
      expect(db.prepare("SELECT name FROM sqlite_master WHERE name = 't'").get()).toBeUndefined();
    } finally {
      db.close();
    }
  });
});

describe("execution retention", () => {
  it("prunes records older than the cut-off, then all but the newest N per function", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "funcd-store-prune-"));
    const store = openSqliteStore(path.join(dir, "funcd.db"));
    try {
      store.executions.insertMany([
        execution("old", "a", 10),
        ...Array.from({ length: 5 }, (_, i) => execution(`a${i}`, "a", 1000 + i)),
        ...Array.from({ length: 2 }, (_, i) => execution(`b${i}`, "b", 1000 + i)),
      ]);
      expect(store.executions.prune(100, 3)).toBe(3);
      expect(store.executions.query({ functionName: "a" }).map((e) => e.id)).toEqual(["a4", "a3", "a2"]);
      expect(store.executions.query({ functionName: "b" })).toHaveLength(2);
      expect(store.executions.get("a4")?.requestId).toBe("req-a4");
    } finally {
      store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
