/**
 * funcd's Node.js runtime server: loads one function handler and serves it over HTTP, following
 * docs/runtime-contract.md. It runs inside the sandbox with nothing but Node's standard library, and it
 * sits on the hot path of every invocation and every cold start, so it imports little and allocates
 * little per request.
 *
 * With `FUNCD_GENERIC=1` it boots in generic mode for the warm pool: it listens without a handler
 * (`/healthz` answers `{"status":"generic"}`) until the daemon posts the function to
 * `/_funcd/specialize`; from then on it is exactly an instance started for that function.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { lstatSync, statSync, unlinkSync } from "node:fs";
import { createServer, request as httpRequest } from "node:http";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/** The handler cannot be loaded: fatal with exit code 3 (the driver's failed deploy shows the output). */
class LoadError extends Error {}

/** A `FUNCD_*` setting is invalid: fatal with exit code 1. */
class ConfigError extends Error {}

const env = process.env;
const requireModule = createRequire(import.meta.url);
/** Booted for the warm pool: no handler until `/_funcd/specialize`; false for good once specialized. */
let generic = env.FUNCD_GENERIC === "1";
/** True from the first accepted specialization on: there is only ever one. */
let specializing = false;
// The function's settings, read from the environment by `configure()`: at boot, or at specialization.
let FUNCTION_DIR = "";
let HANDLER = "";
let FUNCTION_NAME = "";
let REVISION = "";
let RUNTIME = "";
let TIMEOUT_MS = 0;
let MEMORY_LIMIT_MB = 0;
let MEMORY_LIMIT = "";
/** @type {"auto" | "kubeless" | "lambda"} */
let HANDLER_STYLE = "auto";
try {
  configure();
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`funcd: ${err.message}\n`);
  process.exit(1);
}
const LISTEN = parseListen(env.FUNCD_LISTEN || "8080");

// The gateway pools connections to instances; outliving its idle timeout avoids racing a reused socket
// that this side is just closing (which the gateway would see as a reset).
const KEEP_ALIVE_TIMEOUT_MS = 65_000;

const PROBLEM_BASE = "https://funcd.dev/errors#";
const TEXT = "text/plain; charset=utf-8";
const BYTES = "application/octet-stream";
const JSON_TYPE = "application/json";
const PROBLEM = "application/problem+json";
const METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8";
const READY = '{"status":"ready"}';
const GENERIC = '{"status":"generic"}';
const SPECIALIZE_PATH = "/_funcd/specialize";
const EMPTY = Buffer.alloc(0);
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const TIMED_OUT = Symbol("timed out");

/** The current invocation's log prefix (`\x1e<request-id>\x1f`), undefined outside invocations. */
const als = new AsyncLocalStorage();

const metrics = { calls: 0, failures: 0, sum: 0, buckets: new Array(BUCKETS.length + 1).fill(0) };
let inFlight = 0;
let draining = false;

tagOutput(process.stdout);
tagOutput(process.stderr);

/**
 * The handler; set once, at boot or at specialization.
 * @type {Function}
 */
let main = noop;
/**
 * `this` for calling the handler (module.exports for a CommonJS method).
 * @type {unknown}
 */
let owner;
/**
 * How an invocation reaches the handler and how its result becomes a response, chosen once (at boot, or
 * at specialization) so the per-request path never asks: `prepare` turns the request into the event
 * (throwing when the body cannot be decoded, answered 400), `call` calls the handler, `send` answers its
 * result.
 * @type {{ prepare: typeof kubelessEvent, call: typeof callKubeless, send: typeof sendResult }}
 */
let style = { prepare: kubelessEvent, call: callKubeless, send: sendResult };

if (generic) {
  await rehearse();
} else {
  try {
    await useHandler(await loadHandler());
  } catch (err) {
    if (!(err instanceof LoadError)) throw err;
    fatal(err.message, err.cause);
  }
}

process.on("uncaughtException", (err) => {
  // The process state is unknown after this; the driver restarts the instance.
  console.error("funcd: uncaught exception, exiting:", err);
  process.exit(1);
});
process.on("unhandledRejection", (reason) => {
  console.error("funcd: unhandled promise rejection:", reason);
});

const server = createServer(onRequest);
server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
// Must exceed keepAliveTimeout, or a pooled connection's next request can be cut off mid-headers.
server.headersTimeout = KEEP_ALIVE_TIMEOUT_MS + 1_000;
server.on("error", (err) => {
  console.error(`funcd: cannot listen on ${env.FUNCD_LISTEN || "8080"}:`, err);
  process.exit(1);
});
if (LISTEN.path !== undefined) removeStaleSocket(LISTEN.path);
if (LISTEN.path !== undefined) server.listen(LISTEN.path);
else server.listen(LISTEN.port, LISTEN.host);
process.once("SIGTERM", drain);
process.once("SIGINT", drain);

/**
 * @param {import("node:http").IncomingMessage} req
 * @param {import("node:http").ServerResponse} res
 */
function onRequest(req, res) {
  if (generic) return onGenericRequest(req, res);
  if (draining) res.shouldKeepAlive = false;
  const headers = req.headers;
  const url = req.url || "/";
  const q = url.indexOf("?");
  const path = q === -1 ? url : url.slice(0, q);
  const header = headers["x-request-id"];
  // The gateway always marks invocations, so a function can serve /healthz and /metrics itself.
  if (headers["x-funcd-invoke"] !== "1" && req.method === "GET") {
    if (path === "/healthz") return internal(res, header, JSON_TYPE, READY);
    if (path === "/metrics") return internal(res, header, METRICS_TYPE, renderMetrics());
  }
  const requestId = typeof header === "string" && header !== "" ? header : crypto.randomUUID();
  res.setHeader("x-request-id", requestId);
  // Control characters in the id would break the driver's line framing, so they never reach the prefix;
  // and the driver only reads a tag that ends within 256 characters, so an absurdly long id is cut.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
  const prefix = `\x1e${requestId.slice(0, 200).replace(/[\x00-\x1f\x7f]/g, "?")}\x1f`;
  als.run(prefix, invoke, req, res, requestId, path, q === -1 ? "" : url.slice(q + 1));
}

/**
 * @param {import("node:http").ServerResponse} res
 * @param {string | string[] | undefined} requestId
 * @param {string} type
 * @param {string} body
 */
function internal(res, requestId, type, body) {
  if (requestId !== undefined) res.setHeader("x-request-id", requestId);
  send(res, 200, type, body);
}

/**
 * A request to a generic instance: its health, and its one specialization. There is no function to
 * invoke yet (the gateway never routes to a generic instance, so anything else is a mistake).
 * @param {import("node:http").IncomingMessage} req
 * @param {import("node:http").ServerResponse} res
 */
function onGenericRequest(req, res) {
  const daemon = req.headers["x-funcd-invoke"] !== "1";
  if (daemon && req.method === "GET" && req.url === "/healthz") return send(res, 200, JSON_TYPE, GENERIC);
  if (daemon && req.method === "GET" && req.url === "/metrics") {
    return send(res, 200, METRICS_TYPE, renderMetrics());
  }
  if (daemon && req.method === "POST" && req.url === SPECIALIZE_PATH && !specializing) {
    specializing = true;
    return void specialize(req, res);
  }
  const detail = specializing
    ? "This instance is being specialized"
    : "This is a generic instance: no function is loaded yet";
  send(
    res,
    503,
    PROBLEM,
    problem(503, "function-unavailable", "FUNCTION_UNAVAILABLE", "Not specialized", detail),
  );
}

/**
 * `POST /_funcd/specialize`: become an instance of the function described by the JSON body. The
 * environment becomes the function's, the handler is loaded exactly as at a normal boot, and the answer
 * is 200 `{"status":"ready"}`; or, when the handler cannot be loaded, 422 `{ error, logs }`, after which
 * the process exits with code 3 (1 for an invalid setting), as a normal boot would have: a failed
 * specialization never serves.
 * @param {import("node:http").IncomingMessage} req
 * @param {import("node:http").ServerResponse} res
 */
async function specialize(req, res) {
  res.shouldKeepAlive = false;
  let body;
  try {
    body = JSON.parse((await readBody(req)).toString("utf8"));
    if (body === null || typeof body !== "object") throw new Error("the body is not a JSON object");
    if (typeof body.handler !== "string" || body.handler === "") throw new Error('"handler" is missing');
    if (body.env === null || typeof body.env !== "object") throw new Error('"env" is not an object');
  } catch (err) {
    // Nothing was changed: the instance stays generic and may still be specialized.
    specializing = false;
    return send(res, 400, PROBLEM, problem(400, "bad-request", "BAD_REQUEST", "Bad request", err.message));
  }
  if (body.memoryMb !== undefined && Number(body.memoryMb) !== MEMORY_LIMIT_MB) {
    // The heap and the sandbox were sized at boot; a different limit needs a normal start.
    specializing = false;
    const detail = `This instance runs with ${MEMORY_LIMIT_MB} MiB, not ${body.memoryMb} MiB`;
    return send(res, 400, PROBLEM, problem(400, "bad-request", "BAD_REQUEST", "Bad request", detail));
  }
  // From here on the process belongs to the function: its environment first, as a boot would see it.
  const next = { ...stringValues(body.env) };
  next.FUNCD_HANDLER = body.handler;
  if (typeof body.handlerStyle === "string") next.FUNCD_HANDLER_STYLE = body.handlerStyle;
  if (typeof body.functionName === "string") next.FUNCD_FUNCTION_NAME = body.functionName;
  if (typeof body.revision === "string") next.FUNCD_REVISION = body.revision;
  if (body.timeoutMs !== undefined) next.FUNCD_TIMEOUT_MS = String(body.timeoutMs);
  // Where it listens, its runtime and its limit were settled at boot.
  next.FUNCD_LISTEN = env.FUNCD_LISTEN ?? "";
  next.FUNCD_FUNCTION_DIR = env.FUNCD_FUNCTION_DIR ?? "";
  next.FUNCD_RUNTIME = env.FUNCD_RUNTIME ?? "";
  next.FUNCD_MEMORY_LIMIT_MB = String(MEMORY_LIMIT_MB);
  for (const key of Object.keys(env)) delete env[key];
  Object.assign(env, next);
  try {
    configure();
    await useHandler(await loadHandler());
  } catch (err) {
    const exitCode = err instanceof ConfigError ? 1 : 3;
    const cause = err instanceof LoadError ? err.cause : undefined;
    const message = err instanceof LoadError || err instanceof ConfigError ? err.message : String(err);
    const stack =
      cause === undefined ? "" : cause instanceof Error && cause.stack ? cause.stack : String(cause);
    // The same output a failed boot writes, so the driver's logs of the failure read the same.
    process.stderr.write(`funcd: ${message}\n${stack === "" ? "" : `${stack}\n`}`);
    const logs = [`funcd: ${message}`, ...(stack === "" ? [] : stack.split("\n"))];
    res.setHeader("content-type", JSON_TYPE);
    res.statusCode = 422;
    res.end(JSON.stringify({ error: message, logs }), () => process.exit(exitCode));
    setTimeout(() => process.exit(exitCode), 1_000).unref();
    return;
  }
  generic = false;
  send(res, 200, JSON_TYPE, READY);
}

/**
 * @param {Record<string, unknown>} values
 * @returns {Record<string, string>}
 */
function stringValues(values) {
  /** @type {Record<string, string>} */
  const out = {};
  for (const key of Object.keys(values)) {
    const value = values[key];
    if (value !== undefined && value !== null) out[key] = String(value);
  }
  return out;
}

/**
 * Generic mode, before listening: one invocation of a tiny handler shipped with the runtime
 * (`warmup.cjs`) through the code a function's specialization and first request run — setting the
 * environment, loading the module, reading a JSON body, calling, answering — on a throwaway socket.
 * Node compiles its own JavaScript lazily, on first use, which costs a cold process several
 * milliseconds per step; paying that here, while nobody waits, takes it off every cold start served by
 * the pool. Then everything is put back: no handler, no metrics, generic again. A failure only costs speed.
 */
async function rehearse() {
  const socketPath = join(tmpdir(), `funcd-rehearsal-${process.pid}.sock`);
  const warm = createServer(onRequest);
  try {
    env.FUNCD_REHEARSAL = "1";
    delete env.FUNCD_REHEARSAL;
    // Loaded now too, so a Lambda-style function's specialization does not pay for it.
    await import("./lambda.mjs");
    FUNCTION_DIR = dirname(fileURLToPath(import.meta.url));
    // A `.js` file: whether a handler.js is CommonJS or ESM is looked up the first time one is loaded.
    await importModule(join(FUNCTION_DIR, "warmup-scope.js"));
    HANDLER = "warmup.main";
    await useHandler(await loadHandler());
    generic = false;
    removeStaleSocket(socketPath);
    await new Promise((resolve, reject) => {
      warm.once("error", reject);
      warm.listen(socketPath, () => resolve(undefined));
    });
    await new Promise((resolve, reject) => {
      const req = httpRequest(
        {
          socketPath,
          method: "POST",
          path: "/",
          agent: false,
          headers: { "content-type": JSON_TYPE, "x-funcd-invoke": "1", "x-request-id": "rehearsal" },
        },
        (res) => {
          res.on("data", noop);
          res.on("end", () => resolve(undefined));
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end('{"rehearsal":true}');
    });
  } catch {
    // Only speed is lost.
  } finally {
    generic = true;
    await new Promise((resolve) => warm.close(() => resolve(undefined)));
    removeStaleSocket(socketPath);
    configure();
    main = noop;
    owner = undefined;
    style = { prepare: kubelessEvent, call: callKubeless, send: sendResult };
    metrics.calls = 0;
    metrics.failures = 0;
    metrics.sum = 0;
    metrics.buckets.fill(0);
  }
}

/**
 * Makes a loaded handler the one this instance serves.
 * @param {{ fn: Function, owner: unknown, exportName: string, alsoMain: boolean }} loaded
 */
async function useHandler(loaded) {
  main = loaded.fn;
  owner = loaded.owner;
  if (HANDLER_STYLE === "lambda") style = await lambdaStyle();
  else if (HANDLER_STYLE === "auto" && loaded.exportName === "handler" && !loaded.alsoMain) {
    // Lambda and Kubeless both name handlers `handler`. A third parameter (the callback) is Lambda's
    // alone; otherwise the handler gets an event that is both, and its answer is read the way of the
    // event it read (see "Handler styles" in the contract).
    style = loaded.fn.length >= 3 ? await lambdaStyle() : await eitherStyle();
  }
}

/**
 * One invocation: build event and context, call the handler, map its result onto the response.
 * @param {import("node:http").IncomingMessage} req
 * @param {import("node:http").ServerResponse} res
 * @param {string} requestId
 * @param {string} path
 * @param {string} search
 */
async function invoke(req, res, requestId, path, search) {
  let started = performance.now();
  const deadline = Date.now() + TIMEOUT_MS;
  inFlight++;
  let failed = false;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  try {
    const body = hasBody(req.headers) ? await readBody(req) : EMPTY;
    let event;
    try {
      event = style.prepare(req, res, body, requestId, path, search);
    } catch (err) {
      // Not an invocation: the handler never ran, so it is not counted in the metrics.
      started = -1;
      send(res, 400, PROBLEM, problem(400, "bad-request", "BAD_REQUEST", "Bad request", err.message));
      return;
    }
    const timedOut = new Promise((resolve) => {
      timer = setTimeout(resolve, Math.max(0, deadline - Date.now()), TIMED_OUT);
    });

    let result;
    try {
      result = style.call(event, requestId, deadline);
      if (typeof result?.then === "function") result = await Promise.race([result, timedOut]);
      if (result !== TIMED_OUT && ownsResponse(res)) {
        // The handler answers through extensions.response itself (e.g. a pipe still flowing): leave the
        // response alone, but keep the timeout on it.
        if (!res.writableFinished && !res.destroyed) {
          result = await Promise.race([new Promise((resolve) => res.once("close", resolve)), timedOut]);
        }
        if (result !== TIMED_OUT) {
          failed = res.statusCode >= 500;
          return;
        }
      }
      if (result === TIMED_OUT) {
        failed = true;
        onTimeout(res);
        return;
      }
      failed = style.send(res, result) >= 500;
    } catch (err) {
      if (err instanceof BadBody) {
        // The handler read event.data of a body that cannot be decoded (the either style decodes lazily).
        sendError(res, 400, problem(400, "bad-request", "BAD_REQUEST", "Bad request", err.message));
        return;
      }
      failed = true;
      console.error(`funcd: function "${FUNCTION_NAME}" failed:`, err);
      // Duck-typed rather than instanceof Error, so errors from other realms (vm, workers) read the same.
      const detail =
        typeof err?.message === "string" ? `${err.name ?? "Error"}: ${err.message}` : String(err);
      sendError(
        res,
        500,
        problem(500, "function-error", "FUNCTION_ERROR", "The function threw an error", detail),
      );
    }
  } catch (err) {
    // Reading the request failed (the client went away) before the handler ran: nothing can be answered,
    // and it is not an invocation.
    started = -1;
    res.destroy(err);
  } finally {
    clearTimeout(timer);
    if (started >= 0) record(performance.now() - started, failed);
    // Responses the server sent itself close their connection while draining (see send); one the
    // handler wrote may have kept it open, and is flushed by now, so the idle connection can go.
    if (--inFlight === 0 && draining && res.writableFinished) server.closeIdleConnections();
  }
}

/**
 * The Kubeless event: `data` decoded from the body, the request's parts, the Kubeless and CloudEvents
 * fields, and the Node request and response as `extensions`.
 * @param {import("node:http").IncomingMessage} req
 * @param {import("node:http").ServerResponse} res
 * @param {Buffer} body
 * @param {string} requestId
 * @param {string} path
 * @param {string} search
 */
function kubelessEvent(req, res, body, requestId, path, search) {
  const headers = req.headers;
  const contentType = headers["content-type"];
  const event = {
    data: decodeBody(body, contentType, req.method),
    method: req.method,
    path,
    query: parseQuery(search),
    headers,
    "event-id": headers["event-id"] || requestId,
    "event-type": headers["event-type"] || contentType || JSON_TYPE,
    "event-time": headers["event-time"] || new Date().toISOString(),
    "event-namespace": headers["event-namespace"] || "funcd",
    ce: {},
    extensions: { request: req, response: res },
  };
  for (const name in headers) {
    if (name.startsWith("ce-")) {
      event[name] = headers[name];
      event.ce[name.slice(3)] = headers[name];
    }
  }
  return event;
}

/**
 * @param {unknown} event
 * @param {string} requestId
 * @param {number} deadline epoch milliseconds
 */
function callKubeless(event, requestId, deadline) {
  const context = {
    "function-name": FUNCTION_NAME,
    timeout: TIMEOUT_MS / 1000,
    runtime: RUNTIME,
    "memory-limit": MEMORY_LIMIT,
    functionName: FUNCTION_NAME,
    timeoutMs: TIMEOUT_MS,
    memoryLimit: MEMORY_LIMIT,
    requestId,
    revision: REVISION,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
  return main.call(owner, event, context);
}

/**
 * The Lambda style lives in its own module, loaded only by functions that use it.
 * @returns {Promise<{ prepare: typeof kubelessEvent, call: typeof callKubeless, send: typeof sendResult }>}
 */
async function lambdaStyle() {
  const { createLambdaStyle } = await import("./lambda.mjs");
  const lambda = createLambdaStyle({
    fn: main,
    owner,
    functionName: FUNCTION_NAME,
    revision: REVISION,
    memoryLimitMb: MEMORY_LIMIT_MB,
  });
  return {
    prepare: lambda.prepare,
    call: lambda.call,
    send: (res, result) => sendShaped(res, lambda.shape(result)),
  };
}

/**
 * Event fields only a Lambda event has (payload 2.0's, and 1.0's a handler may look for): a handler that
 * reads one is a Lambda handler.
 */
const LAMBDA_ONLY = new Set([
  "version",
  "routeKey",
  "rawPath",
  "rawQueryString",
  "cookies",
  "queryStringParameters",
  "requestContext",
  "body",
  "isBase64Encoded",
  "pathParameters",
  "stageVariables",
  "httpMethod",
  "resource",
  "multiValueHeaders",
  "multiValueQueryStringParameters",
]);

/** A body event.data cannot be decoded from (invalid JSON), met when the handler reads it: a 400. */
class BadBody extends Error {}

/** @type {WeakMap<import("node:http").ServerResponse, { lambda: boolean }>} */
const readLambda = new WeakMap();

/**
 * The style of a `handler` that may be Kubeless's or Lambda's: the event is a payload 2.0 event that is
 * also a Kubeless event (Kubeless's `headers`, `data` decoded when first read — invalid JSON answers 400
 * then —, `extensions` not enumerable, so the event serializes as JSON), the context has both sets of
 * names, and the result is read the Lambda way if the handler read a field only a Lambda event has, else
 * the Kubeless way.
 * @returns {Promise<{ prepare: typeof kubelessEvent, call: typeof callKubeless, send: typeof sendResult }>}
 */
async function eitherStyle() {
  const { createLambdaStyle } = await import("./lambda.mjs");
  const lambda = createLambdaStyle({
    fn: main,
    owner,
    functionName: FUNCTION_NAME,
    revision: REVISION,
    memoryLimitMb: MEMORY_LIMIT_MB,
  });
  const kubelessContext = {
    "function-name": FUNCTION_NAME,
    timeout: TIMEOUT_MS / 1000,
    runtime: RUNTIME,
    "memory-limit": MEMORY_LIMIT,
    timeoutMs: TIMEOUT_MS,
    memoryLimit: MEMORY_LIMIT,
    revision: REVISION,
  };
  return {
    prepare(req, res, body, requestId, path, search) {
      const event = lambda.prepare(req, res, body, requestId, path, search);
      /** @type {Error | undefined} */
      let bad;
      let kubeless;
      try {
        kubeless = kubelessEvent(req, res, body, requestId, path, search);
      } catch (err) {
        bad = err;
        kubeless = kubelessEvent(req, res, EMPTY, requestId, path, search);
      }
      const { data, extensions, ...fields } = kubeless;
      Object.assign(event, fields);
      if (bad === undefined) event.data = data;
      else {
        const message = bad.message;
        Object.defineProperty(event, "data", {
          enumerable: true,
          configurable: true,
          get() {
            throw new BadBody(message);
          },
        });
      }
      Object.defineProperty(event, "extensions", { value: extensions, writable: true, configurable: true });
      // JSON.stringify(event) (handlers log events so) reads the event itself, not through the proxy: it
      // is no sign of either style, and leaves out a data that cannot be decoded.
      Object.defineProperty(event, "toJSON", {
        configurable: true,
        value: () => {
          /** @type {Record<string, unknown>} */
          const copy = {};
          for (const key of Object.keys(event))
            if (key !== "data" || bad === undefined) copy[key] = event[key];
          return copy;
        },
      });
      const state = { lambda: false };
      readLambda.set(res, state);
      return new Proxy(event, {
        get(target, key, receiver) {
          if (LAMBDA_ONLY.has(key)) state.lambda = true;
          return Reflect.get(target, key, receiver);
        },
        has(target, key) {
          if (LAMBDA_ONLY.has(key)) state.lambda = true;
          return Reflect.has(target, key);
        },
      });
    },
    call: (event, requestId, deadline) =>
      lambda.call(event, requestId, deadline, { ...kubelessContext, requestId }),
    send(res, result) {
      const shaped = typeof result?.statusCode === "number" && typeof result === "object";
      if (shaped || readLambda.get(res)?.lambda) return sendShaped(res, lambda.shape(result));
      return sendResult(res, result);
    },
  };
}

/**
 * Whether the handler took over the response: it wrote, ended, or piped something into it. A pipe
 * counts even before its first chunk, since `Readable.pipe` only starts flowing on a later tick.
 * @param {import("node:http").ServerResponse} res
 */
function ownsResponse(res) {
  return res.headersSent || res.writableEnded || res.listenerCount("unpipe") > 0;
}

/** @param {import("node:http").ServerResponse} res */
function onTimeout(res) {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.setHeader("x-funcd-recycle", "1");
  const detail = `Function "${FUNCTION_NAME}" did not finish within its timeout of ${TIMEOUT_MS} ms`;
  sendError(res, 408, problem(408, "function-timeout", "FUNCTION_TIMEOUT", "Function timed out", detail));
}

function noop() {}

/**
 * Map a handler's return value onto the response (see "Results" in the contract).
 * @param {import("node:http").ServerResponse} res
 * @param {unknown} result
 * @returns {number} the status sent
 */
function sendResult(res, result) {
  if (result === undefined) return send(res, 200, undefined, EMPTY);
  if (typeof result === "string") return send(res, 200, TEXT, result);
  if (ArrayBuffer.isView(result) || result instanceof ArrayBuffer)
    return send(res, 200, BYTES, bytes(result));
  if (typeof result === "object" && result !== null && typeof result.statusCode === "number") {
    return sendShaped(res, result);
  }
  return send(res, 200, JSON_TYPE, JSON.stringify(result) ?? "");
}

/**
 * `{ statusCode, headers, body, isBase64Encoded }`, the Lambda/OpenFaaS shape.
 * @param {import("node:http").ServerResponse} res
 * @param {{ statusCode: number, headers?: Record<string, unknown>, body?: unknown, isBase64Encoded?: boolean }} result
 */
function sendShaped(res, result) {
  const { statusCode, headers, body, isBase64Encoded } = result;
  if (headers !== null && typeof headers === "object") {
    for (const name in headers) {
      const value = headers[name];
      if (value !== undefined && value !== null) {
        res.setHeader(name, Array.isArray(value) ? value.map(String) : String(value));
      }
    }
  }
  // 204 and 304 carry no body, so no content-type describing one either.
  if (body === undefined || body === null || statusCode === 204 || statusCode === 304) {
    return send(res, statusCode, undefined, EMPTY);
  }
  const typed = res.hasHeader("content-type");
  if (typeof body === "string") {
    if (isBase64Encoded === true)
      return send(res, statusCode, typed ? undefined : BYTES, Buffer.from(body, "base64"));
    return send(res, statusCode, typed ? undefined : TEXT, body);
  }
  if (ArrayBuffer.isView(body) || body instanceof ArrayBuffer) {
    return send(res, statusCode, typed ? undefined : BYTES, bytes(body));
  }
  return send(res, statusCode, typed ? undefined : JSON_TYPE, JSON.stringify(body) ?? "");
}

/**
 * @param {ArrayBufferView | ArrayBuffer} value
 * @returns {Buffer}
 */
function bytes(value) {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/**
 * Answer with a complete body. Node sets content-length itself when `end` gets the whole body.
 * @param {import("node:http").ServerResponse} res
 * @param {number} status
 * @param {string | undefined} type
 * @param {string | Buffer} body
 * @returns {number} the status sent
 */
function send(res, status, type, body) {
  if (draining) res.shouldKeepAlive = false;
  if (type !== undefined) res.setHeader("content-type", type);
  // Not writeHead(): it would flush the head before end() knows the length, forcing chunked encoding.
  res.statusCode = status;
  res.end(body);
  return status;
}

/**
 * Answer with a problem, dropping any headers the handler set before it failed (they describe a body
 * that is not being sent), but keeping the request id.
 * @param {import("node:http").ServerResponse} res
 * @param {number} status
 * @param {string} body
 */
function sendError(res, status, body) {
  // The handler may still be running, or have piped into the response, and write after this answer;
  // a write after end must not become an uncaught error that takes the instance down.
  res.on("error", noop);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  for (const name of res.getHeaderNames()) {
    if (name !== "x-request-id" && name !== "x-funcd-recycle") res.removeHeader(name);
  }
  send(res, status, PROBLEM, body);
}

/**
 * @param {number} status
 * @param {string} slug
 * @param {string} code
 * @param {string} title
 * @param {string} detail
 */
function problem(status, slug, code, title, detail) {
  return JSON.stringify({ type: PROBLEM_BASE + slug, title, status, detail, code });
}

/** @param {import("node:http").IncomingHttpHeaders} headers */
function hasBody(headers) {
  const length = headers["content-length"];
  return length !== undefined ? length !== "0" : headers["transfer-encoding"] !== undefined;
}

/**
 * The whole request body. The gateway bounds its size, so buffering it is safe.
 * @param {import("node:http").IncomingMessage} req
 * @returns {Promise<Buffer>}
 */
function readBody(req) {
  return new Promise((resolve, reject) => {
    /** @type {Buffer[]} */
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      chunks.push(chunk);
      size += chunk.length;
    });
    req.on("end", () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)));
    req.on("error", reject);
    req.on("aborted", () => reject(new Error("The client aborted the request")));
  });
}

/**
 * `event.data`: JSON types parsed, text types as a string, anything else as bytes.
 * @param {Buffer} body
 * @param {string | undefined} contentType
 * @param {string | undefined} method
 */
function decodeBody(body, contentType, method) {
  if (body.length === 0) return method === "GET" || method === "HEAD" ? undefined : "";
  if (contentType === undefined) return body;
  const semi = contentType.indexOf(";");
  const media = (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
  if (media === JSON_TYPE || media.endsWith("+json")) {
    try {
      return JSON.parse(body.toString("utf8"));
    } catch (err) {
      throw new Error(`The request body is not valid JSON (content-type ${media}): ${err.message}`);
    }
  }
  if (media.startsWith("text/") || media === "application/x-www-form-urlencoded")
    return body.toString("utf8");
  return body;
}

/**
 * The query string as an object; a repeated key becomes an array of its values.
 * @param {string} search
 * @returns {Record<string, string | string[]>}
 */
function parseQuery(search) {
  /** @type {Record<string, string | string[]>} */
  const query = {};
  if (search === "") return query;
  for (const [key, value] of new URLSearchParams(search)) {
    const previous = Object.hasOwn(query, key) ? query[key] : undefined;
    const next =
      previous === undefined ? value : Array.isArray(previous) ? [...previous, value] : [previous, value];
    // defineProperty, so a key named "__proto__" is data rather than a prototype change.
    Object.defineProperty(query, key, { value: next, enumerable: true, writable: true, configurable: true });
  }
  return query;
}

/**
 * @param {number} ms
 * @param {boolean} failed
 */
function record(ms, failed) {
  const seconds = ms / 1000;
  metrics.calls++;
  if (failed) metrics.failures++;
  metrics.sum += seconds;
  let i = 0;
  while (i < BUCKETS.length && seconds > BUCKETS[i]) i++;
  metrics.buckets[i]++;
}

/** Prometheus text exposition, written by hand to keep prom-client out of the sandbox. */
function renderMetrics() {
  const label = `function="${FUNCTION_NAME.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`))}"`;
  let out =
    "# HELP function_calls_total Invocations of the function.\n" +
    "# TYPE function_calls_total counter\n" +
    `function_calls_total{${label}} ${metrics.calls}\n` +
    "# HELP function_failures_total Invocations that threw, timed out or answered a 5xx status.\n" +
    "# TYPE function_failures_total counter\n" +
    `function_failures_total{${label}} ${metrics.failures}\n` +
    "# HELP function_duration_seconds Time from receiving an invocation to answering it.\n" +
    "# TYPE function_duration_seconds histogram\n";
  let cumulative = 0;
  for (let i = 0; i <= BUCKETS.length; i++) {
    cumulative += metrics.buckets[i];
    const le = i < BUCKETS.length ? String(BUCKETS[i]) : "+Inf";
    out += `function_duration_seconds_bucket{${label},le="${le}"} ${cumulative}\n`;
  }
  out += `function_duration_seconds_sum{${label}} ${metrics.sum}\n`;
  out += `function_duration_seconds_count{${label}} ${metrics.calls}\n`;
  return out;
}

/**
 * Prefix each line written during an invocation with `\x1e<request-id>\x1f`, so the driver can tag it.
 * Patching `write` covers console.* too, which writes through it. A line left open by one writer is
 * ended before another writer's output, so a tag always starts a line.
 * @param {NodeJS.WriteStream} stream
 */
function tagOutput(stream) {
  const write = stream.write;
  /** The prefix of the line left open; "" when untagged output left it open; null at a line start. */
  let open = null;
  stream.write = function taggedWrite(chunk, encoding, callback) {
    const prefix = als.getStore();
    const isString = typeof chunk === "string";
    if (!isString && !ArrayBuffer.isView(chunk)) return write.call(stream, chunk, encoding, callback);
    const size = isString ? chunk.length : chunk.byteLength;
    if (size === 0) return write.call(stream, chunk, encoding, callback);
    if (prefix === undefined) {
      if (open !== null && open !== "") write.call(stream, "\n");
      open = (isString ? chunk.charCodeAt(size - 1) : bytes(chunk)[size - 1]) === 10 ? null : "";
      return write.call(stream, chunk, encoding, callback);
    }
    const text = isString
      ? typeof encoding === "string" && !/^utf-?8$/i.test(encoding)
        ? Buffer.from(chunk, encoding).toString("utf8")
        : chunk
      : bytes(chunk).toString("utf8");
    let out = open === prefix ? "" : open === null ? prefix : `\n${prefix}`;
    const last = text.length - 1;
    let from = 0;
    for (let nl = text.indexOf("\n"); nl !== -1 && nl < last; nl = text.indexOf("\n", from)) {
      out += text.slice(from, nl + 1) + prefix;
      from = nl + 1;
    }
    out += from === 0 ? text : text.slice(from);
    open = text.charCodeAt(last) === 10 ? null : prefix;
    return write.call(stream, out, "utf8", typeof encoding === "function" ? encoding : callback);
  };
}

/**
 * Import the handler module and find its export. Any failure throws a LoadError.
 * @returns {Promise<{ fn: Function, owner: unknown, exportName: string, alsoMain: boolean }>}
 */
async function loadHandler() {
  const dot = HANDLER.lastIndexOf(".");
  if (dot <= 0 || dot === HANDLER.length - 1) {
    throw new LoadError(
      `FUNCD_HANDLER "${HANDLER}" is not of the form file.export (for example handler.main)`,
    );
  }
  const file = HANDLER.slice(0, dot);
  const name = HANDLER.slice(dot + 1);
  const candidates = [".js", ".mjs", ".cjs"].map((ext) => file + ext);
  // Also accept a handler naming the file with its extension, e.g. "handler.mjs.main".
  if (/\.[cm]?js$/.test(file)) candidates.push(file);
  const found = candidates.find((candidate) => isFile(resolve(FUNCTION_DIR, candidate)));
  if (found === undefined) {
    throw new LoadError(
      `Cannot load handler "${HANDLER}": none of ${candidates.join(", ")} exists in ${FUNCTION_DIR}`,
    );
  }
  const path = resolve(FUNCTION_DIR, found);
  let ns;
  try {
    ns = await importModule(path);
  } catch (err) {
    throw new LoadError(`Cannot load handler "${HANDLER}": importing ${path} failed`, { cause: err });
  }
  // Named exports first (ESM, and CommonJS names Node detects); then the default export's members, which
  // is where `module.exports = { main }` and `export default { main }` put them.
  const fallback = ns.default;
  // Whether the same function is also exported as `main`, which keeps `handler` in the Kubeless style.
  /** @param {unknown} fn */
  const isMain = (fn) => ns.main === fn || (fallback != null && Object(fallback).main === fn);
  if (typeof ns[name] === "function") {
    // A CommonJS method keeps module.exports as `this`, as it would when called as exports.main().
    const owner = fallback?.[name] === ns[name] ? fallback : undefined;
    return { fn: ns[name], owner, exportName: name, alsoMain: isMain(ns[name]) };
  }
  if (fallback !== null && (typeof fallback === "object" || typeof fallback === "function")) {
    if (typeof fallback[name] === "function") {
      return { fn: fallback[name], owner: fallback, exportName: name, alsoMain: isMain(fallback[name]) };
    }
  }
  const names = Object.keys(ns).filter((key) => key !== "default");
  if (fallback !== null && typeof fallback === "object") {
    for (const key of Object.keys(fallback)) if (!names.includes(key)) names.push(key);
  } else if (fallback !== undefined) names.push("default");
  const what =
    name in ns || (fallback != null && name in Object(fallback)) ? "is not a function" : "is missing";
  const callable = names.find(
    (key) => typeof (key === "default" ? fallback : (ns[key] ?? Object(fallback)[key])) === "function",
  );
  throw new LoadError(
    `Cannot load handler "${HANDLER}": the export "${name}" of ${path} ${what}; ` +
      `its exports are: ${names.length ? names.join(", ") : "(none)"}` +
      (callable === undefined ? "" : ` (to call one, deploy with --handler ${file}.${callable})`),
  );
}

/**
 * The module's namespace, as `import()` gives it. `require()` gets there several times faster (no
 * loader round trips: about a millisecond less on every cold start), so it is tried first, except for
 * `.mjs`: a CommonJS module's namespace is `{ default: module.exports }` (named exports are looked up
 * on the default export anyway); an ES module loaded by require() is its namespace itself. What
 * require() refuses before running anything — ES modules with top-level await, or any ES module on a
 * Node without require(esm) — goes through import().
 * @param {string} path
 */
async function importModule(path) {
  if (path.endsWith(".mjs")) return import(pathToFileURL(path).href);
  let exports;
  try {
    exports = requireModule(path);
  } catch (err) {
    if (err?.code !== "ERR_REQUIRE_ESM" && err?.code !== "ERR_REQUIRE_ASYNC_MODULE") throw err;
    return import(pathToFileURL(path).href);
  }
  return exports?.[Symbol.toStringTag] === "Module" ? exports : { default: exports };
}

/**
 * @param {string} message
 * @param {unknown} [err]
 * @returns {never}
 */
function fatal(message, err) {
  const stack = err === undefined ? "" : `${err instanceof Error && err.stack ? err.stack : String(err)}\n`;
  // Pipes and files get synchronous writes, so this is flushed before exit.
  process.stderr.write(`funcd: ${message}\n${stack}`);
  process.exit(3);
}

/** @param {string} path */
function isFile(path) {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * A previous instance that was killed leaves its socket file behind, and listen() would fail on it.
 * @param {string} path
 */
function removeStaleSocket(path) {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch {
    // Nothing there: nothing to remove.
  }
}

/**
 * Stop accepting connections, let in-flight invocations finish, then exit 0. Bounded by the timeout,
 * since no invocation may legitimately run longer; the driver's SIGKILL is the backstop anyway.
 */
function drain() {
  if (draining) return;
  draining = true;
  server.close(() => process.exit(0));
  // Pooled idle connections would otherwise hold the server open until their keep-alive timeout.
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), TIMEOUT_MS + 1_000).unref();
}

/**
 * @param {string} listen
 * @returns {{ path: string, port?: undefined, host?: undefined } | { path?: undefined, port: number, host: string | undefined }}
 */
function parseListen(listen) {
  if (listen.startsWith("/")) return { path: listen };
  const colon = listen.lastIndexOf(":");
  const digits = colon === -1 ? listen : listen.slice(colon + 1);
  const port = Number(digits);
  const host = colon === -1 ? undefined : listen.slice(0, colon).replace(/^\[(.*)\]$/, "$1") || undefined;
  if (!/^\d{1,5}$/.test(digits) || port > 65_535) {
    process.stderr.write(`funcd: FUNCD_LISTEN "${listen}" is not a socket path, port or host:port\n`);
    process.exit(1);
  }
  return { port, host };
}

/**
 * Reads the function's settings from the environment (the contract's `FUNCD_*` variables), throwing a
 * ConfigError for an invalid one. Runs at boot, and again at specialization.
 */
function configure() {
  FUNCTION_DIR = resolve(env.FUNCD_FUNCTION_DIR || ".");
  HANDLER = env.FUNCD_HANDLER || "handler.main";
  FUNCTION_NAME = env.FUNCD_FUNCTION_NAME || basename(FUNCTION_DIR);
  REVISION = env.FUNCD_REVISION || "";
  RUNTIME = env.FUNCD_RUNTIME || "nodejs20";
  TIMEOUT_MS = positiveInt("FUNCD_TIMEOUT_MS", 30_000);
  MEMORY_LIMIT_MB = positiveInt("FUNCD_MEMORY_LIMIT_MB", 256);
  MEMORY_LIMIT = `${MEMORY_LIMIT_MB}Mi`;
  HANDLER_STYLE = handlerStyle();
}

/**
 * `FUNCD_HANDLER_STYLE`: how the handler is called (see "Handler styles" in the contract).
 * @returns {"auto" | "kubeless" | "lambda"}
 */
function handlerStyle() {
  const raw = env.FUNCD_HANDLER_STYLE;
  if (raw === undefined || raw === "") return "auto";
  if (raw === "auto" || raw === "kubeless" || raw === "lambda") return raw;
  throw new ConfigError(`FUNCD_HANDLER_STYLE "${raw}" is not one of auto, kubeless, lambda`);
}

/**
 * @param {string} name
 * @param {number} fallback
 */
function positiveInt(name, fallback) {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0)
    throw new ConfigError(`${name} "${raw}" is not a positive integer`);
  return value;
}
