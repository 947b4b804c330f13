/**
 * Runtime contract cases: the Lambda style (payload 2.0 event, results, the context) and choosing the style
 * (auto, forced either way). Fixtures: lambda (whose context report uses Node's camelCase names in every
 * language: Python's fixture reads AWS's snake_case attributes to fill it), lambda-also-main, and
 * kubeless-handler (a Kubeless function exported as `handler`, as Lambda's are).
 */
import { expect } from "vitest";
import type { RuntimeCase } from "./runtime-conformance.js";
import { expectAnswer, invoke, waitFor } from "./runtime-server.js";

export const lambdaCases = {
  "lambda-event": {
    title: "a Lambda-style handler gets a payload 2.0 event",
    async run(t) {
      const before = Date.now();
      const res = await invoke(await t.lambda(), "/orders/42?tag=a&tag=b&q=x%20y&empty=", {
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
      expect(event.headers).toMatchObject({
        "content-type": "application/octet-stream",
        "x-multi": "one,two",
      });
      // As in AWS's events, the cookies are in `cookies`, not in the headers.
      expect(event.headers.cookie).toBeUndefined();
      expect(event.requestContext.time).toMatch(/^\d{2}\/[A-Z][a-z]{2}\/\d{4}:\d{2}:\d{2}:\d{2} \+0000$/);
      expect(event.requestContext.timeEpoch).toBeGreaterThanOrEqual(before - 1_000);
    },
  },
  "lambda-body": {
    title: "a Lambda text body arrives as a string, and a bodiless GET has no body, cookies or query",
    async run(t) {
      const lambda = await t.lambda();
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
    },
  },
  "lambda-invalid-json": {
    title: "a Lambda invalid JSON body is passed on as it is: no 400 in this style",
    async run(t) {
      const res = await invoke(await t.lambda(), "/", {
        headers: { "content-type": "application/json" },
        body: "{nope",
      });
      expect(res.status).toBe(200);
      expect(JSON.parse(res.text).event).toMatchObject({ body: "{nope", isBase64Encoded: false });
    },
  },
  "lambda-status": {
    title: "a Lambda statusCode result sets status, headers and cookies",
    async run(t) {
      expectAnswer(await invoke(await t.lambda(), "/status"), {
        status: 201,
        type: "text/html; charset=utf-8",
        // A set-cookie in the headers comes first, then one per entry of `cookies`.
        headers: { "x-custom": "yes", "set-cookie": ["c=3", "a=1; Path=/", "b=2; HttpOnly"] },
        text: "<p>created</p>",
      });
    },
  },
  "lambda-base64": {
    title: "a Lambda statusCode result with isBase64Encoded answers the decoded bytes",
    async run(t) {
      expectAnswer(await invoke(await t.lambda(), "/base64"), {
        type: "image/png",
        bytes: [0x89, 0x50, 0x4e, 0x47],
      });
    },
  },
  "lambda-object": {
    title: "a Lambda object result without statusCode answers JSON",
    async run(t) {
      expectAnswer(await invoke(await t.lambda(), "/object"), {
        status: 200,
        type: "application/json",
        json: { ok: true, items: [1, 2] },
      });
    },
  },
  "lambda-string": {
    title: "a Lambda string result is the body as it is, labelled application/json as AWS does",
    async run(t) {
      expectAnswer(await invoke(await t.lambda(), "/string"), {
        status: 200,
        type: "application/json",
        text: "hello from lambda",
      });
    },
  },
  "lambda-none": {
    title: "a Lambda result of nothing (undefined, None) answers 200 with an empty body",
    async run(t) {
      expectAnswer(await invoke(await t.lambda(), "/nothing"), { status: 200, text: "" });
    },
  },
  "lambda-context": {
    title: "the Lambda context has the request id, the function's name, version, ARN, limits and logs",
    async run(t) {
      const res = await invoke(await t.lambda(), "/", { headers: { "x-request-id": "rid-lambda-context" } });
      const { context } = JSON.parse(res.text);
      expect(context).toMatchObject({
        awsRequestId: "rid-lambda-context",
        functionName: "lambda",
        functionVersion: "rev-1",
        invokedFunctionArn: "arn:funcd:lambda:local:000000000000:function:lambda",
        memoryLimitInMB: "128",
        logGroupName: "/funcd/functions/lambda",
        identity: null,
        clientContext: null,
      });
      expect(context.logStreamName).toMatch(/^\d{4}\/\d{2}\/\d{2}\/\[rev-1\][0-9a-f]{32}$/);
      expect(context.remaining).toBeGreaterThan(4_000);
      expect(context.remaining).toBeLessThanOrEqual(5_000);
    },
  },
  "lambda-throw": {
    title: "a Lambda-style handler that throws answers 500 problem+json, its output tagged",
    async run(t) {
      const lambda = await t.lambda();
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
    },
  },
  "lambda-timeout": {
    title: "a Lambda-style handler past its timeout answers 408 and asks to be recycled",
    async run(t) {
      const runtime = await t.start("lambda", { handler: "handler.handler", timeoutMs: 300 });
      const res = await invoke(runtime, "/slow");
      expect(res.status).toBe(408);
      expect(res.headers["x-funcd-recycle"]).toBe("1");
      expect(JSON.parse(res.text)).toMatchObject({ code: "FUNCTION_TIMEOUT" });
    },
  },
  "style-auto-lambda": {
    title: "a function named handler is detected as Lambda style in auto mode",
    async run(t) {
      const runtime = await t.start("lambda", { handler: "handler.handler" });
      const res = await invoke(runtime, "/?x=1");
      expect(JSON.parse(res.text).event).toMatchObject({ version: "2.0", rawQueryString: "x=1" });
    },
  },
  "style-auto-kubeless-handler": {
    title: "a Kubeless function named handler runs as Kubeless runs it in auto mode (data, context, results)",
    async run(t) {
      const runtime = await t.start("kubeless-handler", { handler: "handler.handler" });
      expectAnswer(
        await invoke(runtime, "/", {
          headers: { "content-type": "application/json" },
          body: '{"hello":"world"}',
        }),
        { status: 200, type: "application/json", json: { hello: "world" } },
      );
      expectAnswer(
        await invoke(runtime, "/", { headers: { "content-type": "text/plain" }, body: "hi there" }),
        { status: 200, type: "text/plain; charset=utf-8", text: "hi there" },
      );
      expectAnswer(await invoke(runtime, "/context?a=1"), {
        status: 200,
        type: "application/json",
        json: {
          functionName: "kubeless-handler",
          runtime: t.runtime,
          method: "GET",
          query: { a: "1" },
          hasRequest: true,
        },
      });
    },
  },
  "style-auto-kubeless-invalid-json": {
    title: "a Kubeless function named handler reading invalid JSON data answers 400 in auto mode",
    async run(t) {
      const runtime = await t.start("kubeless-handler", { handler: "handler.handler" });
      const res = await invoke(runtime, "/", {
        headers: { "content-type": "application/json" },
        body: "{nope",
      });
      expect(res.status).toBe(400);
      expect(JSON.parse(res.text)).toMatchObject({ code: "BAD_REQUEST" });
    },
  },
  "style-auto-lambda-answers": {
    title: "a Lambda function named handler keeps Lambda's answers and body in auto mode",
    async run(t) {
      const runtime = await t.start("lambda", { handler: "handler.handler" });
      expectAnswer(await invoke(runtime, "/string"), {
        status: 200,
        type: "application/json",
        text: "hello from lambda",
      });
      expectAnswer(await invoke(runtime, "/status"), {
        status: 201,
        headers: { "set-cookie": ["c=3", "a=1; Path=/", "b=2; HttpOnly"] },
        text: "<p>created</p>",
      });
      const res = await invoke(runtime, "/", {
        headers: { "content-type": "application/json" },
        body: "{nope",
      });
      expect(res.status).toBe(200);
      expect(JSON.parse(res.text).event).toMatchObject({ body: "{nope", isBase64Encoded: false });
    },
  },
  "style-auto-also-main": {
    title: "a function named handler that is also the module's main stays Kubeless in auto mode",
    async run(t) {
      const runtime = await t.start("lambda-also-main", { handler: "handler.handler" });
      expect(JSON.parse((await invoke(runtime, "/")).text)).toEqual({ kubeless: true, lambda: false });
    },
  },
  "style-forced": {
    title: "FUNCD_HANDLER_STYLE overrides the function's name both ways",
    async run(t) {
      const kubeless = await t.start("lambda", { handler: "handler.handler", style: "kubeless" });
      expect(JSON.parse((await invoke(kubeless, "/")).text)).toEqual({
        style: "kubeless",
        hasExtensions: true,
      });
      const lambda = await t.start("lambda-also-main", { handler: "handler.main", style: "lambda" });
      expect(JSON.parse((await invoke(lambda, "/")).text)).toEqual({ kubeless: false, lambda: true });
    },
  },
} satisfies Record<string, RuntimeCase>;
