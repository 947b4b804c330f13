import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isStoreBusy } from "../busy.js";
import { writeTransaction } from "./write-transaction.js";

let dir: string;
let ours: Database.Database;
let theirs: Database.Database;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "funcd-write-tx-"));
  const file = path.join(dir, "test.db");
  ours = new Database(file);
  ours.pragma("journal_mode = WAL");
  ours.exec("CREATE TABLE t (n INTEGER)");
  theirs = new Database(file);
  theirs.pragma("busy_timeout = 0");
});

afterEach(() => {
  theirs.close();
  ours.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("writeTransaction", () => {
  it("holds the write lock from its start, so no other connection commits between its read and its write", () => {
    let theirWrite: unknown;
    const readThenWrite = writeTransaction(ours, "test.readThenWrite", () => {
      const { n } = ours.prepare("SELECT COUNT(*) AS n FROM t").get() as { n: number };
      try {
        theirs.exec("INSERT INTO t VALUES (99)");
      } catch (err) {
        theirWrite = err;
      }
      ours.prepare("INSERT INTO t VALUES (?)").run(n + 1);
    });
    expect(() => readThenWrite()).not.toThrow();
    expect(isStoreBusy(theirWrite)).toBe(true);
    expect(ours.prepare("SELECT n FROM t").all()).toEqual([{ n: 1 }]);
  });

  it("a deferred transaction (better-sqlite3's default) fails at once at that write instead of waiting", () => {
    // What issue 21 hit: the read pins a snapshot, the other connection commits, the write cannot proceed.
    ours.pragma("busy_timeout = 5000");
    const readThenWrite = ours.transaction(() => {
      ours.prepare("SELECT COUNT(*) AS n FROM t").get();
      theirs.exec("INSERT INTO t VALUES (99)");
      ours.prepare("INSERT INTO t VALUES (1)").run();
    });
    expect(() => readThenWrite()).toThrow(expect.objectContaining({ code: "SQLITE_BUSY_SNAPSHOT" }));
  });

  it("reports how long each top-level transaction waited for the lock, by operation", () => {
    const seen: [string, number][] = [];
    const observe = (operation: string, ms: number) => seen.push([operation, ms]);
    const inner = writeTransaction(ours, "inner", () => ours.exec("INSERT INTO t VALUES (1)"), observe);
    const outer = writeTransaction(ours, "outer", () => inner(), observe);
    outer();
    inner();
    expect(seen.map(([operation]) => operation)).toEqual(["outer", "inner"]);
    expect(seen.every(([, ms]) => ms >= 0)).toBe(true);
  });

  it("rolls back when the function throws", () => {
    const failing = writeTransaction(ours, "failing", () => {
      ours.exec("INSERT INTO t VALUES (1)");
      throw new Error("boom");
    });
    expect(() => failing()).toThrow("boom");
    expect(ours.prepare("SELECT COUNT(*) AS n FROM t").get()).toEqual({ n: 0 });
  });
});
