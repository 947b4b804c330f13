/**
 * The Lambda handler style of funcd's Node.js runtime ("Lambda style" in docs/runtime-contract.md): a
 * request becomes an API Gateway HTTP API / Lambda Function URL payload format 2.0 event, the context is
 * Lambda's, `handler(event, context, callback)` may answer through a promise or the callback, and its
 * result is read the way format 2.0 reads it. server.mjs imports this module only for functions in the
 * Lambda style, so Kubeless-style functions never load it.
 */
import { randomBytes } from "node:crypto";

const JSON_HEADERS = Object.freeze({ "content-type": "application/json" });
const OK_EMPTY = Object.freeze({ statusCode: 200 });
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

function noop() {}

/**
 * @typedef {object} LambdaOptions
 * @property {Function} fn the handler
 * @property {unknown} owner `this` for the call (module.exports for a CommonJS method)
 * @property {string} functionName
 * @property {string} revision the revision id being served; "" when unknown
 * @property {number} memoryLimitMb
 */

/**
 * The three steps server.mjs runs per invocation, bound to one handler.
 * @param {LambdaOptions} options
 */
export function createLambdaStyle({ fn, owner, functionName, revision, memoryLimitMb }) {
  const functionVersion = revision || "$LATEST";
  const invokedFunctionArn = `arn:funcd:lambda:local:000000000000:function:${functionName}`;
  const memoryLimitInMB = String(memoryLimitMb);
  const logGroupName = `/funcd/functions/${functionName}`;
  // AWS's shape, `YYYY/MM/DD/[version]<instance id>`: one stream per instance.
  const logStreamName = `${ymd(new Date())}/[${functionVersion}]${randomBytes(16).toString("hex")}`;
  // As in AWS's Node runtime, a handler declaring a third parameter answers through the callback.
  const usesCallback = fn.length >= 3;

  /**
   * The payload format 2.0 event. Never throws: the body is passed on, not parsed.
   * @param {import("node:http").IncomingMessage} req
   * @param {import("node:http").ServerResponse} _res
   * @param {Buffer} body
   * @param {string} requestId
   * @param {string} path
   * @param {string} search the raw query string, without "?"
   */
  function prepare(req, _res, body, requestId, path, search) {
    const now = new Date();
    const incoming = req.headers;
    const distinct = req.headersDistinct;
    /** @type {Record<string, string>} */
    const headers = {};
    // Cookies travel in `cookies` instead, as in AWS's events.
    for (const name in distinct) if (name !== "cookie") setData(headers, name, distinct[name].join(","));
    const host = incoming.host || "localhost";
    const forwarded = incoming["x-forwarded-for"];
    // Built in AWS's field order; `cookies`, `queryStringParameters` and `body` are left out when the
    // request has none, as AWS does.
    /** @type {Record<string, unknown>} */
    const event = { version: "2.0", routeKey: "$default", rawPath: path, rawQueryString: search };
    if (incoming.cookie) event.cookies = splitCookies(incoming.cookie);
    event.headers = headers;
    if (search !== "") event.queryStringParameters = queryParameters(search);
    event.requestContext = {
      accountId: "funcd",
      apiId: functionName,
      domainName: host,
      domainPrefix: host.split(/[.:]/, 1)[0],
      http: {
        method: req.method,
        path,
        protocol: `HTTP/${req.httpVersion}`,
        sourceIp: forwarded ? forwarded.split(",", 1)[0].trim() : (req.socket.remoteAddress ?? ""),
        userAgent: incoming["user-agent"] ?? "",
      },
      requestId,
      routeKey: "$default",
      stage: "$default",
      time: clfTime(now),
      timeEpoch: now.getTime(),
    };
    const binary = body.length > 0 && !isText(incoming["content-type"]);
    if (body.length > 0) event.body = body.toString(binary ? "base64" : "utf8");
    event.isBase64Encoded = binary;
    return event;
  }

  /**
   * Call the handler with a Lambda context. Returns its value, or a promise of it when the handler is
   * async or answers through the callback (or context.done/succeed/fail); the first answer wins.
   * @param {unknown} event
   * @param {string} requestId
   * @param {number} deadline epoch milliseconds
   * @param {Record<string, unknown>} [extra] more context members (the Kubeless ones, for a handler that
   *   may be either style); Lambda's own win
   */
  function call(event, requestId, deadline, extra) {
    let settled = false;
    /** @type {(err: unknown, value?: unknown) => void} */
    let settle = noop;
    /** @type {Promise<unknown>} */
    const answered = new Promise((resolve, reject) => {
      settle = (err, value) => {
        if (settled) return;
        settled = true;
        if (err === undefined || err === null) resolve(value);
        else reject(err);
      };
    });
    // When the handler's promise answers first, a later callback error has nobody to hear it.
    answered.catch(noop);
    /** @param {unknown} err @param {unknown} [value] */
    const callback = (err, value) => settle(err, value);
    const context = {
      callbackWaitsForEmptyEventLoop: true,
      functionName,
      functionVersion,
      invokedFunctionArn,
      memoryLimitInMB,
      awsRequestId: requestId,
      logGroupName,
      logStreamName,
      getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
      done: callback,
      /** @param {unknown} [value] */
      succeed: (value) => settle(null, value),
      /** @param {unknown} err */
      fail: (err) => settle(err ?? new Error("context.fail() was called without an error")),
    };
    if (extra !== undefined) for (const key in extra) if (!(key in context)) context[key] = extra[key];
    const result = fn.call(owner, event, context, callback);
    if (typeof result?.then === "function") return Promise.race([result, answered]);
    // A two-parameter handler may still have answered through context.succeed() before returning.
    if (settled || usesCallback) return answered;
    return result;
  }

  /**
   * The handler's result as `{ statusCode, headers, body, isBase64Encoded }` for server.mjs to send.
   * Format 2.0: an object with a numeric statusCode describes the response (its `cookies` become
   * set-cookie headers); anything else is a 200 application/json whose body is the value as JSON, except
   * that a string is the body as it is.
   * @param {unknown} result
   */
  function shape(result) {
    if (result === undefined) return OK_EMPTY;
    if (result !== null && typeof result === "object" && typeof result.statusCode === "number") {
      const cookies = result.cookies;
      if (!Array.isArray(cookies) || cookies.length === 0) return result;
      return { ...result, headers: withCookies(result.headers, cookies) };
    }
    return {
      statusCode: 200,
      headers: JSON_HEADERS,
      body: typeof result === "string" ? result : JSON.stringify(result),
    };
  }

  return { prepare, call, shape };
}

/**
 * Whether a request body of this content type reaches the handler as text rather than base64.
 * @param {string | undefined} contentType
 */
function isText(contentType) {
  if (contentType === undefined) return false;
  const semi = contentType.indexOf(";");
  const media = (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
  return (
    media.startsWith("text/") ||
    media === "application/json" ||
    media.endsWith("+json") ||
    media === "application/xml" ||
    media.endsWith("+xml") ||
    media === "application/javascript" ||
    media === "application/x-www-form-urlencoded"
  );
}

/** @param {string} header the cookie header, pairs joined with "; " */
function splitCookies(header) {
  /** @type {string[]} */
  const cookies = [];
  for (const part of header.split(";")) {
    const cookie = part.trim();
    if (cookie !== "") cookies.push(cookie);
  }
  return cookies;
}

/**
 * Decoded query parameters; a repeated key's values joined with ",", as format 2.0 does.
 * @param {string} search
 */
function queryParameters(search) {
  /** @type {Record<string, string>} */
  const query = {};
  for (const [key, value] of new URLSearchParams(search)) {
    setData(query, key, Object.hasOwn(query, key) ? `${query[key]},${value}` : value);
  }
  return query;
}

/**
 * Set a property as data, so a key named "__proto__" is kept rather than changing the prototype.
 * @param {Record<string, string>} target
 * @param {string} key
 * @param {string} value
 */
function setData(target, key, value) {
  if (key === "__proto__") {
    Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  } else target[key] = value;
}

/**
 * The response's headers plus one set-cookie per cookie, after any set-cookie the headers held.
 * @param {unknown} headers
 * @param {unknown[]} cookies
 */
function withCookies(headers, cookies) {
  /** @type {Record<string, unknown>} */
  const out = {};
  /** @type {unknown[]} */
  let setCookie = [];
  if (headers !== null && typeof headers === "object") {
    for (const name in headers) {
      const value = headers[name];
      if (name.toLowerCase() !== "set-cookie") out[name] = value;
      else if (value !== undefined && value !== null) setCookie = setCookie.concat(value);
    }
  }
  out["set-cookie"] = setCookie.concat(cookies.map(String));
  return out;
}

/** @param {number} n */
function pad(n) {
  return n < 10 ? `0${n}` : String(n);
}

/**
 * Common Log Format time in UTC, as `requestContext.time`: `12/Mar/2020:19:03:58 +0000`.
 * @param {Date} d
 */
function clfTime(d) {
  return (
    `${pad(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`
  );
}

/** @param {Date} d */
function ymd(d) {
  return `${d.getUTCFullYear()}/${pad(d.getUTCMonth() + 1)}/${pad(d.getUTCDate())}`;
}
