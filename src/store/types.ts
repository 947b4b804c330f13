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
  /**
   * The image the revision runs as (`funcd/<function>:<hash>`) with the docker driver in image mode;
   * null or absent otherwise (process driver, buildless mode).
   */
  image?: string | null;
  /** The image build's output (kept for `funcd describe`); null or absent when nothing was built. */
  buildLog?: string | null;
}

/** How an invocation ended; `pending` while an async one has not finished yet. */
export type ExecutionOutcome =
  | "success"
  | "error"
  | "timeout"
  | "crashed"
  | "oomkilled"
  | "throttled"
  | "pending";

/** Where an async invocation is in its life. Sync records have none. */
export type ExecutionState = "queued" | "running" | "succeeded" | "failed" | "dead-lettered";

/** A body kept on a record, cut at a bound: UTF-8 text when it is, else base64. */
export interface CapturedBody {
  body: string;
  encoding: "utf8" | "base64";
  /** The whole body's size, before any cut. */
  bytes: number;
  truncated: boolean;
}

/** The request of an async invocation, as its record shows it (credentials redacted). */
export interface CapturedRequest extends CapturedBody {
  method: string;
  /** The path the function sees, with the query. */
  path: string;
  headers: Record<string, string | string[]>;
}

/** What the function answered (last attempt). */
export interface CapturedResult extends CapturedBody {
  statusCode: number;
  headers: Record<string, string | string[]>;
}

/** The delivery of an async invocation's result to its `X-Callback-Url`. */
export interface CallbackStatus {
  url: string;
  /** `pending` until it is delivered (a 2xx answer) or its retries ran out (`failed`). */
  status: "pending" | "delivered" | "failed";
  attempts: number;
  statusCode: number | null;
  error: string | null;
  /** When the last attempt was made. */
  at: number | null;
}

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
  // Async invocations only: the record is written when the request is queued and updated through its life.
  // `startedAt`/`durationMs`/`statusCode`/`outcome` then describe the latest attempt.
  state?: ExecutionState;
  queuedAt?: number;
  finishedAt?: number;
  /** Attempts made so far (1 for the first delivery). */
  attempt?: number;
  request?: CapturedRequest;
  result?: CapturedResult;
  callback?: CallbackStatus;
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
  /**
   * Every image some revision (of any function, ready or failed) runs as, with the ids of those
   * revisions: what image garbage collection must keep.
   */
  images(): Map<string, string[]>;
}

/** When each funcd image last started serving; the image garbage collector and `funcd images` read it. */
export interface ImageUseRepo {
  /** Records a use at `at` (ms); an earlier date than the one recorded is ignored. */
  touch(tag: string, at: number): void;
  lastUsed(tag: string): number | undefined;
  /** Tag → last use (ms). */
  all(): Map<string, number>;
  /** Drops an image's record (it was removed). */
  forget(tag: string): boolean;
}

/** What funcd shows of a secret: never its value. */
export interface SecretMeta {
  name: string;
  createdAt: number;
  updatedAt: number;
}

/**
 * Named secrets. Values are sealed (encrypted and authenticated) before they reach the database, so a
 * copy of the database alone reveals none of them; only `value()` opens one.
 */
export interface SecretRepo {
  /** Creates or replaces a secret's value; `created` is false when it replaced one. */
  put(name: string, value: Buffer, now: number): { created: boolean; meta: SecretMeta };
  get(name: string): SecretMeta | undefined;
  /** By name. */
  list(): SecretMeta[];
  /** The secret's value, opened; undefined when there is no such secret. Throws when it cannot be opened. */
  value(name: string): Buffer | undefined;
  delete(name: string): boolean;
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

/** A durable async invocation: the request as it will be delivered, and its retry bookkeeping. */
export interface QueueItem {
  /** The execution id. */
  id: string;
  functionName: string;
  method: string;
  /** Sub-path plus query, as the function sees it. */
  path: string;
  /** The route prefix, forwarded as `x-forwarded-prefix`. */
  prefix: string;
  /** Headers to forward (hop-by-hop and funcd's own already removed). */
  headers: Record<string, string | string[]>;
  body: Buffer | null;
  requestId: string;
  callbackUrl: string | null;
  /** Retries after the first attempt. */
  maxRetries: number;
  /** Attempts made, the one being delivered included once the item is claimed. */
  attempt: number;
  queuedAt: number;
  /** Event age counts from here; a redrive resets it. */
  enqueuedAt: number;
}

export type NewQueueItem = Omit<QueueItem, "attempt" | "enqueuedAt"> & {
  /** What the execution record keeps of the request (bounded). */
  request: CapturedRequest;
};

/** One delivery attempt as the execution record keeps it. */
export interface AttemptRecord {
  startedAt: number;
  durationMs: number;
  statusCode: number;
  outcome: ExecutionOutcome;
  error: string | null;
  coldStart: boolean;
  instanceId: string | null;
  revisionId: string | null;
  responseBytes: number;
  result: CapturedResult | null;
}

export interface DeadLetter {
  id: string;
  functionName: string;
  method: string;
  path: string;
  requestId: string;
  attempts: number;
  queuedAt: number;
  deadLetteredAt: number;
  statusCode: number | null;
  error: string | null;
  callbackUrl: string | null;
}

export type FinalState = "succeeded" | "failed" | "dead-lettered";

/**
 * The durable queue of async invocations. Each change of an item updates its
 * execution record in the same transaction, so the two never disagree.
 */
export interface QueueRepo {
  /** Stores new invocations and their execution records in one transaction (durable when it returns). */
  enqueueMany(items: NewQueueItem[]): void;
  /** Puts `running` items whose lease ended before `now` back in the queue (all of them at start-up). */
  recover(now: number, except?: ReadonlySet<string>): number;
  /** Functions with queued items due at `now`. */
  dueFunctions(now: number): string[];
  /** When the function's earliest queued item falls due; undefined when it has none. */
  nextDue(functionName: string): number | undefined;
  /**
   * Up to `limit` due items of a function, oldest first, now `running` until `leaseUntil`, attempt + 1.
   * Due items enqueued before `expiry.enqueuedBefore` are dead-lettered instead (not attempted again)
   * with `expiry.error(attemptsMade)`, and come back in `expired`.
   */
  claim(
    functionName: string,
    limit: number,
    now: number,
    leaseUntil: number,
    expiry: { enqueuedBefore: number; error: (attempts: number) => string },
  ): { items: QueueItem[]; expired: { id: string; callbackUrl: string | null }[] };
  /**
   * Back to the queue, due at `runAt`. `counted: false` when the attempt never reached the function
   * (no instance could take it), so it does not count against the retries.
   */
  retry(id: string, runAt: number, attempt: AttemptRecord | null, counted: boolean): void;
  /**
   * The invocation is over. The item is deleted unless it is dead-lettered (kept for redrive) or its
   * callback is still to be delivered.
   */
  finish(id: string, state: FinalState, now: number, attempt: AttemptRecord | null, error?: string): void;
  /** Newest first; `before` is the `deadLetteredAt` of the previous page's last item. */
  deadLetters(functionName: string, limit: number, before?: number): DeadLetter[];
  /** Dead letters back to the queue with attempts and event age reset; returns the ids re-enqueued. */
  redrive(functionName: string, ids: readonly string[] | undefined, now: number): string[];
  /** Drops every item of a function (it was deleted); returns how many were queued or running. */
  dropFor(functionName: string): number;
  /** Drops dead letters older than `olderThan`. */
  pruneDeadLetters(olderThan: number): number;
  /** Items whose callback is still to be delivered, with when it is due. */
  pendingCallbacks(): { id: string; due: number }[];
  /** Records a callback attempt; `nextAt` null means it is settled (delivered or given up). */
  updateCallback(id: string, status: CallbackStatus, nextAt: number | null): void;
  /** How many items are in each state, for one function or all. */
  counts(functionName?: string): Record<"queued" | "running" | "dead-lettered", number>;
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
  /** The time of the newest kept line of one instance; undefined when there is none. */
  lastTimeOf(functionName: string, instanceId: string): number | undefined;
}

export interface Store {
  functions: FunctionRepo;
  revisions: RevisionRepo;
  blobs: BlobRepo;
  executions: ExecutionRepo;
  logs: LogRepo;
  queue: QueueRepo;
  images: ImageUseRepo;
  secrets: SecretRepo;
  /** Run `fn` in one transaction. */
  transaction<T>(fn: () => T): T;
  close(): void;
}
