import { describe, expect, it } from "vitest";
import type { ManifestEntry } from "../store/types.js";
import { revisionId, runFields } from "./revision-id.js";
import { FunctionSpecSchema } from "./spec.js";

const parse = (input: Record<string, unknown>) => FunctionSpecSchema.parse({ name: "fn", ...input });
const files: ManifestEntry[] = [{ path: "handler.js", hash: "ab", size: 1, mode: 0o644 }];

describe("secrets in the spec", () => {
  it("takes names with either case, digits, '_', '.' and '-'", () => {
    expect(parse({ secrets: ["db-password", "API.key", "x_1", "9lives"] }).secrets).toEqual([
      "db-password",
      "API.key",
      "x_1",
      "9lives",
    ]);
  });

  it.each([
    ["a name starting with '-'", ["-x"]],
    ["a name with a slash", ["a/b"]],
    ["a name longer than 63", ["a".repeat(64)]],
    ["an empty name", [""]],
    ["more than 32", Array.from({ length: 33 }, (_, i) => `s${i}`)],
    ["a name listed twice", ["a", "a"]],
    ["two names that make the same variable", ["db-password", "db.password"]],
  ])("refuses %s", (_what, secrets) => {
    expect(FunctionSpecSchema.safeParse({ name: "fn", secrets }).success).toBe(false);
  });

  it("says which names collide", () => {
    const result = FunctionSpecSchema.safeParse({ name: "fn", secrets: ["db-password", "DB_PASSWORD"] });
    expect(result.error?.issues[0]?.message).toContain("DB_PASSWORD");
  });
});

describe("revision ids with secrets", () => {
  const base = revisionId("fn", parse({}), files);

  it("do not change when the spec names no secrets (ids of earlier revisions stay)", () => {
    expect(revisionId("fn", parse({ secrets: [] }), files)).toBe(base);
    expect(base).toBe("1eb41c6d09581a4f1764");
  });

  it("change with the names, not with their order", () => {
    const ab = revisionId("fn", parse({ secrets: ["a", "b"] }), files);
    expect(ab).not.toBe(base);
    expect(revisionId("fn", parse({ secrets: ["b", "a"] }), files)).toBe(ab);
    expect(revisionId("fn", parse({ secrets: ["a"] }), files)).not.toBe(ab);
  });

  it("are part of what a rollback takes from a revision", () => {
    expect(runFields(parse({ secrets: ["a"] })).secrets).toEqual(["a"]);
  });
});
