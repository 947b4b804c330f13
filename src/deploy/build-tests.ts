/**
 * Build-time tests: the requests a function's spec lists under `tests:`, sent to the deploy's proving
 * instance before traffic switches to it. The runner is pure — it gets a `send` that performs one request —
 * so the matching and the diffs are tested without an instance, and the deployer decides how to reach one.
 */
import { randomUUID } from "node:crypto";
import { isDeepStrictEqual } from "node:util";
import type { Dispatcher } from "undici";
import { z } from "zod";
import { FuncdError } from "../shared/errors.js";

/** One test as users write it in the spec. */
export const BuildTestSchema = z.object({
  name: z.string().min(1).max(200).optional(),
  request: z
    .object({
      method: z
        .string()
        .regex(/^[A-Za-z]+$/, "a method is a word such as GET or POST")
        .default("GET")
        .transform((m) => m.toUpperCase()),
      path: z.string().regex(/^\//, "a test path starts with /").default("/"),
      headers: z.record(z.string(), z.string()).optional(),
      /** A string is sent as it is; any other JSON value is sent as JSON. */
      body: z.unknown().optional(),
    })
    .prefault({}),
  expect: z
    .object({
      status: z.number().int().min(100).max(599).default(200),
      /** The whole body, exactly. */
      body: z.string().optional(),
      /** A JSON value the answer must contain: objects may have more keys, arrays and scalars must match. */
      json: z.unknown().optional(),
      /** Headers the answer must have (names case-insensitive, values exact). */
      headers: z.record(z.string(), z.string()).optional(),
    })
    .prefault({}),
});

export type BuildTest = z.output<typeof BuildTestSchema>;

/** What the runner asks `send` to do. */
export interface TestRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string | undefined;
}

export interface TestResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export interface BuildTestResult {
  name: string;
  passed: boolean;
  durationMs: number;
  request: { method: string; path: string };
  /** One line per difference between what was expected and what came back; empty when it passed. */
  diff: string[];
  /** The answer (body cut to a readable length), or null when the request itself failed. */
  actual: { status: number; body: string } | null;
}

/** How much of a body a diff or a result shows. */
const SHOWN_BODY = 500;

/** The name a test is reported under: its own, else `METHOD path`. */
export function testName(test: BuildTest): string {
  return test.name ?? `${test.request.method} ${test.request.path}`;
}

/**
 * Runs the tests one after the other (a build-time test suite is small, and order may matter to its
 * author) and reports each; a failing test does not stop the rest, so one deploy shows every failure.
 */
export async function runBuildTests(
  tests: readonly BuildTest[],
  send: (request: TestRequest) => Promise<TestResponse>,
  options: { now?: () => number; onResult?: (result: BuildTestResult) => void } = {},
): Promise<BuildTestResult[]> {
  const now = options.now ?? (() => performance.now());
  const results: BuildTestResult[] = [];
  for (const test of tests) {
    const started = now();
    const request = toRequest(test);
    let result: BuildTestResult;
    try {
      const response = await send(request);
      const diff = compare(test, response);
      result = {
        name: testName(test),
        passed: diff.length === 0,
        durationMs: Math.round(now() - started),
        request: { method: request.method, path: request.path },
        diff,
        actual: { status: response.status, body: cut(response.body) },
      };
    } catch (err) {
      result = {
        name: testName(test),
        passed: false,
        durationMs: Math.round(now() - started),
        request: { method: request.method, path: request.path },
        diff: [`request failed: ${err instanceof Error ? err.message : String(err)}`],
        actual: null,
      };
    }
    results.push(result);
    options.onResult?.(result);
  }
  return results;
}

/**
 * A `send` that talks to one instance over its keep-alive connection, as the gateway would: with
 * `x-funcd-invoke: 1` (the runtime answers invocations only with it), a request id and the prefix the
 * function would be reached under. The body is read whole (tests compare it), waiting at most the
 * function's timeout plus a little for the runtime's own timeout answer.
 */
export function instanceSender(
  upstream: Dispatcher,
  options: { prefix: string; timeoutMs: number },
): (request: TestRequest) => Promise<TestResponse> {
  const waitMs = options.timeoutMs + 2_000;
  return async (request) => {
    const answer = await upstream.request({
      method: request.method as Dispatcher.HttpMethod,
      path: request.path,
      headers: {
        ...request.headers,
        "x-funcd-invoke": "1",
        "x-request-id": `build-test-${randomUUID()}`,
        "x-forwarded-prefix": options.prefix,
      },
      body: request.body ?? null,
      headersTimeout: waitMs,
      bodyTimeout: waitMs,
    });
    return { status: answer.statusCode, headers: answer.headers, body: await answer.body.text() };
  };
}

/**
 * Runs the tests against a deploy's proving instance, reporting a line per test (and a summary) to
 * `onProgress`; throws BUILD_TEST_FAILED — detail: the diffs, indented; `extra.failures`: the failed
 * results — when any fails.
 */
export async function testInstance(options: {
  upstream: Dispatcher;
  functionName: string;
  timeoutMs: number;
  tests: readonly BuildTest[];
  onProgress: (line: string) => void;
}): Promise<void> {
  const { tests, onProgress } = options;
  onProgress(`running ${plural(tests.length, "build-time test")}`);
  const send = instanceSender(options.upstream, {
    prefix: `/function/${options.functionName}`,
    timeoutMs: options.timeoutMs,
  });
  const results = await runBuildTests(tests, send, { onResult: (result) => onProgress(resultLine(result)) });
  const failed = results.filter((r) => !r.passed);
  if (failed.length === 0) {
    onProgress(`${plural(results.length, "build-time test")} passed`);
    return;
  }
  const detail = formatFailures(results)
    .split("\n")
    .map((line) => `  ${line}`)
    .join("\n");
  throw new FuncdError(
    "BUILD_TEST_FAILED",
    `${failed.length} of ${plural(results.length, "build-time test")} failed.\n${detail}`,
    { extra: { failures: failed } },
  );
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

/** The progress line for one result: `test 'adds' passed (12 ms)`. */
export function resultLine(result: BuildTestResult): string {
  return `test '${result.name}' ${result.passed ? "passed" : "failed"} (${result.durationMs} ms)`;
}

/** The failures as an indented, readable block for an error's detail. */
export function formatFailures(results: readonly BuildTestResult[]): string {
  return results
    .filter((r) => !r.passed)
    .map((r) =>
      [`test '${r.name}' (${r.request.method} ${r.request.path}):`, ...r.diff.map((d) => `  ${d}`)].join(
        "\n",
      ),
    )
    .join("\n");
}

function toRequest(test: BuildTest): TestRequest {
  const { method, path, headers = {}, body } = test.request;
  const lower = new Set(Object.keys(headers).map((h) => h.toLowerCase()));
  if (body === undefined || body === null) return { method, path, headers, body: undefined };
  if (typeof body === "string") return { method, path, headers, body };
  // Any other value is JSON, and says so unless the test set its own content type.
  const json = lower.has("content-type") ? headers : { ...headers, "content-type": "application/json" };
  return { method, path, headers: json, body: JSON.stringify(body) };
}

/** Every difference between the test's expectation and the response, as `what: expected …, got …`. */
export function compare(test: BuildTest, response: TestResponse): string[] {
  const diff: string[] = [];
  const { expect } = test;
  if (response.status !== expect.status) {
    diff.push(`status: expected ${expect.status}, got ${response.status}`);
  }
  for (const [name, value] of Object.entries(expect.headers ?? {})) {
    const got = headerValue(response.headers, name);
    if (got === undefined) diff.push(`header ${name.toLowerCase()}: expected ${quote(value)}, missing`);
    else if (got !== value)
      diff.push(`header ${name.toLowerCase()}: expected ${quote(value)}, got ${quote(got)}`);
  }
  if (expect.body !== undefined && response.body !== expect.body) {
    diff.push(`body: expected ${quote(cut(expect.body))}, got ${quote(cut(response.body))}`);
  }
  if (expect.json !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(response.body);
    } catch {
      diff.push(`json: the body is not JSON: ${quote(cut(response.body))}`);
      return diff;
    }
    diff.push(...jsonSubsetDiff(expect.json, parsed));
  }
  return diff;
}

/**
 * Where `actual` does not contain `expected`, one line per path (`$.user.name: expected "Ada", got "Bob"`).
 * Objects match when every expected key matches (extra keys are fine); arrays match element by element
 * and must have the same length (a shorter list is a different answer, not a subset); anything else
 * must be equal.
 */
export function jsonSubsetDiff(expected: unknown, actual: unknown, at = "$"): string[] {
  if (isObject(expected)) {
    if (!isObject(actual)) return [`${at}: expected an object, got ${show(actual)}`];
    const lines: string[] = [];
    for (const [key, value] of Object.entries(expected)) {
      const path = `${at}${/^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`}`;
      if (!(key in actual)) lines.push(`${path}: expected ${show(value)}, missing`);
      else lines.push(...jsonSubsetDiff(value, actual[key], path));
    }
    return lines;
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return [`${at}: expected an array, got ${show(actual)}`];
    if (actual.length !== expected.length) {
      return [`${at}: expected ${expected.length} items, got ${actual.length}: ${show(actual)}`];
    }
    return expected.flatMap((value, i) => jsonSubsetDiff(value, actual[i], `${at}[${i}]`));
  }
  return isDeepStrictEqual(expected, actual)
    ? []
    : [`${at}: expected ${show(expected)}, got ${show(actual)}`];
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function headerValue(headers: TestResponse["headers"], name: string): string | undefined {
  const wanted = name.toLowerCase();
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== wanted || value === undefined) continue;
    return Array.isArray(value) ? value.join(", ") : value;
  }
  return undefined;
}

function show(value: unknown): string {
  return value === undefined ? "nothing" : cut(JSON.stringify(value), 200);
}

function quote(text: string): string {
  return JSON.stringify(text);
}

function cut(text: string, max = SHOWN_BODY): string {
  return text.length > max ? `${text.slice(0, max)}… (${text.length} characters)` : text;
}
