/**
 * Runtime contract cases: the Kubeless event (data by content type, path, query, event and CloudEvents
 * fields), the context, the request id, plain results, keep-alive and tagged output. All ask the shared
 * `echo` fixture, which reports what it got in language-neutral terms (`dataType` is none, string, bytes,
 * object, …).
 */
import net from "node:net";
import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { request } from "undici";
import { expect } from "vitest";
import type { RuntimeCase } from "./runtime-conformance.js";
import { expectAnswer, invoke, readResponse, requestOwn, waitFor } from "./runtime-server.js";

/** A body of one content type, and what `data` the echo says it got. */
function dataCase(
  title: string,
  contentType: string,
  expected: { sent: string | Buffer; dataType: string; data: unknown },
): RuntimeCase {
  return {
    title,
    async run(t) {
      const res = await invoke(await t.echo(), "/", {
        headers: { "content-type": contentType },
        body: expected.sent,
      });
      expect(JSON.parse(res.text)).toMatchObject({ dataType: expected.dataType, data: expected.data });
    },
  };
}

export const kubelessCases = {
  "healthz-own": {
    title: "GET /healthz without x-funcd-invoke answers ready, echoing the request id",
    async run(t) {
      const res = await requestOwn(await t.echo(), "/healthz", { "x-request-id": "rid-health" });
      expect(res.status).toBe(200);
      expect(res.headers["content-type"]).toBe("application/json");
      expect(res.headers["x-request-id"]).toBe("rid-health");
      expect(JSON.parse(res.text)).toEqual({ status: "ready" });
    },
  },
  "healthz-invoked": {
    title: "/healthz with x-funcd-invoke is routed to the handler",
    async run(t) {
      expectAnswer(await invoke(await t.echo(), "/healthz"), {
        status: 200,
        text: "the handler answered /healthz",
      });
    },
  },
  "data-json": {
    title: "a JSON body arrives as parsed data",
    async run(t) {
      const res = await invoke(await t.echo(), "/", {
        headers: { "content-type": "application/json; charset=utf-8" },
        body: JSON.stringify({ name: "Ada", tags: [1, 2] }),
      });
      expect(res.status).toBe(200);
      expect(res.headers["content-type"]).toBe("application/json");
      expect(JSON.parse(res.text)).toMatchObject({ dataType: "object", data: { name: "Ada", tags: [1, 2] } });
    },
  },
  "data-plus-json": dataCase("a +json body arrives as parsed data", "application/cloudevents+json", {
    sent: '{"specversion":"1.0"}',
    dataType: "object",
    data: { specversion: "1.0" },
  }),
  "data-text": dataCase("a text body arrives as a string", "text/plain", {
    sent: "héllo",
    dataType: "string",
    data: "héllo",
  }),
  "data-form": dataCase("a form body arrives as a string", "application/x-www-form-urlencoded", {
    sent: "a=1&b=2",
    dataType: "string",
    data: "a=1&b=2",
  }),
  "data-bytes": dataCase("a binary body arrives as bytes", "application/octet-stream", {
    sent: Buffer.from([0, 1, 255]),
    dataType: "bytes",
    data: [0, 1, 255],
  }),
  "data-empty": {
    title: "a GET without a body has no data, a bodiless POST an empty string",
    async run(t) {
      const echo = await t.echo();
      expect(JSON.parse((await invoke(echo, "/")).text)).toMatchObject({ dataType: "none", data: null });
      const post = await invoke(echo, "/", { method: "POST", headers: { "content-length": "0" } });
      expect(JSON.parse(post.text)).toMatchObject({ dataType: "string", data: "" });
    },
  },
  "data-chunked": {
    title: "a chunked request body is read whole",
    async run(t) {
      const res = await request("http://localhost/", {
        dispatcher: (await t.echo()).dispatcher,
        method: "POST",
        headers: { "x-funcd-invoke": "1", "content-type": "text/plain" },
        // A stream has no known length, so undici sends it chunked.
        body: Readable.from(
          (async function* () {
            yield "first ";
            await sleep(20);
            yield "second";
          })(),
        ),
      });
      expect(await res.body.json()).toMatchObject({ dataType: "string", data: "first second" });
    },
  },
  "data-invalid-json": {
    title: "an invalid JSON body answers 400 problem+json",
    async run(t) {
      const res = await invoke(await t.echo(), "/", {
        headers: { "content-type": "application/json" },
        body: "{nope",
      });
      expect(res.status).toBe(400);
      expect(res.headers["content-type"]).toBe("application/problem+json");
      expect(JSON.parse(res.text)).toMatchObject({
        type: "https://funcd.dev/errors#bad-request",
        status: 400,
        code: "BAD_REQUEST",
      });
    },
  },
  "path-and-query": {
    title: "the path excludes the query, a repeated query key becomes a list, extensions are there",
    async run(t) {
      const res = await invoke(await t.echo(), "/orders/42?tag=a&tag=b&page=2&empty=&name=J%C3%BCrgen+K", {
        headers: { "x-forwarded-prefix": "/function/echo" },
      });
      expect(JSON.parse(res.text)).toMatchObject({
        method: "GET",
        path: "/orders/42",
        query: { tag: ["a", "b"], page: "2", empty: "", name: "Jürgen K" },
        forwardedPrefix: "/function/echo",
        hasRequest: true,
        hasResponse: true,
      });
    },
  },
  "event-headers": {
    title: "Kubeless and CloudEvents fields come from the headers",
    async run(t) {
      const res = await invoke(await t.echo(), "/", {
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
        eventType: "com.example.order",
        eventTime: "2024-01-02T03:04:05Z",
        eventNamespace: "shop",
        ce: { id: "ce-1", type: "com.example.ce", source: "/orders", specversion: "1.0" },
        ceSource: "/orders",
      });
    },
  },
  "event-defaults": {
    title: "Kubeless fields default to the request id, the content type, now and funcd",
    async run(t) {
      const before = Date.now();
      const res = await invoke(await t.echo(), "/", {
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
    },
  },
  context: {
    title: "the context describes the function and its remaining time",
    async run(t) {
      const res = await invoke(await t.echo(), "/", { headers: { "x-request-id": "rid-context" } });
      const { context } = JSON.parse(res.text);
      expect(context).toMatchObject({
        "function-name": "echo",
        functionName: "echo",
        timeout: 5,
        timeoutMs: 5_000,
        runtime: t.runtime,
        "memory-limit": "128Mi",
        memoryLimit: "128Mi",
        requestId: "rid-context",
        revision: "rev-1",
      });
      expect(context.remaining).toBeGreaterThan(4_000);
      expect(context.remaining).toBeLessThanOrEqual(5_000);
    },
  },
  "request-id": {
    title: "the request id is echoed on the response, or made up when the request has none",
    async run(t) {
      const echo = await t.echo();
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
    },
  },
  "result-number": {
    title: "returning a number answers it as JSON",
    async run(t) {
      expectAnswer(await invoke(await t.echo(), "/number"), {
        status: 200,
        type: "application/json",
        text: "5",
      });
    },
  },
  "result-string": {
    title: "returning a string answers text/plain",
    async run(t) {
      expectAnswer(await invoke(await t.echo(), "/text"), {
        type: "text/plain; charset=utf-8",
        headers: { "content-length": "10" },
        text: "plain text",
      });
    },
  },
  "result-none": {
    title: "returning nothing (undefined, None) answers 200 with an empty body",
    async run(t) {
      expectAnswer(await invoke(await t.echo(), "/nothing"), {
        status: 200,
        headers: { "content-length": "0" },
        text: "",
      });
    },
  },
  "keep-alive": {
    title: "two requests travel on one kept-alive connection",
    async run(t) {
      const socket = net.connect((await t.echo()).socketPath);
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
    },
  },
  "log-tagging": {
    title: "output during an invocation is tagged with the request id, output while loading is not",
    async run(t) {
      const echo = await t.echo();
      // The fixture writes with its language's every means (console.*, print, logging, raw writes) and
      // answers the lines it wrote to each stream.
      const res = await invoke(echo, "/log", { headers: { "x-request-id": "rid-log" } });
      const wrote: { stdout: string[]; stderr: string[] } = JSON.parse(res.text);
      // Every runtime must cope with a multi-line write and a line written in two parts.
      expect(wrote.stdout).toEqual(
        expect.arrayContaining(["first line", "second line", "partial line continues"]),
      );
      expect(wrote.stderr.length).toBeGreaterThan(0);
      const tag = "\x1erid-log\x1f";
      for (const [read, lines] of [
        [echo.stdout, wrote.stdout],
        [echo.stderr, wrote.stderr],
      ] as const) {
        for (const line of lines) expect(await waitFor(read, `${tag}${line}\n`)).toContain(`${tag}${line}\n`);
      }
      expect(echo.stdout().startsWith("echo handler loaded\n")).toBe(true);
    },
  },
} satisfies Record<string, RuntimeCase>;
