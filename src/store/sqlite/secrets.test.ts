import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isFuncdError } from "../../shared/errors.js";
import type { Store } from "../types.js";
import { openSqliteStore } from "./open.js";
import { keyFileSealer } from "./seal.js";

let dir: string;
let file: string;
const opened: Store[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "funcd-secrets-"));
  file = path.join(dir, "funcd.db");
});

afterEach(() => {
  for (const store of opened.splice(0)) store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function open(): Store {
  const store = openSqliteStore(file);
  opened.push(store);
  return store;
}

const VALUE = "hunter2-s3cr3t-value-that-must-not-leak";

describe("sealing", () => {
  it("a sealed value opens to the same bytes, and sealing twice gives different bytes", () => {
    const sealer = keyFileSealer(path.join(dir, "k"));
    const a = sealer.seal("db", Buffer.from(VALUE));
    const b = sealer.seal("db", Buffer.from(VALUE));
    expect(a.equals(b)).toBe(false);
    expect(a.includes(Buffer.from(VALUE))).toBe(false);
    expect(sealer.open("db", a).toString()).toBe(VALUE);
    expect(sealer.open("db", b).toString()).toBe(VALUE);
  });

  it("the key file is made on first use: 32 bytes, readable by its owner only", () => {
    const keyFile = path.join(dir, "secrets.key");
    const sealer = keyFileSealer(keyFile);
    expect(fs.existsSync(keyFile)).toBe(false);
    sealer.seal("x", Buffer.from("v"));
    const stat = fs.statSync(keyFile);
    expect(stat.size).toBe(32);
    expect(stat.mode & 0o777).toBe(0o600);
  });

  it("another key does not open a value, and says so", () => {
    const sealed = keyFileSealer(path.join(dir, "k1")).seal("db", Buffer.from(VALUE));
    const other = keyFileSealer(path.join(dir, "k2"));
    other.seal("x", Buffer.from("makes k2"));
    let error: unknown;
    try {
      other.open("db", sealed);
    } catch (err) {
      error = err;
    }
    expect(isFuncdError(error, "CONFIG_INVALID")).toBe(true);
    expect((error as Error).message).toContain('Cannot open secret "db"');
    expect((error as Error).message).not.toContain(VALUE);
  });

  it("a value moved to another name's row does not open (the name is authenticated)", () => {
    const sealer = keyFileSealer(path.join(dir, "k"));
    const sealed = sealer.seal("a", Buffer.from(VALUE));
    expect(() => sealer.open("b", sealed)).toThrow(/Cannot open secret "b"/);
  });

  it("a damaged key file is refused with its size", () => {
    const keyFile = path.join(dir, "k");
    fs.writeFileSync(keyFile, "short");
    expect(() => keyFileSealer(keyFile).seal("a", Buffer.from("v"))).toThrow(/holds 5 bytes, not 32/);
  });
});

describe("the secrets table", () => {
  it("put creates then updates; get and list show names and dates, never values", () => {
    const store = open();
    expect(store.secrets.put("db-password", Buffer.from(VALUE), 1000).created).toBe(true);
    const updated = store.secrets.put("db-password", Buffer.from("second"), 2000);
    expect(updated.created).toBe(false);
    expect(updated.meta).toEqual({ name: "db-password", createdAt: 1000, updatedAt: 2000 });
    store.secrets.put("api.key", Buffer.from("k"), 3000);
    expect(store.secrets.list().map((s) => s.name)).toEqual(["api.key", "db-password"]);
    expect(JSON.stringify(store.secrets.list())).not.toContain("second");
    expect(store.secrets.value("db-password")?.toString()).toBe("second");
    expect(store.secrets.value("nope")).toBeUndefined();
    expect(store.secrets.delete("db-password")).toBe(true);
    expect(store.secrets.delete("db-password")).toBe(false);
    expect(store.secrets.get("db-password")).toBeUndefined();
  });

  it("the database file never holds a value in clear; the key file sits beside it", () => {
    const store = open();
    store.secrets.put("db", Buffer.from(VALUE), 1);
    store.close();
    const bytes = Buffer.concat(
      fs
        .readdirSync(dir)
        .filter((f) => f.startsWith("funcd.db"))
        .map((f) => fs.readFileSync(path.join(dir, f))),
    );
    expect(bytes.length).toBeGreaterThan(0);
    expect(bytes.includes(Buffer.from(VALUE))).toBe(false);
    expect(fs.existsSync(path.join(dir, "secrets.key"))).toBe(true);
    // The row is there, sealed.
    const db = new Database(file, { readonly: true });
    const row = db.prepare("SELECT value FROM secrets WHERE name = 'db'").get() as { value: Buffer };
    db.close();
    expect(row.value.includes(Buffer.from(VALUE))).toBe(false);
    // …and opens again after a restart, with the same key file.
    expect(open().secrets.value("db")?.toString()).toBe(VALUE);
  });

  it("a database copied without its key file does not give its secrets away", () => {
    const store = open();
    store.secrets.put("db", Buffer.from(VALUE), 1);
    store.close();
    const elsewhere = path.join(dir, "copy");
    fs.mkdirSync(elsewhere);
    fs.copyFileSync(file, path.join(elsewhere, "funcd.db"));
    const copy = openSqliteStore(path.join(elsewhere, "funcd.db"));
    opened.push(copy);
    expect(copy.secrets.get("db")?.name).toBe("db");
    expect(() => copy.secrets.value("db")).toThrow(/secrets key file .* is missing/);
    // A key made later (a new secret) does not open the old value either.
    copy.secrets.put("other", Buffer.from("x"), 2);
    expect(() => copy.secrets.value("db")).toThrow(/key does not match/);
  });
});
