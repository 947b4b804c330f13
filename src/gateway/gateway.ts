import { EventEmitter } from "node:events";
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { type Readable, Transform } from "node:stream";
import type { ExecutionRecorder } from "../observability/executions.js";
import type { DaemonMetrics } from "../observability/metrics.js";
import type { Fleet, Lease } from "../scaler/fleet.js";
import type { Clock } from "../shared/clock.js";
import { FuncdError, messageOf } from "../shared/errors.js";
import { timeOrderedId } from "../shared/ids.js";
import type { Logger } from "../shared/logger.js";
import type { ExecutionOutcome } from "../store/types.js";
import { sendContinue } from "./expect.js";
import { sendProblem } from "./problem.js";
import type { RouteMatch, RouteTable } from "./routes.js";
import { classifyHopError, hopError } from "./upstream-errors.js";

export interface GatewayOptions {
  routes: RouteTable;
  fleet: Fleet;
  metrics: DaemonMetrics;
  recorder: ExecutionRecorder;
  clock: Clock;
  logger: Logger;
  maxBodyBytes: number;
  /** Takes `/async-function/...` and `X-Invocation-Type: async` requests; without it they run sync. */
  asyncIntake?: AsyncIntake;
}

/** An async request the gateway has routed; the intake stores it and answers 202. */
export interface AsyncCall {
  match: RouteMatch;
  /** The query string with its "?", or "". */
  search: string;
  requestId: string;
  executionId: string;
}

/** The async entry point (src/queue/): must answer `res` itself. */
export interface AsyncIntake {
  accept(req: IncomingMessage, res: ServerResponse, call: AsyncCall): void;
}

/** A request the gateway makes on behalf of someone else (the async workers): buffered in, bounded out. */
export interface Delivery {
  functionName: string;
  method: string;
  /** Sub-path plus query. */
  path: string;
  /** Sent as they are: the caller adds request id, prefix and its own `x-funcd-*` headers. */
  headers: Record<string, string | string[]>;
  body: Buffer | null;
  /** Keep at most this many bytes of the answer's body (the rest is read and counted). */
  keepBytes: number;
  /** Emits "abort" to give up (daemon shutdown). */
  cancel?: EventEmitter;
}

/** What became of a {@link Delivery}. */
export interface Delivered {
  /** False when no instance took the request: the function never saw it. */
  reached: boolean;
  statusCode: number;
  headers: Record<string, string | string[]>;
  /** The first `keepBytes` of the answer. */
  body: Buffer;
  bodyBytes: number;
  /** Set when funcd, not the function, produced the status (timeout, crash, no instance). */
  error: FuncdError | null;
  /** The function's own error text (a runtime's problem+json detail), when it answered one. */
  errorText: string | null;
  outcome: ExecutionOutcome;
  coldStart: boolean;
  instanceId: string | null;
  revisionId: string | null;
  startedAt: number;
  durationMs: number;
}

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) are for one connection, not to be forwarded — nor is `Expect`,
 * which the gateway answers itself (src/gateway/expect.ts) and undici refuses to send. Headers the
 * `Connection` header names are dropped too ({@link forwardHeaders}).
 */
const HOP_BY_HOP = new Set([
  "connection",
  "expect",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "proxy-authorization",
  "proxy-authenticate",
]);

/** Extra time past the function's timeout before the gateway gives up on an instance that went silent. */
const SILENCE_GRACE_MS = 1500;

/**
 * The invocation path: route lookup in memory, a lease on a ready instance
 * (the fleet holds the request while one starts), a streamed proxy hop over a
 * pooled keep-alive connection, and an execution record handed off to be
 * written later.
 */
export class Gateway {
  readonly #o: GatewayOptions;

  constructor(options: GatewayOptions) {
    this.#o = options;
  }

  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    void this.#handle(req, res);
  };

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = this.#o.clock.now();
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    let pathname = q === -1 ? url : url.slice(0, q);
    const search = q === -1 ? "" : url.slice(q);
    // Two checks on the sync path; everything else about async lives in the intake.
    let async =
      req.headers["x-invocation-type"] !== undefined && isAsyncType(req.headers["x-invocation-type"]);
    if (pathname.startsWith(ASYNC_PREFIX)) {
      async = true;
      pathname = `/function/${pathname.slice(ASYNC_PREFIX.length)}`;
    }
    const incomingId = header(req.headers["x-request-id"]) ?? header(req.headers["x-call-id"]);
    const given = incomingId !== undefined && /^[\w.:-]{1,128}$/.test(incomingId);
    const requestId = given ? incomingId : timeOrderedId(started);
    // Clients may reuse request ids; execution ids must be unique.
    const executionId = given ? timeOrderedId(started) : requestId;
    const ids = { executionId, requestId };
    res.setHeader("x-request-id", requestId);
    res.setHeader("x-funcd-execution-id", executionId);
    if (req.headers["x-call-id"]) res.setHeader("x-call-id", requestId);

    const match = this.#o.routes.match(pathname);
    if (!match) {
      req.resume();
      sendProblem(res, new FuncdError("ROUTE_NOT_FOUND", `No function is routed at ${pathname}`), pathname);
      return;
    }
    const name = match.functionName;
    if (!this.#o.routes.hasFunction(name)) {
      req.resume();
      sendProblem(res, new FuncdError("FUNCTION_NOT_FOUND", `No function named "${name}"`), pathname);
      return;
    }
    if (async && this.#o.asyncIntake) {
      sendContinue(req, res);
      this.#o.asyncIntake.accept(req, res, { match, search, requestId, executionId });
      return;
    }

    const declared = Number(req.headers["content-length"] ?? 0);
    if (declared > this.#o.maxBodyBytes) {
      req.resume();
      this.#finish(req, res, name, started, ids, null, false, {
        error: tooLarge(declared, this.#o.maxBodyBytes),
      });
      return;
    }

    // A plain emitter, not an AbortController: undici and the fleet accept either, and creating an
    // AbortSignal (plus a DOMException when it fires) per request showed up in profiles.
    const cancel = new EventEmitter();
    const onClose = () => {
      if (!res.writableFinished) cancel.emit("abort");
    };
    res.once("close", onClose);

    let lease: Lease;
    try {
      const got = this.#o.fleet.acquire(name, cancel);
      lease = got instanceof Promise ? await got : got;
    } catch (err) {
      req.resume();
      this.#finish(req, res, name, started, ids, null, false, { error: err });
      return;
    }

    const instance = lease.instance;
    const upstream = instance.upstream;
    if (!upstream) {
      lease.release();
      this.#finish(req, res, name, started, ids, lease, false, {
        error: new FuncdError("FUNCTION_UNAVAILABLE", `Instance ${instance.id} has no connection`, {
          retryAfter: 1,
        }),
      });
      return;
    }

    const headers = forwardHeaders(req.headers, requestId, match.prefix, req.socket.remoteAddress);
    let requestBytes = 0;
    const limit = this.#o.maxBodyBytes;
    let overLimit = false;
    const hasBody = req.method !== "GET" && req.method !== "HEAD";
    // An instance is ready for this request: a client waiting for `100 Continue` may send its body now.
    sendContinue(req, res);
    const body = hasBody
      ? req.pipe(
          new Transform({
            transform(chunk: Buffer, _enc, done) {
              requestBytes += chunk.length;
              if (requestBytes > limit) {
                overLimit = true;
                done(tooLarge(requestBytes, limit));
                return;
              }
              done(null, chunk);
            },
          }),
        )
      : null;

    const timeoutMs = this.#o.fleet.timeoutOf(name);
    let outcome: { recycle?: boolean; broken?: boolean; kill?: boolean } = {};
    try {
      const answer = await upstream.request({
        method: (req.method ?? "GET") as "GET",
        path: match.subPath + search,
        headers,
        body,
        signal: cancel,
        headersTimeout: timeoutMs + SILENCE_GRACE_MS,
        bodyTimeout: timeoutMs + SILENCE_GRACE_MS,
      });
      if (answer.headers["x-funcd-recycle"]) outcome = { recycle: true };
      res.writeHead(answer.statusCode, responseHeaders(answer.headers));
      let responseBytes = 0;
      // A runtime's own error answers (500 thrown, 408 timeout) are problem+json: keep their start so the
      // execution record can say what went wrong. Successful answers are never looked at.
      const problem: Buffer[] | null =
        answer.statusCode >= 400 && String(answer.headers["content-type"] ?? "").includes("problem+json")
          ? []
          : null;
      answer.body.on("data", (chunk: Buffer) => {
        responseBytes += chunk.length;
        if (problem && responseBytes <= 8192) problem.push(chunk);
      });
      await streamTo(answer.body, res);
      lease.release(outcome);
      this.#finish(req, res, name, started, ids, lease, true, {
        status: answer.statusCode,
        requestBytes,
        responseBytes,
        recycled: outcome.recycle === true,
        ...(problem ? { errorText: problemDetail(problem) } : {}),
      });
    } catch (err) {
      const error = overLimit
        ? releaseAfter(lease, tooLarge(requestBytes, limit), outcome)
        : await this.#failed(err, lease, name, timeoutMs, outcome, clientFailed(req));
      this.#finish(req, res, name, started, ids, lease, false, { error, requestBytes });
    } finally {
      res.off("close", onClose);
    }
  }

  /**
   * The same hop as a sync request — a fleet lease (scaling, concurrency limits, cold starts), the
   * instance's keep-alive pool, the same timeouts and failure handling — for a request that is not
   * streamed from a client: the async workers deliver queued invocations through it. Never throws.
   */
  async deliver(d: Delivery): Promise<Delivered> {
    const started = this.#o.clock.now();
    const name = d.functionName;
    let lease: Lease;
    try {
      const got = this.#o.fleet.acquire(name, d.cancel);
      lease = got instanceof Promise ? await got : got;
    } catch (err) {
      return this.#delivered(name, started, null, { error: asFuncdError(err) });
    }
    const instance = lease.instance;
    const upstream = instance.upstream;
    if (!upstream) {
      lease.release();
      return this.#delivered(name, started, null, {
        error: new FuncdError("FUNCTION_UNAVAILABLE", `Instance ${instance.id} has no connection`),
      });
    }
    const timeoutMs = this.#o.fleet.timeoutOf(name);
    try {
      const answer = await upstream.request({
        method: d.method as "GET",
        path: d.path,
        headers: withoutHopByHop(d.headers),
        body: d.body,
        ...(d.cancel ? { signal: d.cancel } : {}),
        headersTimeout: timeoutMs + SILENCE_GRACE_MS,
        bodyTimeout: timeoutMs + SILENCE_GRACE_MS,
      });
      const chunks: Buffer[] = [];
      let kept = 0;
      let bodyBytes = 0;
      for await (const chunk of answer.body as AsyncIterable<Buffer>) {
        bodyBytes += chunk.length;
        if (kept < d.keepBytes) {
          const part = chunk.length <= d.keepBytes - kept ? chunk : chunk.subarray(0, d.keepBytes - kept);
          chunks.push(part);
          kept += part.length;
        }
      }
      const recycle = answer.headers["x-funcd-recycle"] !== undefined;
      lease.release(recycle ? { recycle: true } : {});
      const body = Buffer.concat(chunks);
      const problem =
        answer.statusCode >= 400 && String(answer.headers["content-type"] ?? "").includes("problem+json");
      return this.#delivered(name, started, lease, {
        status: answer.statusCode,
        headers: responseHeaders(answer.headers),
        body,
        bodyBytes,
        errorText: problem ? problemDetail([body.subarray(0, 8192)]) : null,
      });
    } catch (err) {
      return this.#delivered(name, started, lease, {
        error: await this.#failed(err, lease, name, timeoutMs),
      });
    }
  }

  #delivered(
    name: string,
    started: number,
    lease: Lease | null,
    detail: {
      status?: number;
      headers?: Record<string, string | string[]>;
      body?: Buffer;
      bodyBytes?: number;
      error?: FuncdError;
      errorText?: string | null;
    },
  ): Delivered {
    const error = detail.error ?? null;
    const statusCode = error ? error.status : (detail.status ?? 500);
    const durationMs = this.#o.clock.now() - started;
    this.#o.metrics.invocations.inc({ function: name, code: String(statusCode) });
    this.#o.metrics.duration.observe({ function: name }, durationMs / 1000);
    return {
      reached: lease !== null,
      statusCode,
      headers: detail.headers ?? {},
      body: detail.body ?? EMPTY,
      bodyBytes: detail.bodyBytes ?? 0,
      error,
      errorText: error ? error.message : (detail.errorText ?? null),
      outcome: outcomeOf(statusCode, error ?? undefined),
      coldStart: lease?.coldStart ?? false,
      instanceId: lease?.instance.id ?? null,
      revisionId: lease?.instance.revisionId ?? null,
      startedAt: started,
      durationMs,
    };
  }

  /**
   * Classifies a failed hop (src/gateway/upstream-errors.ts) and releases the lease accordingly: kill a
   * silent instance, drop one whose connection broke, leave it alone for anything the request caused.
   */
  async #failed(
    err: unknown,
    lease: Lease,
    name: string,
    timeoutMs: number,
    outcome: { recycle?: boolean } = {},
    requestFailed = false,
  ): Promise<FuncdError> {
    if (err instanceof FuncdError) {
      lease.release(outcome);
      return err;
    }
    const instanceId = lease.instance.id;
    const failure = classifyHopError(err, requestFailed);
    const error = hopError(failure, err, name, instanceId, timeoutMs);
    if (failure === "timeout") lease.release({ kill: true });
    else if (failure === "crashed") lease.release({ broken: true });
    else lease.release(outcome);
    if (failure === "internal" || failure === "bad-answer")
      this.#o.logger.warn({ err, function: name, instance: instanceId, failure }, "proxy hop failed");
    return failure === "crashed" ? this.#explainCrash(error, name, instanceId) : error;
  }

  /** Waits briefly for the instance's exit report so the answer can say OOMKilled rather than "crashed". */
  async #explainCrash(error: FuncdError, name: string, instanceId: string): Promise<FuncdError> {
    const exit = await this.#o.fleet.exitOf(instanceId, 500);
    if (!exit) return error;
    if (exit.reason === "OOMKilled") {
      return new FuncdError(
        "FUNCTION_CRASHED",
        `Function "${name}" was killed for going over its memory limit (OOMKilled); instance ${instanceId} will be replaced`,
        { extra: { reason: "OOMKilled" } },
      );
    }
    const how =
      exit.code !== null ? `exit code ${exit.code}` : exit.signal ? `signal ${exit.signal}` : exit.reason;
    return new FuncdError(
      "FUNCTION_CRASHED",
      `Function "${name}" crashed while handling the request (${how}); it is restarted`,
      {
        extra: { reason: exit.reason },
      },
    );
  }

  #finish(
    req: IncomingMessage,
    res: ServerResponse,
    name: string,
    started: number,
    ids: { executionId: string; requestId: string },
    lease: Lease | null,
    ok: boolean,
    detail: {
      status?: number;
      error?: unknown;
      errorText?: string | null;
      requestBytes?: number;
      responseBytes?: number;
      recycled?: boolean;
    },
  ): void {
    let status = detail.status ?? 500;
    let errorText: string | null = detail.errorText ?? null;
    if (!ok) {
      const error =
        detail.error instanceof FuncdError
          ? detail.error
          : new FuncdError("INTERNAL", messageOf(detail.error));
      status = error.status;
      errorText = error.message;
      if (error.code === "INTERNAL")
        this.#o.logger.error({ err: detail.error, function: name }, "gateway failure");
      if (!res.headersSent) sendProblem(res, error, req.url);
      else res.destroy();
    }
    const durationMs = this.#o.clock.now() - started;
    this.#o.metrics.invocations.inc({ function: name, code: String(status) });
    this.#o.metrics.duration.observe({ function: name }, durationMs / 1000);
    this.#o.recorder.record({
      id: ids.executionId,
      functionName: name,
      revisionId: lease?.instance.revisionId ?? null,
      trigger: "http",
      startedAt: started,
      durationMs,
      statusCode: status,
      outcome: outcomeOf(status, detail.error),
      coldStart: lease?.coldStart ?? false,
      instanceId: lease?.instance.id ?? null,
      error: errorText,
      requestBytes: detail.requestBytes ?? 0,
      responseBytes: detail.responseBytes ?? 0,
      requestId: ids.requestId,
    });
  }
}

const ASYNC_PREFIX = "/async-function/";
const EMPTY = Buffer.alloc(0);

/** `X-Invocation-Type: async` (also `Event`, Lambda's word for it). */
function isAsyncType(value: string | string[]): boolean {
  const v = (Array.isArray(value) ? value[0] : value)?.toLowerCase();
  return v === "async" || v === "event";
}

function asFuncdError(err: unknown): FuncdError {
  return err instanceof FuncdError ? err : new FuncdError("INTERNAL", messageOf(err));
}

function releaseAfter(lease: Lease, error: FuncdError, outcome: { recycle?: boolean }): FuncdError {
  lease.release(outcome);
  return error;
}

function problemDetail(chunks: Buffer[]): string | null {
  try {
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { detail?: unknown; title?: unknown };
    return typeof body.detail === "string" ? body.detail : typeof body.title === "string" ? body.title : null;
  } catch {
    return null;
  }
}

function outcomeOf(status: number, error: unknown): ExecutionOutcome {
  if (error instanceof FuncdError) {
    if (error.code === "FUNCTION_CRASHED")
      return error.extra.reason === "OOMKilled" ? "oomkilled" : "crashed";
    if (error.code === "GATEWAY_TIMEOUT") return "timeout";
    if (error.status === 429 || error.status === 503) return "throttled";
  }
  if (status === 408) return "timeout";
  return status >= 500 ? "error" : "success";
}

/** The 413 for a body over the limit. */
export function tooLarge(size: number, limit: number): FuncdError {
  return new FuncdError(
    "PAYLOAD_TOO_LARGE",
    `The request body (${size} bytes or more) exceeds the ${limit}-byte limit`,
  );
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** What the function receives of the client's headers, plus funcd's request id, marker and forwarding headers. */
export function forwardHeaders(
  incoming: IncomingHttpHeaders,
  requestId: string,
  prefix: string,
  remote: string | undefined,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const named = connectionNamed(incoming.connection);
  for (const [key, value] of Object.entries(incoming)) {
    if (value === undefined || HOP_BY_HOP.has(key) || named?.has(key) || key.startsWith("x-funcd-")) continue;
    out[key] = value;
  }
  out["x-request-id"] = requestId;
  out["x-funcd-invoke"] = "1";
  out["x-forwarded-prefix"] = prefix;
  if (incoming.host) out["x-forwarded-host"] = incoming.host;
  if (remote)
    out["x-forwarded-for"] = incoming["x-forwarded-for"]
      ? `${incoming["x-forwarded-for"]}, ${remote}`
      : remote;
  return out;
}

function responseHeaders(
  headers: Record<string, string | string[] | undefined>,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const named = connectionNamed(headers.connection);
  for (const [key, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(key) || named?.has(key) || key === "x-funcd-recycle") continue;
    out[key] = value;
  }
  return out;
}

/** Headers a queued delivery carries, minus any hop-by-hop one (records written before they were dropped). */
function withoutHopByHop(headers: Record<string, string | string[]>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [key, value] of Object.entries(headers)) {
    if (!HOP_BY_HOP.has(key.toLowerCase())) out[key] = value;
  }
  return out;
}

/** The header names a `Connection` header lists: hop-by-hop for this connection only (RFC 9110 §7.6.1). */
function connectionNamed(value: string | string[] | undefined): Set<string> | undefined {
  // The common values name no header: no Set per request on the hot path for them.
  if (value === undefined || value === "keep-alive" || value === "close") return undefined;
  const names = new Set<string>();
  for (const part of (Array.isArray(value) ? value.join(",") : value).split(",")) {
    const name = part.trim().toLowerCase();
    if (name) names.add(name);
  }
  return names;
}

/** The client's side of the hop failed (its connection broke, its body errored): not the instance's doing. */
function clientFailed(req: IncomingMessage): boolean {
  return req.errored !== null || (req.destroyed && !req.complete);
}

/**
 * Copies the instance's answer to the client. Hand-rolled rather than stream.pipeline, which creates an
 * AbortController per call and aborts it at the end (a DOMException per request): ~10 % of the gateway's
 * CPU in profiles. A client that goes away destroys the upstream body, so the instance's connection is
 * freed rather than left half-read.
 */
function streamTo(source: Readable, res: ServerResponse): Promise<void> {
  return new Promise((resolve, reject) => {
    const onClose = () => {
      if (res.writableFinished) return;
      const err = new ClientGone();
      source.destroy(err);
      reject(err);
    };
    source.once("error", (err) => {
      res.off("close", onClose);
      reject(err);
    });
    res.once("finish", () => {
      res.off("close", onClose);
      resolve();
    });
    res.once("close", onClose);
    source.pipe(res);
  });
}

/** The client closed its connection before the whole answer was sent. */
class ClientGone extends Error {
  constructor() {
    super("the client closed the connection");
    this.name = "ClientGone";
  }
}
