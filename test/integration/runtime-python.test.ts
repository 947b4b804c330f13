/**
 * The Python runtime server (templates/python3/server.py), run by the system's /usr/bin/python3: the runtime
 * contract's conformance suite, then what only Python does. Each case spawns the real server on a unix
 * socket with a clean environment, as the process driver does.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { CONFORMANCE_FIXTURES, runRuntimeConformance } from "../helpers/runtime-conformance.js";
import {
  expectAnswer,
  functionDirForTest,
  invoke,
  type RuntimeCommand,
  sharedServer,
  spawnForTest,
  startForTest,
  waitFor,
} from "../helpers/runtime-server.js";

const PYTHON: RuntimeCommand = {
  runtime: "python3",
  // The real interpreter, not a version manager's shim on PATH: the process driver resolves it the same way.
  command: ["/usr/bin/python3", fileURLToPath(new URL("../../templates/python3/server.py", import.meta.url))],
};
/** Fixtures of the cases below, which only Python has. */
const PYTHON_ONLY = fileURLToPath(new URL("../fixtures/python3-only/", import.meta.url));

const BROKEN_HANDLER = "def main(event, context):\n    return {'ok': True\n";

runRuntimeConformance({
  ...PYTHON,
  fixtures: CONFORMANCE_FIXTURES,
  source: {
    candidates: (file) => [`${file}.py`],
    brokenFunction: { "handler.py": BROKEN_HANDLER },
    listedAs: "callables",
  },
});

describe("the python3 runtime beyond the contract", () => {
  describe("the event and the context, the Python way", () => {
    const pythonic = sharedServer(PYTHON, { functionDir: path.join(PYTHON_ONLY, "pythonic") });

    it("returning a (body, status) tuple sets the status", async () => {
      expectAnswer(await invoke(await pythonic(), "/tuple"), {
        status: 201,
        type: "text/plain; charset=utf-8",
        text: "made it",
      });
    });

    it("returning a (body, status, headers) tuple sets status and headers", async () => {
      expectAnswer(await invoke(await pythonic(), "/tuple-headers"), {
        status: 202,
        type: "application/json",
        headers: { "x-queue": "jobs" },
        json: { queued: true },
      });
    });

    it("status and headers set on extensions.response apply to a plain result", async () => {
      expectAnswer(await invoke(await pythonic(), "/response"), {
        status: 418,
        headers: { "x-teapot": "yes" },
        text: "short and stout",
      });
    });

    it("extensions.request has method, path, url, query, body and json", async () => {
      const res = await invoke(await pythonic(), "/orders?x=1", {
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

    it("the event's fields are attributes too, and its headers answer in any case", async () => {
      const res = await invoke(await pythonic(), "/", {
        headers: {
          "content-type": "application/json",
          "event-id": "evt-1",
          "x-forwarded-prefix": "/function/pythonic",
        },
        body: '{"name":"Ada"}',
      });
      expect(JSON.parse(res.text)).toMatchObject({
        sameData: true,
        eventIdAttr: "evt-1",
        headerAnyCase: "/function/pythonic",
      });
    });

    it("the context answers in snake_case and as attributes too", async () => {
      const res = await invoke(await pythonic(), "/", { headers: { "x-request-id": "rid-context" } });
      const { context } = JSON.parse(res.text);
      expect(context).toMatchObject({
        function_name: "pythonic",
        attrName: "pythonic",
        timeout_ms: 5_000,
        memory_limit: "128Mi",
        request_id: "rid-context",
      });
      expect(context.remaining).toBeGreaterThan(4_000);
      expect(context.remainingCamel).toBeLessThanOrEqual(context.remaining);
    });
  });

  it("serves an async def handler, its output tagged though it runs on the event loop's thread", async () => {
    const runtime = await startForTest(PYTHON, { functionDir: path.join(PYTHON_ONLY, "async-handler") });
    const res = await invoke(runtime, "/?ms=20", {
      headers: { "content-type": "application/json", "x-request-id": "rid-async" },
      body: '{"name":"Grace"}',
    });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text)).toEqual({ slept: 20, name: "Grace" });
    expect(await waitFor(runtime.stdout, "\x1erid-async\x1fasync started\n")).toContain(
      "\x1erid-async\x1fasync started\n",
    );
  });

  it("an async def handler past its timeout answers 408, and other invocations still run", async () => {
    const runtime = await startForTest(PYTHON, {
      functionDir: path.join(PYTHON_ONLY, "async-handler"),
      timeoutMs: 300,
    });
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

  it("a handler file named like a standard library module (json.py) does not shadow it", async () => {
    const functionDir = path.join(PYTHON_ONLY, "stdlib-name");
    const runtime = await startForTest(PYTHON, { functionDir, handler: "json.main" });
    const res = await invoke(runtime, "/");
    expect(res.headers["content-type"]).toBe("application/json");
    // Loaded under a name of its own, so `import json` anywhere still finds the standard library's.
    expect(JSON.parse(res.text)).toEqual({ served: "by json.py", name: "funcd_handler_json" });
    expect(runtime.stderr()).toContain(
      `funcd: warning: json.py in ${functionDir} shadows the standard library's module of the same name`,
    );
  });

  it("a package in .python_packages is importable", async () => {
    const functionDir = path.join(PYTHON_ONLY, "with-packages");
    const runtime = await startForTest(PYTHON, { functionDir });
    const res = JSON.parse((await invoke(runtime, "/")).text);
    expect(res.greeting).toBe("hello pip from a dependency");
    expect(res.from).toBe(path.join(functionDir, ".python_packages", "funcd_fixture_pkg", "__init__.py"));
  });

  it("a raised exception's traceback is tagged whole and leaves out the server's own frames", async () => {
    const runtime = await startForTest(PYTHON, { functionDir: path.join(CONFORMANCE_FIXTURES, "throwing") });
    expect((await invoke(runtime, "/", { headers: { "x-request-id": "rid-throw" } })).status).toBe(500);
    const stderr = await waitFor(runtime.stderr, "TypeError: boom in the handler\n");
    expect(stderr).toContain("\x1erid-throw\x1fTraceback (most recent call last):\n");
    expect(stderr).toContain("\x1erid-throw\x1fTypeError: boom in the handler\n");
    expect(stderr).not.toContain("funcd_runtime");
  });

  it("a syntax error's traceback leaves out the server's own frames", async () => {
    const runtime = spawnForTest(PYTHON, {
      functionDir: functionDirForTest({ "handler.py": BROKEN_HANDLER }),
    });
    expect((await runtime.exit).code).toBe(3);
    expect(runtime.stderr()).toContain("SyntaxError");
    expect(runtime.stderr()).not.toContain("funcd_runtime");
  });

  it("a missing function lists the module's callables only, not its other names", async () => {
    const runtime = spawnForTest(PYTHON, { functionDir: path.join(CONFORMANCE_FIXTURES, "missing-export") });
    expect((await runtime.exit).code).toBe(3);
    expect(runtime.stderr()).toMatch(/callables are: .*other/);
    expect(runtime.stderr()).not.toMatch(/callables are: .*VERSION/);
  });

  it("an exception escaping the handler in its own thread is logged, and the instance lives on", async () => {
    const runtime = await startForTest(PYTHON, { functionDir: path.join(CONFORMANCE_FIXTURES, "throwing") });
    expect((await invoke(runtime, "/crash")).text).toBe("crashing soon");
    expect(await waitFor(runtime.stderr, "escaped the handler")).toContain(
      "RuntimeError: escaped the handler",
    );
    expect((await invoke(runtime, "/ok")).text).toBe("fine");
    expect(runtime.exited()).toBe(false);
  });
});
