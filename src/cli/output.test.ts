import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { CliError } from "./errors.js";
import { formatError, formatTable, Output } from "./output.js";
import { formatLogLine, LIST_HEADERS, listRows } from "./views.js";

describe("formatTable", () => {
  it("pads columns to the widest cell, two spaces apart, without trailing blanks", () => {
    expect(
      formatTable(
        ["NAME", "STATUS", "ROUTES"],
        [
          ["sum", "ready", "/function/sum, /sum"],
          ["hello-world", "no-revision", ""],
        ],
      ),
    ).toBe(
      [
        "NAME         STATUS       ROUTES",
        "sum          ready        /function/sum, /sum",
        "hello-world  no-revision",
      ].join("\n"),
    );
  });

  it("prints only the header for no rows", () => {
    expect(formatTable(["A", "B"], [])).toBe("A  B");
  });
});

describe("list rows", () => {
  it("shows revision number, ready/total instances and routes, tolerating missing fields", () => {
    const rows = listRows([
      {
        name: "sum",
        runtime: "nodejs20",
        status: "ready",
        activeRevision: { id: "abcdef0123456789", number: 3 },
        url: "/function/sum",
        routes: ["/sum"],
        instances: [
          { instanceId: "a", state: "ready" },
          { instanceId: "b", state: "starting" },
        ],
      },
      { name: "bare" },
    ]);
    expect(formatTable(LIST_HEADERS, rows)).toBe(
      [
        "NAME  RUNTIME   STATUS  REVISION  INSTANCES  ROUTES",
        "sum   nodejs20  ready   #3        1/2        /function/sum, /sum",
        "bare  -         -       -         0          /function/bare",
      ].join("\n"),
    );
  });
});

describe("errors for humans", () => {
  it("prints title and detail, then the problem's errors and logs indented, then the hint", () => {
    const error = new CliError("DEPLOY_FAILED", "npm install failed", {
      extra: {
        errors: [{ path: ["scale", "max"], message: "too big" }, { message: "bare" }],
        logs: ["line 1", "line 2"],
      },
      hint: "Fix package.json and deploy again.",
    });
    expect(formatError(error)).toBe(
      [
        "Error: Deploy failed: npm install failed",
        "  - scale.max: too big",
        "  - bare",
        "  logs:",
        "    line 1",
        "    line 2",
        "Fix package.json and deploy again.",
        "",
      ].join("\n"),
    );
  });

  it("writes errors to stderr, as one JSON line in JSON mode", () => {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    new Output({ stdout, stderr, json: true }).error(
      new CliError("FUNCTION_NOT_FOUND", 'No function named "x"'),
    );
    expect(stdout.read()).toBeNull();
    expect(JSON.parse(String(stderr.read()))).toEqual({
      code: "FUNCTION_NOT_FOUND",
      title: "Function not found",
      status: 404,
      detail: 'No function named "x"',
    });
  });

  it("drops human lines in JSON mode and keeps data", () => {
    const stdout = new PassThrough();
    const out = new Output({ stdout, stderr: new PassThrough(), json: true });
    out.line("hello");
    out.data({ a: 1 });
    expect(String(stdout.read())).toBe('{\n  "a": 1\n}\n');
  });
});

describe("log lines", () => {
  it("read time instance [requestId] text and mark stderr", () => {
    const line = formatLogLine({
      time: new Date(2025, 0, 2, 3, 4, 5, 6).getTime(),
      instanceId: "sum-1",
      stream: "stderr",
      requestId: "r1",
      text: "oops",
    });
    expect(line).toBe("2025-01-02 03:04:05.006 sum-1 (stderr) [r1] oops");
    expect(
      formatLogLine({ time: "garbage", instanceId: "sum-1", stream: "stdout", requestId: null, text: "hi" }),
    ).toBe("garbage sum-1 hi");
  });
});
