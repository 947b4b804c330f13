/**
 * Repository interfaces. The rest of funcd depends on these, never on SQLite;
 * `sqlite/` implements them, and a server database can later.
 */
import type { FunctionSpec } from "../deploy/spec.js";

/** One file of a revision: its path, the hash of its content in the blob store, size and mode. */
export interface ManifestEntry {
  path: string;
  hash: string;
  size: number;
  mode: number;
}

export interface FunctionRecord {
  name: string;
  spec: FunctionSpec;
  /** The revision that serves traffic, or null before the first successful deploy. */
  activeRevision: string | null;
  createdAt: number;
  updatedAt: number;
}

export type RevisionStatus = "ready" | "failed";

export interface RevisionRecord {
  /** Content hash of spec + code: the same content gives the same id. */
  id: string;
  functionName: string;
  /** 1, 2, 3… per function, for humans. */
  number: number;
  spec: FunctionSpec;
  files: ManifestEntry[];
  status: RevisionStatus;
  error: string | null;
  createdAt: number;
  /**
   * Key of the dependency install the revision's artifact links in (`<dataDir>/deps/<key>`); null or
   * absent when it has none. Keeps the install from garbage collection while the revision exists.
   */
  depsKey?: string | null;
}

export type ExecutionOutcome = "success" | "error" | "timeout" | "crashed" | "oomkilled" | "throttled";

export interface ExecutionRecord {
  id: string;
  functionName: string;
  revisionId: string | null;
  trigger: "http" | "async" | "test";
  startedAt: number;
  durationMs: number;
  statusCode: number;
  outcome: ExecutionOutcome;
  coldStart: boolean;
  instanceId: string | null;
  error: string | null;
  requestBytes: number;
  responseBytes: number;
  /** The request id the function saw; its log lines carry it. */
  requestId: string | null;
}

export interface StoredLogLine {
  id: number;
  time: number;
  functionName: string;
  revisionId: string;
  instanceId: string;
  stream: "stdout" | "stderr" | "system";
  requestId: string | null;
  text: string;
}

export interface FunctionRepo {
  get(name: string): FunctionRecord | undefined;
  list(): FunctionRecord[];
  /** Insert or replace the function row. */
  put(record: FunctionRecord): void;
  delete(name: string): boolean;
}

export interface RevisionRepo {
  get(id: string): RevisionRecord | undefined;
  /** Newest first. */
  listFor(functionName: string): RevisionRecord[];
  /** The next revision number for a function (1 for the first). */
  nextNumber(functionName: string): number;
  put(record: RevisionRecord): void;
  deleteFor(functionName: string): number;
}

/** Content-addressed file contents. */
export interface BlobRepo {
  /** Stores the bytes if new; returns their sha256 hex. */
  put(data: Buffer): string;
  get(hash: string): Buffer | undefined;
  /** Delete blobs no revision references. Returns how many were removed. */
  collectGarbage(): number;
}

export interface ExecutionQuery {
  functionName?: string;
  outcome?: ExecutionOutcome;
  since?: number;
  limit?: number;
  /** Return records older than this execution id's start (pagination cursor). */
  before?: number;
}

export interface ExecutionRepo {
  /** Written in batches by the recorder, off the request path. */
  insertMany(records: ExecutionRecord[]): void;
  get(id: string): ExecutionRecord | undefined;
  /** Newest first. */
  query(query: ExecutionQuery): ExecutionRecord[];
  deleteFor(functionName: string): number;
  /** Retention: drop records started before `olderThan`, then keep at most `keepPerFunction` per function. */
  prune(olderThan: number, keepPerFunction: number): number;
}

export interface LogQuery {
  functionName: string;
  /** Return at most this many of the newest lines, oldest first. */
  tail?: number;
  /** Only lines with id greater than this (for following). */
  afterId?: number;
  requestId?: string;
}

export interface LogRepo {
  appendMany(lines: Omit<StoredLogLine, "id">[]): void;
  query(query: LogQuery): StoredLogLine[];
  /** Keep only the newest `keep` lines of each function. */
  prune(keepPerFunction: number): number;
  deleteFor(functionName: string): number;
}

export interface Store {
  functions: FunctionRepo;
  revisions: RevisionRepo;
  blobs: BlobRepo;
  executions: ExecutionRepo;
  logs: LogRepo;
  /** Run `fn` in one transaction. */
  transaction<T>(fn: () => T): T;
  close(): void;
}
