/**
 * Runtime contract cases: statusCode results, bytes, thrown errors as problem+json, metrics and timeouts.
 * Fixtures: bytes-result, status-object, throwing, slow.
 */
import { expect } from "vitest";
import type { RuntimeCase } from "./runtime-conformance.js";
import { expectAnswer, invoke, requestOwn, waitFor } from "./runtime-server.js";

export const answerCases = {
  "result-bytes": {
    title: "returning bytes (Buffer, bytes) answers application/octet-stream",
    async run(t) {
      expectAnswer(await invoke(await t.start("bytes-result"), "/"), {
        status: 200,
        type: "application/octet-stream",
        bytes: [0, 1, 2, 254, 255],
      });
    },
  },
  "status-object": {
    title: "a statusCode object sets status and headers",
    async run(t) {
      expectAnswer(await invoke(await t.start("status-object"), "/"), {
        status: 201,
        type: "application/vnd.funcd+json",
        headers: { "x-custom": "yes", "x-count": "2" },
        json: { created: true },
      });
    },
  },
  "status-object-base64": {
    title: "a statusCode object with isBase64Encoded answers the decoded bytes",
    async run(t) {
      expectAnswer(await invoke(await t.start("status-object"), "/base64"), {
        type: "image/png",
        bytes: [0x89, 0x50, 0x4e, 0x47],
      });
    },
  },
  "thrown-error": {
    title: "a thrown error answers 500 problem+json without the stack, which goes to stderr tagged",
    async run(t) {
      const runtime = await t.start("throwing");
      const res = await invoke(runtime, "/", { headers: { "x-request-id": "rid-throw" } });
      expect(res.status).toBe(500);
      // The handler set text/html before throwing; the problem must not be labelled with it.
      expect(res.headers["content-type"]).toBe("application/problem+json");
      expect(res.headers["x-request-id"]).toBe("rid-throw");
      expect(JSON.parse(res.text)).toEqual({
        type: "https://funcd.dev/errors#function-error",
        title: "The function threw an error",
        status: 500,
        detail: "TypeError: boom in the handler",
        code: "FUNCTION_ERROR",
      });
      const file = t.handlerFile("throwing");
      expect(res.text).not.toContain(file);
      // The stack goes to stderr, every line of it tagged with the request id.
      await waitFor(runtime.stderr, "TypeError: boom in the handler\n");
      const stderr = await waitFor(runtime.stderr, file);
      const tag = "\x1erid-throw\x1f";
      expect(stderr).toContain(`${tag}funcd: function "throwing" failed:`);
      const lines = stderr.split("\n");
      expect(
        lines.some((line) => line.startsWith(tag) && line.includes("TypeError: boom in the handler")),
      ).toBe(true);
      const frames = lines.filter((line) => line.includes(file));
      expect(frames.length).toBeGreaterThan(0);
      for (const line of frames) expect(line.startsWith(tag)).toBe(true);
    },
  },
  "unserializable-result": {
    title: "a result that cannot be serialised as JSON answers 500 problem+json",
    async run(t) {
      const res = await invoke(await t.start("throwing"), "/unserializable");
      expect(res.status).toBe(500);
      expect(res.headers["content-type"]).toBe("application/problem+json");
      const problem = JSON.parse(res.text);
      expect(problem).toMatchObject({ code: "FUNCTION_ERROR" });
      // The language's own words: "Do not know how to serialize a BigInt", "… is not JSON serializable".
      expect(problem.detail).toMatch(/^TypeError: .*serializ/);
    },
  },
  metrics: {
    title: "metrics count calls and failures, a status ≥ 500 included",
    async run(t) {
      const runtime = await t.start("throwing");
      expect((await invoke(runtime, "/ok")).status).toBe(200);
      expect((await invoke(runtime, "/")).status).toBe(500);
      expect((await invoke(runtime, "/unavailable")).status).toBe(503);
      const res = await requestOwn(runtime, "/metrics");
      expect(res.status).toBe(200);
      expect(res.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
      const text = res.text;
      expect(text).toContain("# TYPE function_calls_total counter\n");
      expect(text).toContain("# TYPE function_duration_seconds histogram\n");
      expect(text).toContain('function_calls_total{function="throwing"} 3\n');
      expect(text).toContain('function_failures_total{function="throwing"} 2\n');
      expect(text).toContain('function_duration_seconds_bucket{function="throwing",le="0.005"} ');
      expect(text).toContain('function_duration_seconds_bucket{function="throwing",le="+Inf"} 3\n');
      expect(text).toContain('function_duration_seconds_count{function="throwing"} 3\n');
      expect(text).toMatch(/^function_duration_seconds_sum\{function="throwing"\} \d+(\.\d+)?(e-\d+)?$/m);
    },
  },
  "metrics-invoked": {
    title: "/metrics with x-funcd-invoke is routed to the handler",
    async run(t) {
      const runtime = await t.start("named-export", { handler: "helloget.foo" });
      expect((await invoke(runtime, "/metrics")).text).toBe("hello GET");
    },
  },
  timeout: {
    title: "a handler past its timeout answers 408 and asks to be recycled; /healthz answers meanwhile",
    async run(t) {
      const runtime = await t.start("slow", { timeoutMs: 800 });
      const started = Date.now();
      const pending = invoke(runtime, "/?ms=5000", { headers: { "x-request-id": "rid-stuck" } });
      await waitFor(runtime.stdout, "\x1erid-stuck\x1fstarted\n");
      // However the handler waits (a blocked thread, a timer), the server's own endpoints answer at once.
      const probeStarted = Date.now();
      expect((await requestOwn(runtime, "/healthz")).status).toBe(200);
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
      // The instance itself is still alive (the late handler is not interrupted); replacing it is the
      // gateway's decision.
      expect((await invoke(runtime, "/?ms=0")).text).toBe("slept 0");
      expect((await requestOwn(runtime, "/metrics")).text).toContain(
        'function_failures_total{function="slow"} 1\n',
      );
    },
  },
} satisfies Record<string, RuntimeCase>;
