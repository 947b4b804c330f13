import { describe, expect, it } from "vitest";
import type { ManifestEntry } from "../store/types.js";
import { revisionId } from "./revision-id.js";
import { DeployRequestSchema, FunctionSpecSchema } from "./spec.js";

const parse = (input: Record<string, unknown>) => FunctionSpecSchema.parse({ name: "fn", ...input });
const files: ManifestEntry[] = [{ path: "handler.js", hash: "ab", size: 1, mode: 0o644 }];

describe("resources", () => {
  it("defaults to 256 MiB and no CPU limit", () => {
    const spec = parse({});
    expect(spec.memory).toBe(256);
    expect(spec.cpu).toBeUndefined();
    expect("cpu" in spec).toBe(false);
  });

  it("fills memory and cpu from the profile", () => {
    expect(parse({ profile: "M" })).toMatchObject({ memory: 512, cpu: 0.4 });
  });

  it("lets explicit memory and cpu win over the profile", () => {
    expect(parse({ profile: "L", memory: 300 })).toMatchObject({ memory: 300, cpu: 0.8 });
    expect(parse({ profile: "L", cpu: "250m" })).toMatchObject({ memory: 1024, cpu: 0.25 });
  });

  it("refuses an unknown profile and a CPU value that is not one", () => {
    expect(FunctionSpecSchema.safeParse({ name: "fn", profile: "XXL" }).success).toBe(false);
    const bad = FunctionSpecSchema.safeParse({ name: "fn", cpu: "lots" });
    expect(bad.error?.issues[0]?.message).toMatch(/not a number of cores/);
  });

  it("applies to deploy requests too", () => {
    expect(DeployRequestSchema.parse({ name: "fn", profile: "XL", files: {} })).toMatchObject({
      memory: 2048,
      cpu: 1.6,
    });
  });
});

describe("docker fields", () => {
  it("accepts build, network, baseImage and tests", () => {
    const spec = parse({
      build: "none",
      network: "none",
      baseImage: "registry.local:5000/team/node:20-slim",
      tests: [{ request: { path: "/x" }, expect: { json: { ok: true } } }],
    });
    expect(spec).toMatchObject({ build: "none", network: "none" });
    expect(spec.tests?.[0]).toMatchObject({
      request: { method: "GET", path: "/x" },
      expect: { status: 200 },
    });
  });

  it("refuses a base image that is not an image reference", () => {
    expect(FunctionSpecSchema.safeParse({ name: "fn", baseImage: "Not An Image" }).success).toBe(false);
  });
});

describe("revision ids", () => {
  const base = revisionId("fn", parse({}), files);

  it("do not change for specs written before the docker fields existed", () => {
    // The id of this spec and file before the fields were added; a change here renames every revision.
    expect(base).toBe(revisionId("fn", parse({ build: "image", network: "default", tests: [] }), files));
    expect(base).toBe("1eb41c6d09581a4f1764");
  });

  it.each([
    ["cpu", { cpu: 0.5 }],
    ["a profile", { profile: "S" }],
    ["buildless mode", { build: "none" }],
    ["no network", { network: "none" }],
    ["another base image", { baseImage: "node:20" }],
  ])("change with %s", (_what, extra) => {
    expect(revisionId("fn", parse(extra), files)).not.toBe(base);
  });

  it("do not change with tests, which do not change what runs", () => {
    expect(revisionId("fn", parse({ tests: [{}] }), files)).toBe(base);
  });
});

describe("hostile values", () => {
  it.each([
    ["a NUL byte", "a\0b"],
    ["an escape character", "\x1b[31mred"],
    ["a DEL", "x\x7f"],
  ])("refuses an env value with %s and names the variable", (_what, value) => {
    const bad = FunctionSpecSchema.safeParse({ name: "fn", env: { GREETING: value } });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.message).toMatch(/GREETING.*control character/);
  });

  it("keeps tabs and newlines in env values (PEM keys, lists)", () => {
    expect(parse({ env: { KEY: "-----BEGIN-----\nabc\n\tdef" } }).env).toEqual({
      KEY: "-----BEGIN-----\nabc\n\tdef",
    });
  });

  it.each(["/./api", "/x/../api", "//api", "/a//b", "/a/.", "/a/.."])("refuses the route %j", (route) => {
    const bad = FunctionSpecSchema.safeParse({ name: "fn", routes: [route] });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.message).toMatch(/empty or dot segment/);
  });

  it("refuses a route listed twice, also after trailing-slash normalisation", () => {
    const bad = FunctionSpecSchema.safeParse({ name: "fn", routes: ["/sum", "/sum/"] });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.message).toMatch(/"\/sum" is listed twice/);
  });

  it("keeps ordinary routes with dots inside segments", () => {
    expect(parse({ routes: ["/v1.2/sum", "/a/b/"] }).routes).toEqual(["/v1.2/sum", "/a/b"]);
  });
});
