import { describe, expect, it } from "vitest";
import {
  BuildTestSchema,
  compare,
  formatFailures,
  jsonSubsetDiff,
  resultLine,
  runBuildTests,
  type TestRequest,
  type TestResponse,
} from "./build-tests.js";

const test = (input: unknown) => BuildTestSchema.parse(input);
const ok = (body: string, status = 200, headers: TestResponse["headers"] = {}): TestResponse => ({
  status,
  headers,
  body,
});

describe("the test schema", () => {
  it("defaults to GET / expecting 200", () => {
    expect(test({})).toEqual({ request: { method: "GET", path: "/" }, expect: { status: 200 } });
  });

  it("upper-cases the method and refuses a relative path", () => {
    expect(test({ request: { method: "post", path: "/x" } }).request.method).toBe("POST");
    expect(BuildTestSchema.safeParse({ request: { path: "x" } }).success).toBe(false);
  });
});

describe("jsonSubsetDiff", () => {
  it.each([
    ["extra keys in the answer", { a: 1 }, { a: 1, b: 2 }, []],
    ["nested objects", { user: { name: "Ada" } }, { user: { name: "Ada", id: 3 } }, []],
    ["a different value", { sum: 5 }, { sum: 6 }, ["$.sum: expected 5, got 6"]],
    ["a missing key", { sum: 5 }, {}, ["$.sum: expected 5, missing"]],
    [
      "a deep path",
      { a: { b: [1, { c: "x" }] } },
      { a: { b: [1, { c: "y" }] } },
      ['$.a.b[1].c: expected "x", got "y"'],
    ],
    ["arrays of another length", [1, 2], [1, 2, 3], ["$: expected 2 items, got 3: [1,2,3]"]],
    ["type mismatches", { a: {} }, { a: "s" }, ['$.a: expected an object, got "s"']],
    ["keys that are not identifiers", { "a-b": 1 }, { "a-b": 2 }, ['$["a-b"]: expected 1, got 2']],
    ["a number is not its string", 5, "5", ['$: expected 5, got "5"']],
    ["null matches null", { a: null }, { a: null }, []],
  ])("%s", (_title, expected, actual, lines) => {
    expect(jsonSubsetDiff(expected, actual)).toEqual(lines);
  });
});

describe("compare", () => {
  it("reports status, headers, body and JSON differences together", () => {
    const t = test({
      expect: { status: 201, body: "hi", headers: { "Content-Type": "text/plain" } },
    });
    expect(compare(t, ok("ho", 200, { "content-type": "application/json" }))).toEqual([
      "status: expected 201, got 200",
      'header content-type: expected "text/plain", got "application/json"',
      'body: expected "hi", got "ho"',
    ]);
  });

  it("says when an expected header is missing and when the body is not JSON", () => {
    const t = test({ expect: { headers: { "x-a": "1" }, json: { a: 1 } } });
    expect(compare(t, ok("<html>"))).toEqual([
      'header x-a: expected "1", missing',
      'json: the body is not JSON: "<html>"',
    ]);
  });

  it("passes when the answer holds what was expected", () => {
    const t = test({ expect: { json: { result: 5 } } });
    expect(compare(t, ok('{"result":5,"took":3}'))).toEqual([]);
  });

  it("cuts long bodies in diffs", () => {
    const [line] = compare(test({ expect: { body: "x" } }), ok("y".repeat(2000)));
    expect(line).toContain("… (2000 characters)");
    expect(line?.length).toBeLessThan(700);
  });
});

describe("runBuildTests", () => {
  it("sends JSON bodies as JSON, runs every test and reports each one", async () => {
    const seen: TestRequest[] = [];
    const lines: string[] = [];
    let clock = 0;
    const results = await runBuildTests(
      [
        test({ name: "adds", request: { method: "POST", body: { a: 2, b: 3 } }, expect: { body: "5" } }),
        test({ name: "text", request: { method: "POST", body: "raw" }, expect: { status: 204 } }),
        test({ request: { path: "/boom" } }),
      ],
      async (request) => {
        seen.push(request);
        clock += 12;
        if (request.path === "/boom") throw new Error("socket hang up");
        return ok(request.body === "raw" ? "" : "5");
      },
      { now: () => clock, onResult: (r) => lines.push(resultLine(r)) },
    );
    expect(seen[0]).toEqual({
      method: "POST",
      path: "/",
      headers: { "content-type": "application/json" },
      body: '{"a":2,"b":3}',
    });
    expect(seen[1]).toMatchObject({ headers: {}, body: "raw" });
    expect(lines).toEqual([
      "test 'adds' passed (12 ms)",
      "test 'text' failed (12 ms)",
      "test 'GET /boom' failed (12 ms)",
    ]);
    expect(results.map((r) => r.passed)).toEqual([true, false, false]);
    expect(results[2]).toMatchObject({ actual: null, diff: ["request failed: socket hang up"] });
    expect(formatFailures(results)).toBe(
      [
        "test 'text' (POST /):",
        "  status: expected 204, got 200",
        "test 'GET /boom' (GET /boom):",
        "  request failed: socket hang up",
      ].join("\n"),
    );
  });

  it("keeps a content type the test set itself", async () => {
    const seen: TestRequest[] = [];
    await runBuildTests(
      [test({ request: { method: "POST", headers: { "Content-Type": "application/x-custom" }, body: [1] } })],
      async (request) => {
        seen.push(request);
        return ok("");
      },
    );
    expect(seen[0]?.headers).toEqual({ "Content-Type": "application/x-custom" });
    expect(seen[0]?.body).toBe("[1]");
  });
});
