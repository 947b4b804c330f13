import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { codeFromProblemType, ERRORS, type ErrorCode, FuncdError, problemType } from "./errors.js";

describe("error registry", () => {
  it("docs/errors.md lists exactly the registry's codes with their status and title", () => {
    const doc = readFileSync(path.join(import.meta.dirname, "..", "..", "docs", "errors.md"), "utf8");
    const rows = [...doc.matchAll(/^\|\s*`([A-Z_]+)`\s*\|\s*(\d+)\s*\|\s*([^|]+?)\s*\|/gm)].map((m) => [
      m[1],
      Number(m[2]),
      m[3],
    ]);
    const registry = Object.entries(ERRORS).map(([code, e]) => [code, e.status, e.title]);
    expect(rows).toEqual(registry);
  });

  it("a problem type maps back to its code", () => {
    for (const code of Object.keys(ERRORS) as ErrorCode[]) {
      expect(codeFromProblemType(problemType(code))).toBe(code);
    }
    expect(codeFromProblemType("about:blank")).toBeUndefined();
  });

  it("an error renders as a problem document with its extra members", () => {
    const err = new FuncdError("ROUTE_CONFLICT", 'Route "/sum" already belongs to function "sum"', {
      extra: { owner: "sum" },
    });
    expect(err.toProblem("/api/v1/functions/x")).toEqual({
      type: "https://funcd.dev/errors#route-conflict",
      title: "Route already taken",
      status: 409,
      detail: 'Route "/sum" already belongs to function "sum"',
      code: "ROUTE_CONFLICT",
      instance: "/api/v1/functions/x",
      owner: "sum",
    });
  });
});
