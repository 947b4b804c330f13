import type { Database } from "better-sqlite3";
import { FuncdError } from "../../shared/errors.js";

/** One schema step. `version` is what `PRAGMA user_version` holds once `up` has run. */
export interface Migration {
  version: number;
  name: string;
  up: string;
}

/**
 * The schema, in order. Append new steps; never edit one that has shipped, because
 * databases in the wild have already run it and will not run it again.
 *
 * There are no foreign keys on purpose: revisions are written before their function
 * row exists (a first deploy builds, then activates), and executions and logs arrive
 * in batches after the fact, possibly after the function was deleted. Each repository
 * has `deleteFor(name)` so the caller removes a function's rows explicitly instead.
 * Tables are not STRICT: a fractional timestamp or duration from a caller should be
 * stored, not fail a whole batch of executions or logs.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "initial schema",
    up: `
      CREATE TABLE functions (
        name TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        active_revision TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );

      CREATE TABLE revisions (
        id TEXT PRIMARY KEY,
        function_name TEXT NOT NULL,
        number INTEGER NOT NULL,
        spec TEXT NOT NULL,
        files TEXT NOT NULL,
        status TEXT NOT NULL,
        error TEXT,
        created_at INTEGER NOT NULL,
        UNIQUE (function_name, number)
      );
      CREATE INDEX revisions_function ON revisions (function_name);

      -- created_at lets garbage collection spare blobs a deploy has stored but not
      -- yet referenced from a revision (the build runs in between).
      CREATE TABLE blobs (
        hash TEXT PRIMARY KEY,
        data BLOB NOT NULL,
        size INTEGER NOT NULL,
        created_at INTEGER NOT NULL
      );

      CREATE TABLE executions (
        id TEXT PRIMARY KEY,
        function_name TEXT NOT NULL,
        revision_id TEXT,
        trigger TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        duration_ms REAL NOT NULL,
        status_code INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        cold_start INTEGER NOT NULL,
        instance_id TEXT,
        error TEXT,
        request_bytes INTEGER NOT NULL,
        response_bytes INTEGER NOT NULL
      );
      CREATE INDEX executions_function_started ON executions (function_name, started_at DESC);
      -- The dashboard lists recent executions of all functions; without this it sorts the table.
      CREATE INDEX executions_started ON executions (started_at DESC);

      CREATE TABLE logs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time INTEGER NOT NULL,
        function_name TEXT NOT NULL,
        revision_id TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        stream TEXT NOT NULL,
        request_id TEXT,
        text TEXT NOT NULL
      );
      CREATE INDEX logs_function_id ON logs (function_name, id);
    `,
  },
  {
    version: 2,
    name: "revision dependency key",
    up: `
      -- The key of the dependency install (<dataDir>/deps/<key>) a revision uses; NULL when none.
      ALTER TABLE revisions ADD COLUMN deps_key TEXT;
    `,
  },
  {
    version: 3,
    name: "execution request ids",
    up: `
      -- The request id the function saw (and its log lines carry); several executions may share one.
      ALTER TABLE executions ADD COLUMN request_id TEXT;
      CREATE INDEX executions_request_id ON executions (request_id);
    `,
  },
  {
    version: 4,
    name: "async invocations",
    up: `
      -- Async records live through several states; sync records leave these NULL (and their inserts unchanged).
      -- request/result/callback are JSON documents with bodies cut at a bound.
      ALTER TABLE executions ADD COLUMN state TEXT;
      ALTER TABLE executions ADD COLUMN queued_at INTEGER;
      ALTER TABLE executions ADD COLUMN finished_at INTEGER;
      ALTER TABLE executions ADD COLUMN attempt INTEGER;
      ALTER TABLE executions ADD COLUMN request TEXT;
      ALTER TABLE executions ADD COLUMN result TEXT;
      ALTER TABLE executions ADD COLUMN callback TEXT;

      -- The durable queue: one row per async invocation until it is over (and its callback delivered);
      -- dead letters stay until redriven, pruned or their function is deleted. seq gives FIFO order.
      CREATE TABLE queue (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        function_name TEXT NOT NULL,
        state TEXT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        prefix TEXT NOT NULL,
        headers TEXT NOT NULL,
        body BLOB,
        request_id TEXT NOT NULL,
        callback_url TEXT,
        max_retries INTEGER NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0,
        queued_at INTEGER NOT NULL,
        enqueued_at INTEGER NOT NULL,
        run_at INTEGER NOT NULL,
        lease_until INTEGER,
        finished_at INTEGER,
        status_code INTEGER,
        error TEXT,
        callback_state TEXT,
        callback_at INTEGER
      );
      CREATE INDEX queue_due ON queue (function_name, state, run_at, seq);
      CREATE INDEX queue_state ON queue (state, run_at);
      CREATE INDEX queue_callbacks ON queue (callback_state) WHERE callback_state IS NOT NULL;
    `,
  },
  {
    version: 5,
    name: "no request id index on executions",
    up: `
      -- Nothing looks executions up by request id (log lines carry it, and have their own index); the
      -- index only made every sync record's insert dearer.
      DROP INDEX IF EXISTS executions_request_id;
    `,
  },
  {
    version: 6,
    name: "revision images and image use",
    up: `
      -- The image a revision runs as (docker driver, image mode) and its build's output; NULL otherwise.
      ALTER TABLE revisions ADD COLUMN image TEXT;
      ALTER TABLE revisions ADD COLUMN build_log TEXT;

      -- When each funcd image last started serving (a revision switched to it, a daemon start restored
      -- it, an instance started from it): what the image garbage collector and 'funcd images' go by.
      CREATE TABLE images (
        tag TEXT PRIMARY KEY,
        last_used_at INTEGER NOT NULL
      );
    `,
  },
  {
    version: 7,
    name: "secrets",
    up: `
      -- Named secrets. value is sealed (AES-256-GCM under <dataDir>/secrets.key, see sqlite/seal.ts), never
      -- the clear text; functions name the secrets they use in their spec.
      CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        value BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );
    `,
  },
];

/** The schema version this build of funcd writes. */
export const SCHEMA_VERSION: number = MIGRATIONS.at(-1)?.version ?? 0;

/**
 * Bring `db` up to the newest migration. Each step runs in its own transaction
 * together with the `user_version` bump, so a crash leaves the database at the
 * last complete step and the next start resumes from there.
 *
 * @param label names the database in error messages (usually its file path).
 * @returns the versions that were applied (empty when the database was current).
 */
export function migrate(
  db: Database,
  label: string,
  migrations: readonly Migration[] = MIGRATIONS,
): number[] {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) {
      throw new Error(
        `Migration "${m.name}" has version ${m.version}; expected ${i + 1} (versions are 1, 2, 3…)`,
      );
    }
  });
  const known = migrations.at(-1)?.version ?? 0;
  const current = db.pragma("user_version", { simple: true });
  if (typeof current !== "number") throw new Error(`Cannot read the schema version of ${label}`);
  if (current > known) {
    // A downgrade would silently misread tables a newer funcd changed; refuse instead.
    throw new FuncdError(
      "CONFIG_INVALID",
      `Cannot open database ${label}: its schema version is ${current} but this funcd only knows up to version ${known}. ` +
        "It was written by a newer funcd; upgrade funcd or point it at another data directory.",
    );
  }
  const applied: number[] = [];
  for (const m of migrations.slice(current)) {
    // IMMEDIATE: it writes after reading the version, like every write transaction (write-transaction.ts).
    db.transaction(() => {
      db.exec(m.up);
      // PRAGMA cannot take bound parameters; the version is an integer we own.
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
    applied.push(m.version);
  }
  return applied;
}
