/**
 * The Python runtime server (templates/python3/server.py) against docs/runtime-contract.md: each case
 * spawns the real server with the system's /usr/bin/python3 on a unix socket with a clean environment,
 * as the process driver does. The cases mirror runtime-nodejs.test.ts; where Python differs, the test
 * name says so.
 */
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Agent, type Dispatcher, request } from "undici";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

const SERVER = fileURLToPath(new URL("../../templates/python3/server.py", import.meta.url));
const FIXTURES = fileURLToPath(new URL("../fixtures/python-handlers/", import.meta.url));
// The real interpreter, not a version manager's shim on PATH: the process driver resolves it the same way.
const PYTHON = "/usr/bin/python3";

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface Runtime {
  child: ChildProcess;
  socketPath: string;
  dispatcher: Agent;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<Exit>;
  exited: boolean;
  dir: string;
}

interface RuntimeOptions {
  /** A fixture folder name, or an absolute function folder. */
  fixture: string;
  handler?: string;
  timeoutMs?: number;
  /** Listen here instead of a fresh socket in a fresh temp dir. */
  listen?: string;
  /** FUNCD_HANDLER_STYLE; unset (auto) when undefined. */
  style?: string;
}

const running = new Set<Runtime>();

function spawnRuntime(options: RuntimeOptions): Runtime {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "funcd-rt-python-"));
  const socketPath = path.join(dir, "sock");
  const functionDir = path.isAbsolute(options.fixture)
    ? options.fixture
    : path.join(FIXTURES, options.fixture);
  const child = spawn(PYTHON, [SERVER], {
    cwd: dir,
    // Never the test runner's environment: the driver gives the runtime only its own variables.
    env: {
      PATH: "/usr/local/bin:/usr/bin:/bin",
      FUNCD_LISTEN: options.listen ?? socketPath,
      FUNCD_FUNCTION_DIR: functionDir,
      FUNCD_HANDLER: options.handler ?? "handler.main",
      FUNCD_FUNCTION_NAME: path.basename(functionDir),
      FUNCD_REVISION: "rev-1",
      FUNCD_RUNTIME: "python3",
      FUNCD_TIMEOUT_MS: String(options.timeoutMs ?? 5_000),
      FUNCD_MEMORY_LIMIT_MB: "128",
      ...(options.style === undefined ? {} : { FUNCD_HANDLER_STYLE: options.style }),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const runtime: Runtime = {
    child,
    socketPath: options.listen ?? socketPath,
    dispatcher: new Agent({ connect: { socketPath: options.listen ?? socketPath } }),
    stdout: () => stdout,
    stderr: () => stderr,
    exited: false,
    dir,
    exit: new Promise((resolve) => {
      child.on("close", (code, signal) => {
        runtime.exited = true;
        resolve({ code, signal });
      });
    }),
  };
  running.add(runtime);
  return runtime;
}

async function startRuntime(options: RuntimeOptions): Promise<Runtime> {
  const runtime = spawnRuntime(options);
  await waitReady(runtime);
  return runtime;
}

async function waitReady(runtime: Runtime, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (runtime.exited) throw new Error(`The runtime exited before it was ready:\n${runtime.stderr()}`);
    try {
      const res = await request("http://localhost/healthz", { dispatcher: runtime.dispatcher });
      await res.body.dump();
      if (res.statusCode === 200) return;
    } catch {
      // Not listening yet.
    }
    await sleep(10);
  }
  throw new Error(`The runtime was not ready within ${timeoutMs} ms:\n${runtime.stderr()}`);
}

async function stop(runtime: Runtime): Promise<void> {
  running.delete(runtime);
  if (!runtime.exited) runtime.child.kill("SIGKILL");
  await runtime.exit;
  await runtime.dispatcher.destroy();
  fs.rmSync(runtime.dir, { recursive: true, force: true });
}

async function stopAll(): Promise<void> {
  await Promise.all([...running].map(stop));
}

let requestCounter = 0;

interface InvokeInit {
  method?: Dispatcher.HttpMethod;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer;
}

/** An invocation as the gateway sends it: marked with x-funcd-invoke and carrying a request id. */
async function invoke(runtime: Runtime, urlPath: string, init: InvokeInit = {}) {
  const options: Parameters<typeof request>[1] = {
    dispatcher: runtime.dispatcher,
    method: init.method ?? (init.body === undefined ? "GET" : "POST"),
    headers: { "x-funcd-invoke": "1", "x-request-id": `req-${++requestCounter}`, ...init.headers },
  };
  if (init.body !== undefined) options.body = init.body;
  const res = await request(`http://localhost${urlPath}`, options);
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body, text: body.toString("utf8") };
}

async function waitFor(read: () => string, expected: string, timeoutMs = 3_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (!read().includes(expected) && Date.now() < deadline) await sleep(10);
  return read();
}

/** A function folder whose handler does not parse; written at test time so no tool trips on a fixture. */
function brokenFunctionDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "funcd-rt-python-broken-"));
  fs.writeFileSync(path.join(dir, "handler.py"), "def main(event, context):\n    return {'ok': True\n");
  return dir;
}

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const address = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  return address.port;
}

/** Reads one HTTP/1.1 response with a content-length from a raw socket. */
function readResponse(socket: net.Socket): Promise<{ head: string; body: string }> {
  return new Promise((resolve, reject) => {
    let buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      const end = buffer.indexOf("\r\n\r\n");
      if (end === -1) return;
      const head = buffer.subarray(0, end).toString("latin1");
      const length = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? 0);
      if (buffer.length < end + 4 + length) return;
      socket.off("data", onData);
      socket.off("error", reject);
      resolve({ head, body: buffer.subarray(end + 4, end + 4 + length).toString("utf8") });
    };
    socket.on("data", onData);
    socket.on("error", reject);
  });
}

afterAll(stopAll);

describe("the Python runtime serving one handler", () => {
  let echo: Runtime;
  beforeAll(async () => {
    echo = await startRuntime({ fixture: "echo" });
  });
  afterAll(async () => {
    await stop(echo);
  });

  it("GET /healthz without x-funcd-invoke answers ready", async () => {
    const res = await request("http://localhost/healthz", {
      dispatcher: echo.dispatcher,
      headers: { "x-request-id": "rid-health" },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toBe("application/json");
    expect(res.headers["x-request-id"]).toBe("rid-health");
    expect(await res.body.json()).toEqual({ status: "ready" });
  });

  it("/healthz with x-funcd-invoke is routed to the handler", async () => {
    const res = await invoke(echo, "/healthz");
    expect(res.status).toBe(200);
    expect(res.text).toBe("the handler answered /healthz");
  });

  it("a JSON body arrives as parsed data", async () => {
    const res = await invoke(echo, "/", {
      headers: { "content-type": "application/json; charset=utf-8" },
      body: JSON.stringify({ name: "Ada", tags: [1, 2] }),
    });
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(res.text)).toMatchObject({
      dataType: "dict",
      data: { name: "Ada", tags: [1, 2] },
      sameData: true,
    });
  });

  it("a +json body arrives as parsed data", async () => {
    const res = await invoke(echo, "/", {
      headers: { "content-type": "application/cloudevents+json" },
      body: '{"specversion":"1.0"}',
    });
    expect(JSON.parse(res.text)).toMatchObject({ dataType: "dict", data: { specversion: "1.0" } });
  });

  it("a text body arrives as a str", async () => {
    const res = await invoke(echo, "/", { headers: { "content-type": "text/plain" }, body: "héllo" });
    expect(JSON.parse(res.text)).toMatchObject({ dataType: "str", isBytes: false, data: "héllo" });
  });

  it("a form body arrives as a str", async () => {
    const res = await invoke(echo, "/", {
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "a=1&b=2",
    });
    expect(JSON.parse(res.text)).toMatchObject({ dataType: "str", data: "a=1&b=2" });
  });

  it("a binary body arrives as bytes", async () => {
    const res = await invoke(echo, "/", {
      headers: { "content-type": "application/octet-stream" },
      body: Buffer.from([0, 1, 255]),
    });
    expect(JSON.parse(res.text)).toMatchObject({ dataType: "bytes", isBytes: true, data: [0, 1, 255] });
  });

  it("a GET without a body has None data, a bodiless POST an empty str", async () => {
    expect(JSON.parse((await invoke(echo, "/")).text)).toMatchObject({ dataType: "NoneType", data: null });
    const post = await invoke(echo, "/", { method: "POST", headers: { "content-length": "0" } });
    expect(JSON.parse(post.text)).toMatchObject({ dataType: "str", data: "" });
  });

  it("a chunked request body is read whole", async () => {
    const res = await request("http://localhost/", {
      dispatcher: echo.dispatcher,
      method: "POST",
      headers: { "x-funcd-invoke": "1", "content-type": "text/plain" },
      // An async iterable has no known length, so undici sends it chunked.
      body: (async function* () {
        yield "first ";
        await sleep(20);
        yield "second";
      })(),
    });
    expect(await res.body.json()).toMatchObject({ dataType: "str", data: "first second" });
  });

  it("an invalid JSON body answers 400 problem+json", async () => {
    const res = await invoke(echo, "/", { headers: { "content-type": "application/json" }, body: "{nope" });
    expect(res.status).toBe(400);
    expect(res.headers["content-type"]).toBe("application/problem+json");
    expect(JSON.parse(res.text)).toMatchObject({
      type: "https://funcd.dev/errors#bad-request",
      status: 400,
      code: "BAD_REQUEST",
    });
  });

  it("the path excludes the query, and a repeated query key becomes a list", async () => {
    const res = await invoke(echo, "/orders/42?tag=a&tag=b&page=2&empty=&name=J%C3%BCrgen+K", {
      headers: { "x-forwarded-prefix": "/function/echo" },
    });
    expect(JSON.parse(res.text)).toMatchObject({
      method: "GET",
      path: "/orders/42",
      query: { tag: ["a", "b"], page: "2", empty: "", name: "Jürgen K" },
      forwardedPrefix: "/function/echo",
      headerAnyCase: "/function/echo",
    });
  });

  it("extensions.request has method, path, url, query, body and json", async () => {
    const res = await invoke(echo, "/orders?x=1", {
      headers: {
        "content-type": "application/json",
        host: "api.example.com",
        "x-forwarded-proto": "https",
        "x-forwarded-prefix": "/function/echo",
      },
      body: '{"n":1}',
    });
    expect(JSON.parse(res.text).request).toEqual({
      method: "POST",
      path: "/orders",
      url: "https://api.example.com/function/echo/orders?x=1",
      query: { x: "1" },
      body: [...Buffer.from('{"n":1}')],
      json: { n: 1 },
      contentType: "application/json",
    });
  });

  it("Kubeless and CloudEvents fields come from the headers", async () => {
    const res = await invoke(echo, "/", {
      headers: {
        "event-id": "evt-1",
        "event-type": "com.example.order",
        "event-time": "2024-01-02T03:04:05Z",
        "event-namespace": "shop",
        "ce-id": "ce-1",
        "ce-type": "com.example.ce",
        "ce-source": "/orders",
        "ce-specversion": "1.0",
      },
    });
    expect(JSON.parse(res.text)).toMatchObject({
      eventId: "evt-1",
      eventIdAttr: "evt-1",
      eventType: "com.example.order",
      eventTime: "2024-01-02T03:04:05Z",
      eventNamespace: "shop",
      ce: { id: "ce-1", type: "com.example.ce", source: "/orders", specversion: "1.0" },
      ceSource: "/orders",
    });
  });

  it("Kubeless fields default to the request id, the content type, now and funcd", async () => {
    const before = Date.now();
    const res = await invoke(echo, "/", {
      headers: { "x-request-id": "rid-defaults", "content-type": "text/plain" },
      body: "x",
    });
    const body = JSON.parse(res.text);
    expect(body).toMatchObject({
      eventId: "rid-defaults",
      eventType: "text/plain",
      eventNamespace: "funcd",
      ce: {},
    });
    expect(body.eventTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(Date.parse(body.eventTime)).toBeGreaterThanOrEqual(before - 1_000);
  });

  it("the context describes the function and its remaining time, in every spelling", async () => {
    const res = await invoke(echo, "/", { headers: { "x-request-id": "rid-context" } });
    const { context } = JSON.parse(res.text);
    expect(context).toMatchObject({
      "function-name": "echo",
      function_name: "echo",
      functionName: "echo",
      attrName: "echo",
      timeout: 5,
      timeout_ms: 5_000,
      timeoutMs: 5_000,
      runtime: "python3",
      "memory-limit": "128Mi",
      memory_limit: "128Mi",
      memoryLimit: "128Mi",
      request_id: "rid-context",
      requestId: "rid-context",
      revision: "rev-1",
    });
    expect(context.remaining).toBeGreaterThan(4_000);
    expect(context.remaining).toBeLessThanOrEqual(5_000);
    expect(context.remainingCamel).toBeLessThanOrEqual(context.remaining);
  });

  it("the request id is echoed on the response, or made up when the request has none", async () => {
    const res = await invoke(echo, "/text", { headers: { "x-request-id": "rid-echo" } });
    expect(res.headers["x-request-id"]).toBe("rid-echo");
    const anonymous = await request("http://localhost/text", {
      dispatcher: echo.dispatcher,
      headers: { "x-funcd-invoke": "1" },
    });
    await anonymous.body.dump();
    expect(anonymous.headers["x-request-id"]).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-/,
    );
  });

  it("returning a number answers it as JSON", async () => {
    const res = await invoke(echo, "/number");
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("application/json");
    expect(res.text).toBe("5");
  });

  it("returning a str answers text/plain", async () => {
    const res = await invoke(echo, "/text");
    expect(res.headers["content-type"]).toBe("text/plain; charset=utf-8");
    expect(res.headers["content-length"]).toBe("10");
    expect(res.text).toBe("plain text");
  });

  it("returning None answers 200 with an empty body", async () => {
    const res = await invoke(echo, "/nothing");
    expect(res.status).toBe(200);
    expect(res.headers["content-length"]).toBe("0");
    expect(res.text).toBe("");
  });

  it("returning a (body, status) tuple sets the status", async () => {
    const res = await invoke(echo, "/tuple");
    expect(res.status).toBe(201);
    expect(res.headers["content-type"]).toBe("text/plain; charset=utf-8");
    expect(res.text).toBe("made it");
  });

  it("returning a (body, status, headers) tuple sets status and headers", async () => {
    const res = await invoke(echo, "/tuple-headers");
    expect(res.status).toBe(202);
    expect(res.headers["x-queue"]).toBe("jobs");
    expect(res.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(res.text)).toEqual({ queued: true });
  });

  it("status and headers set on extensions.response apply to a plain result (Python only)", async () => {
    const res = await invoke(echo, "/response");
    expect(res.status).toBe(418);
    expect(res.headers["x-teapot"]).toBe("yes");
    expect(res.text).toBe("short and stout");
  });

  it("two requests travel on one kept-alive connection", async () => {
    const socket = net.connect(echo.socketPath);
    try {
      await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
      const ask = (id: string) =>
        `GET /text HTTP/1.1\r\nhost: localhost\r\nx-funcd-invoke: 1\r\nx-request-id: ${id}\r\n\r\n`;
      const first = readResponse(socket);
      socket.write(ask("rid-ka-1"));
      const one = await first;
      expect(one.head).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      expect(one.head).toMatch(/\r\nconnection: keep-alive\r\n/i);
      expect(one.body).toBe("plain text");
      const second = readResponse(socket);
      socket.write(ask("rid-ka-2"));
      const two = await second;
      expect(two.head).toContain("x-request-id: rid-ka-2");
      expect(two.body).toBe("plain text");
    } finally {
      socket.destroy();
    }
  });

  it("print() and logging during an invocation are tagged with the request id", async () => {
    const res = await invoke(echo, "/log", { headers: { "x-request-id": "rid-log" } });
    expect(res.text).toBe("logged");
    const tag = "\x1erid-log\x1f";
    const stdout = await waitFor(echo.stdout, `${tag}bytes line\n`);
    const stderr = await waitFor(echo.stderr, `${tag}WARNING:root:logging line\n`);
    // Output outside an invocation (here: while the module loaded) stays untagged.
    expect(stdout.startsWith("echo handler loaded\n")).toBe(true);
    for (const line of ["print line", "first line", "second line", "partial line continues", "bytes line"]) {
      expect(stdout).toContain(`${tag}${line}\n`);
    }
    expect(stderr).toContain(`${tag}to stderr\n`);
    expect(stderr).toContain(`${tag}WARNING:root:logging line\n`);
  });
});

describe("the Python runtime loading and answering", () => {
  afterEach(stopAll);

  it("serves an async def handler", async () => {
    const runtime = await startRuntime({ fixture: "async-handler" });
    const res = await invoke(runtime, "/?ms=20", {
      headers: { "content-type": "application/json", "x-request-id": "rid-async" },
      body: '{"name":"Grace"}',
    });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text)).toEqual({ slept: 20, name: "Grace" });
    // The coroutine runs on the event loop's thread, yet its output is tagged with its request id.
    expect(await waitFor(runtime.stdout, "\x1erid-async\x1fasync started\n")).toContain(
      "\x1erid-async\x1fasync started\n",
    );
  });

  it("an async def handler past its timeout answers 408, and other invocations still run", async () => {
    const runtime = await startRuntime({ fixture: "async-handler", timeoutMs: 300 });
    const res = await invoke(runtime, "/?ms=1000", { headers: { "x-request-id": "rid-async-slow" } });
    expect(res.status).toBe(408);
    expect(res.headers["x-funcd-recycle"]).toBe("1");
    expect(JSON.parse(res.text)).toMatchObject({ code: "FUNCTION_TIMEOUT" });
    // The late coroutine is not interrupted (as in Node) and does not block the event loop.
    expect(JSON.parse((await invoke(runtime, "/?ms=0")).text)).toEqual({ slept: 0, name: null });
    expect(await waitFor(runtime.stdout, "\x1erid-async-slow\x1fasync finished\n")).toContain(
      "\x1erid-async-slow\x1fasync finished\n",
    );
  });

  it("serves a handler file in a sub-folder (lib/fn.main) that takes only the event", async () => {
    const runtime = await startRuntime({ fixture: "named-export", handler: "lib/fn.main" });
    expect(JSON.parse((await invoke(runtime, "/")).text)).toEqual({ from: "lib/fn.py" });
  });

  it("a handler file named like a standard library module (json.py) does not shadow it", async () => {
    const runtime = await startRuntime({ fixture: "stdlib-name", handler: "json.main" });
    const res = await invoke(runtime, "/");
    expect(res.headers["content-type"]).toBe("application/json");
    // Loaded under a name of its own, so `import json` anywhere still finds the standard library's.
    expect(JSON.parse(res.text)).toEqual({ served: "by json.py", name: "funcd_handler_json" });
    expect(runtime.stderr()).toContain(
      "funcd: warning: json.py in " +
        `${path.join(FIXTURES, "stdlib-name")} shadows the standard library's module of the same name`,
    );
  });

  it("serves a function of another file (helloget.foo)", async () => {
    const runtime = await startRuntime({ fixture: "named-export", handler: "helloget.foo" });
    expect((await invoke(runtime, "/", { method: "PUT", body: "" })).text).toBe("hello PUT");
  });

  it("a statusCode dict sets status and headers", async () => {
    const runtime = await startRuntime({ fixture: "status-object" });
    const res = await invoke(runtime, "/");
    expect(res.status).toBe(201);
    expect(res.headers["content-type"]).toBe("application/vnd.funcd+json");
    expect(res.headers["x-custom"]).toBe("yes");
    expect(res.headers["x-count"]).toBe("2");
    expect(JSON.parse(res.text)).toEqual({ created: true });
  });

  it("a statusCode dict with isBase64Encoded answers the decoded bytes", async () => {
    const runtime = await startRuntime({ fixture: "status-object" });
    const res = await invoke(runtime, "/base64");
    expect(res.headers["content-type"]).toBe("image/png");
    expect([...res.body]).toEqual([0x89, 0x50, 0x4e, 0x47]);
  });

  it("returning bytes answers application/octet-stream", async () => {
    const runtime = await startRuntime({ fixture: "bytes-result" });
    const res = await invoke(runtime, "/");
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("application/octet-stream");
    expect([...res.body]).toEqual([0, 1, 2, 254, 255]);
  });

  it("a raised exception answers 500 problem+json without the traceback", async () => {
    const runtime = await startRuntime({ fixture: "throwing" });
    const res = await invoke(runtime, "/", { headers: { "x-request-id": "rid-throw" } });
    expect(res.status).toBe(500);
    // The handler set text/html before raising; the problem must not be labelled with it.
    expect(res.headers["content-type"]).toBe("application/problem+json");
    expect(res.headers["x-request-id"]).toBe("rid-throw");
    const problem = JSON.parse(res.text);
    expect(problem).toEqual({
      type: "https://funcd.dev/errors#function-error",
      title: "The function threw an error",
      status: 500,
      detail: "TypeError: boom in the handler",
      code: "FUNCTION_ERROR",
    });
    expect(res.text).not.toContain("handler.py");
    expect(res.text).not.toContain("Traceback");
    // The traceback goes to stderr, every line tagged with the request id, without the server's frames.
    const stderr = await waitFor(runtime.stderr, "TypeError: boom in the handler\n");
    const tagged = stderr
      .split("\n")
      .filter((line) => line.includes("handler.py") || line.includes("Traceback"));
    expect(tagged.length).toBeGreaterThan(1);
    for (const line of tagged) expect(line.startsWith("\x1erid-throw\x1f")).toBe(true);
    expect(stderr).toContain('\x1erid-throw\x1ffuncd: function "throwing" failed:\n');
    expect(stderr).toContain("\x1erid-throw\x1fTypeError: boom in the handler\n");
    expect(stderr).not.toContain("funcd_runtime");
  });

  it("a result that is not JSON-able answers 500 naming the type", async () => {
    const runtime = await startRuntime({ fixture: "throwing" });
    const res = await invoke(runtime, "/unserializable");
    expect(res.status).toBe(500);
    expect(JSON.parse(res.text).detail).toBe("TypeError: Object of type set is not JSON serializable");
  });

  it("metrics count calls and failures", async () => {
    const runtime = await startRuntime({ fixture: "throwing" });
    expect((await invoke(runtime, "/ok")).status).toBe(200);
    expect((await invoke(runtime, "/")).status).toBe(500);
    expect((await invoke(runtime, "/unavailable")).status).toBe(503);
    const res = await request("http://localhost/metrics", { dispatcher: runtime.dispatcher });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.body.text();
    expect(text).toContain("# TYPE function_calls_total counter\n");
    expect(text).toContain("# TYPE function_duration_seconds histogram\n");
    expect(text).toContain('function_calls_total{function="throwing"} 3\n');
    expect(text).toContain('function_failures_total{function="throwing"} 2\n');
    expect(text).toContain('function_duration_seconds_bucket{function="throwing",le="0.005"} ');
    expect(text).toContain('function_duration_seconds_bucket{function="throwing",le="+Inf"} 3\n');
    expect(text).toContain('function_duration_seconds_count{function="throwing"} 3\n');
    expect(text).toMatch(/^function_duration_seconds_sum\{function="throwing"\} \d+(\.\d+)?(e-\d+)?$/m);
  });

  it("/metrics with x-funcd-invoke is routed to the handler", async () => {
    const runtime = await startRuntime({ fixture: "named-export", handler: "helloget.foo" });
    expect((await invoke(runtime, "/metrics")).text).toBe("hello GET");
  });

  it("a handler past its timeout answers 408 and asks to be recycled; /healthz answers meanwhile", async () => {
    const runtime = await startRuntime({ fixture: "slow", timeoutMs: 800 });
    const started = Date.now();
    const pending = invoke(runtime, "/?ms=5000", { headers: { "x-request-id": "rid-stuck" } });
    await waitFor(runtime.stdout, "\x1erid-stuck\x1fstarted\n");
    // The handler blocks its thread; the server's own endpoints still answer at once.
    const probeStarted = Date.now();
    const health = await request("http://localhost/healthz", { dispatcher: runtime.dispatcher });
    expect(health.statusCode).toBe(200);
    await health.body.dump();
    expect(Date.now() - probeStarted).toBeLessThan(300);
    const res = await pending;
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(res.status).toBe(408);
    expect(res.headers["x-funcd-recycle"]).toBe("1");
    expect(res.headers["content-type"]).toBe("application/problem+json");
    const problem = JSON.parse(res.text);
    expect(problem).toMatchObject({
      type: "https://funcd.dev/errors#function-timeout",
      status: 408,
      code: "FUNCTION_TIMEOUT",
    });
    expect(problem.detail).toContain('"slow"');
    expect(problem.detail).toContain("800 ms");
    // The instance itself is still alive (the stuck thread is abandoned); replacing it is the gateway's call.
    expect((await invoke(runtime, "/?ms=0")).text).toBe("slept 0");
    const metrics = await (
      await request("http://localhost/metrics", { dispatcher: runtime.dispatcher })
    ).body.text();
    expect(metrics).toContain('function_failures_total{function="slow"} 1\n');
  });

  it("a package in .python_packages is importable", async () => {
    const runtime = await startRuntime({ fixture: "with-packages" });
    const res = JSON.parse((await invoke(runtime, "/")).text);
    expect(res.greeting).toBe("hello pip from a dependency");
    expect(res.from).toBe(
      path.join(FIXTURES, "with-packages", ".python_packages", "funcd_fixture_pkg", "__init__.py"),
    );
  });

  it("a handler file with a syntax error exits with code 3 and names the file", async () => {
    const dir = brokenFunctionDir();
    try {
      const runtime = spawnRuntime({ fixture: dir });
      expect(await runtime.exit).toEqual({ code: 3, signal: null });
      expect(runtime.stderr()).toContain(path.join(dir, "handler.py"));
      expect(runtime.stderr()).toContain("SyntaxError");
      expect(runtime.stderr()).not.toContain("funcd_runtime");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a missing function exits with code 3 and lists the callables", async () => {
    const runtime = spawnRuntime({ fixture: "missing-export" });
    expect(await runtime.exit).toEqual({ code: 3, signal: null });
    const stderr = runtime.stderr();
    expect(stderr).toContain('"main"');
    expect(stderr).toContain(path.join(FIXTURES, "missing-export", "handler.py"));
    expect(stderr).toMatch(/callables are: .*other/);
    expect(stderr).toMatch(/callables are: .*helper/);
    expect(stderr).not.toMatch(/callables are: .*VERSION/);
  });

  it("a missing handler file exits with code 3 and names what it looked for", async () => {
    const runtime = spawnRuntime({ fixture: "echo", handler: "nope.main" });
    expect(await runtime.exit).toEqual({ code: 3, signal: null });
    expect(runtime.stderr()).toContain("nope.py");
    expect(runtime.stderr()).toContain(path.join(FIXTURES, "echo"));
  });

  it("an exception escaping the handler in its own thread is logged, and the instance lives on (Python only)", async () => {
    const runtime = await startRuntime({ fixture: "throwing" });
    expect((await invoke(runtime, "/crash")).text).toBe("crashing soon");
    expect(await waitFor(runtime.stderr, "escaped the handler")).toContain(
      "RuntimeError: escaped the handler",
    );
    expect((await invoke(runtime, "/ok")).text).toBe("fine");
    expect(runtime.exited).toBe(false);
  });

  it("SIGTERM lets an in-flight request finish, then exits 0", async () => {
    const runtime = await startRuntime({ fixture: "slow" });
    // Concurrent requests open several pooled connections; the idle ones must not keep the instance up
    // for their whole keep-alive timeout.
    await Promise.all([1, 2, 3].map(() => invoke(runtime, "/?ms=50")));
    const pending = invoke(runtime, "/?ms=600", { headers: { "x-request-id": "rid-drain" } });
    await waitFor(runtime.stdout, "\x1erid-drain\x1fstarted\n");
    runtime.child.kill("SIGTERM");
    const res = await pending;
    expect(res.status).toBe(200);
    expect(res.text).toBe("slept 600");
    const answered = Date.now();
    expect(await runtime.exit).toEqual({ code: 0, signal: null });
    expect(Date.now() - answered).toBeLessThan(2_000);
    // The socket file is gone with the server, so nothing can connect to a gone instance.
    expect(fs.existsSync(runtime.socketPath)).toBe(false);
  });

  it("a socket file left by a killed instance does not stop the next one", async () => {
    const first = await startRuntime({ fixture: "echo" });
    first.child.kill("SIGKILL");
    await first.exit;
    expect(fs.existsSync(first.socketPath)).toBe(true);
    const second = await startRuntime({ fixture: "echo", listen: first.socketPath });
    expect((await invoke(second, "/text")).text).toBe("plain text");
  });

  it("FUNCD_LISTEN as host:port listens on TCP", async () => {
    const port = await freePort();
    const runtime = spawnRuntime({ fixture: "echo", listen: `127.0.0.1:${port}` });
    const deadline = Date.now() + 10_000;
    let status = 0;
    while (status !== 200 && Date.now() < deadline && !runtime.exited) {
      try {
        const res = await request(`http://127.0.0.1:${port}/healthz`);
        await res.body.dump();
        status = res.statusCode;
      } catch {
        await sleep(10);
      }
    }
    expect(status).toBe(200);
  });
});

describe("the Python runtime in the Lambda style", () => {
  // `handler.echo` is not named `handler`, so only the explicit style makes it a Lambda handler.
  let lambda: Runtime;
  beforeAll(async () => {
    lambda = await startRuntime({ fixture: "lambda", handler: "handler.echo", style: "lambda" });
  });
  afterAll(async () => {
    await stop(lambda);
  });

  it("a Lambda-style handler gets a payload 2.0 event", async () => {
    const before = Date.now();
    const res = await invoke(lambda, "/orders/42?tag=a&tag=b&q=x%20y&empty=", {
      method: "POST",
      headers: {
        "x-request-id": "rid-lambda-event",
        "content-type": "application/octet-stream",
        cookie: "session=abc; theme=dark",
        "user-agent": "funcd-test/1.0",
        "x-forwarded-for": "203.0.113.9, 10.0.0.1",
        "x-multi": ["one", "two"],
      },
      body: Buffer.from([0, 1, 255]),
    });
    expect(res.status).toBe(200);
    const { event } = JSON.parse(res.text);
    expect(event).toMatchObject({
      version: "2.0",
      routeKey: "$default",
      rawPath: "/orders/42",
      rawQueryString: "tag=a&tag=b&q=x%20y&empty=",
      cookies: ["session=abc", "theme=dark"],
      queryStringParameters: { tag: "a,b", q: "x y", empty: "" },
      requestContext: {
        accountId: "funcd",
        apiId: "lambda",
        domainName: "localhost",
        domainPrefix: "localhost",
        http: {
          method: "POST",
          path: "/orders/42",
          protocol: "HTTP/1.1",
          sourceIp: "203.0.113.9",
          userAgent: "funcd-test/1.0",
        },
        requestId: "rid-lambda-event",
        routeKey: "$default",
        stage: "$default",
      },
      body: Buffer.from([0, 1, 255]).toString("base64"),
      isBase64Encoded: true,
    });
    expect(event.headers).toMatchObject({ "content-type": "application/octet-stream", "x-multi": "one,two" });
    // As in AWS's events, the cookies are in `cookies`, not in the headers.
    expect(event.headers.cookie).toBeUndefined();
    expect(event.requestContext.time).toMatch(/^\d{2}\/[A-Z][a-z]{2}\/\d{4}:\d{2}:\d{2}:\d{2} \+0000$/);
    expect(event.requestContext.timeEpoch).toBeGreaterThanOrEqual(before - 1_000);
  });

  it("a text body arrives as a string, and a bodiless GET has no body, cookies or query", async () => {
    const post = await invoke(lambda, "/", {
      headers: { "content-type": "application/json" },
      body: '{"a":1}',
    });
    expect(JSON.parse(post.text).event).toMatchObject({ body: '{"a":1}', isBase64Encoded: false });
    const { event } = JSON.parse((await invoke(lambda, "/")).text);
    expect(event).toMatchObject({ rawQueryString: "", isBase64Encoded: false });
    expect(Object.keys(event)).not.toContain("body");
    expect(Object.keys(event)).not.toContain("cookies");
    expect(Object.keys(event)).not.toContain("queryStringParameters");
  });

  it("an invalid JSON body is passed on as it is: no 400 in this style", async () => {
    const res = await invoke(lambda, "/", { headers: { "content-type": "application/json" }, body: "{nope" });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text).event).toMatchObject({ body: "{nope", isBase64Encoded: false });
  });

  it("a Lambda-style statusCode result sets status, headers and cookies", async () => {
    const res = await invoke(lambda, "/status");
    expect(res.status).toBe(201);
    expect(res.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(res.headers["x-custom"]).toBe("yes");
    // A set-cookie in the headers comes first, then one per entry of `cookies`.
    expect(res.headers["set-cookie"]).toEqual(["c=3", "a=1; Path=/", "b=2; HttpOnly"]);
    expect(res.text).toBe("<p>created</p>");
  });

  it("a Lambda-style statusCode result with isBase64Encoded answers the decoded bytes", async () => {
    const res = await invoke(lambda, "/base64");
    expect(res.headers["content-type"]).toBe("image/png");
    expect([...res.body]).toEqual([0x89, 0x50, 0x4e, 0x47]);
  });

  it("a dict result without statusCode answers JSON", async () => {
    const res = await invoke(lambda, "/object");
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(res.text)).toEqual({ ok: true, items: [1, 2] });
  });

  it("a str result is the body as it is, labelled application/json as AWS does", async () => {
    const res = await invoke(lambda, "/string");
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("application/json");
    expect(res.text).toBe("hello from lambda");
  });

  it("a None result answers 200 with an empty body", async () => {
    const res = await invoke(lambda, "/nothing");
    expect(res.status).toBe(200);
    expect(res.text).toBe("");
  });

  it("the context has AWS's snake_case attributes", async () => {
    const res = await invoke(lambda, "/", { headers: { "x-request-id": "rid-lambda-context" } });
    const { context } = JSON.parse(res.text);
    expect(context).toMatchObject({
      aws_request_id: "rid-lambda-context",
      function_name: "lambda",
      function_version: "rev-1",
      invoked_function_arn: "arn:funcd:lambda:local:000000000000:function:lambda",
      memory_limit_in_mb: "128",
      log_group_name: "/funcd/functions/lambda",
      identity: null,
      client_context: null,
    });
    expect(context.log_stream_name).toMatch(/^\d{4}\/\d{2}\/\d{2}\/\[rev-1\][0-9a-f]{32}$/);
    expect(context.remaining).toBeGreaterThan(4_000);
    expect(context.remaining).toBeLessThanOrEqual(5_000);
  });

  it("a Lambda-style handler that raises answers 500 problem+json, its output tagged", async () => {
    const res = await invoke(lambda, "/throw", { headers: { "x-request-id": "rid-lambda-throw" } });
    expect(res.status).toBe(500);
    expect(res.headers["content-type"]).toBe("application/problem+json");
    expect(JSON.parse(res.text)).toMatchObject({
      type: "https://funcd.dev/errors#function-error",
      detail: "TypeError: boom in the lambda",
      code: "FUNCTION_ERROR",
    });
    expect(await waitFor(lambda.stdout, "\x1erid-lambda-throw\x1fabout to throw\n")).toContain(
      "\x1erid-lambda-throw\x1fabout to throw\n",
    );
  });
});

describe("the Python runtime choosing the handler style", () => {
  afterEach(stopAll);

  it("a function named handler is detected as Lambda style in auto mode", async () => {
    const runtime = await startRuntime({ fixture: "lambda", handler: "handler.handler" });
    const res = await invoke(runtime, "/?x=1");
    expect(JSON.parse(res.text).event).toMatchObject({ version: "2.0", rawQueryString: "x=1" });
  });

  it("a function named handler that is also the module's main stays Kubeless in auto mode", async () => {
    const runtime = await startRuntime({ fixture: "lambda-also-main", handler: "handler.handler" });
    expect(JSON.parse((await invoke(runtime, "/")).text)).toEqual({ kubeless: true, lambda: false });
  });

  it("FUNCD_HANDLER_STYLE overrides the function's name both ways", async () => {
    const kubeless = await startRuntime({ fixture: "lambda", handler: "handler.handler", style: "kubeless" });
    expect(JSON.parse((await invoke(kubeless, "/")).text)).toEqual({
      style: "kubeless",
      hasExtensions: true,
    });
    const lambda = await startRuntime({
      fixture: "lambda-also-main",
      handler: "handler.main",
      style: "lambda",
    });
    expect(JSON.parse((await invoke(lambda, "/")).text)).toEqual({ kubeless: false, lambda: true });
  });

  it("a Lambda-style handler past its timeout answers 408 and asks to be recycled", async () => {
    const runtime = await startRuntime({ fixture: "lambda", handler: "handler.handler", timeoutMs: 300 });
    const res = await invoke(runtime, "/slow");
    expect(res.status).toBe(408);
    expect(res.headers["x-funcd-recycle"]).toBe("1");
    expect(JSON.parse(res.text)).toMatchObject({ code: "FUNCTION_TIMEOUT" });
  });

  it("an unknown FUNCD_HANDLER_STYLE exits with code 1 and names the value", async () => {
    const runtime = spawnRuntime({ fixture: "lambda", style: "openwhisk" });
    expect((await runtime.exit).code).toBe(1);
    expect(runtime.stderr()).toContain('FUNCD_HANDLER_STYLE "openwhisk"');
  });

  it("an invalid FUNCD_TIMEOUT_MS exits with code 1 and names the value", async () => {
    const runtime = spawnRuntime({ fixture: "echo", timeoutMs: 0 });
    expect((await runtime.exit).code).toBe(1);
    expect(runtime.stderr()).toContain('FUNCD_TIMEOUT_MS "0"');
  });
});
