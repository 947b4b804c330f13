import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseStack, readFolderDefaults, readStack } from "./stack.js";

describe("parseStack", () => {
  it("resolves each function's path relative to the stack file, default ./<name>", () => {
    const stack = parseStack(
      "functions:\n  sum:\n    path: examples/sum\n    routes: [/sum]\n  hello:\n    runtime: nodejs20\n",
      "/srv/app/funcd.yaml",
    );
    expect(stack.functions).toEqual([
      { name: "sum", dir: "/srv/app/examples/sum", spec: { routes: ["/sum"] } },
      { name: "hello", dir: "/srv/app/hello", spec: { runtime: "nodejs20" } },
    ]);
  });

  it("accepts a function with no fields at all", () => {
    expect(parseStack("functions:\n  echo:\n", "/a/funcd.yaml").functions).toEqual([
      { name: "echo", dir: "/a/echo", spec: {} },
    ]);
  });

  it("reports bad YAML with the file, line and column", () => {
    expect(() => parseStack("functions:\n  sum:\n    runtime: x\n   bad: 1\n", "stack.yaml")).toThrow(
      /Invalid YAML in stack\.yaml:4:\d+: /,
    );
    expect(() => parseStack("functions:\n  a: 1\n  a: 2\n", "dup.yaml")).toThrow(/dup\.yaml:3:\d+: .*unique/);
  });

  it("explains a missing or malformed functions map, with its line", () => {
    expect(() => parseStack("name: sum\n", "f.yaml")).toThrow(/needs a "functions:" map/);
    expect(() => parseStack("# top\nfunctions:\n  - sum\n", "f.yaml")).toThrow(
      /f\.yaml:2:1: "functions" must be a map/,
    );
    expect(() => parseStack("functions:\n  Sum_1: {}\n", "f.yaml")).toThrow(
      /f\.yaml:2:3: "Sum_1" is not a function name/,
    );
    expect(() => parseStack("functions:\n  sum: [1]\n", "f.yaml")).toThrow(/must be a map of fields/);
    expect(() => parseStack("functions:\n  sum:\n    path: 3\n", "f.yaml")).toThrow(
      /f\.yaml:3:\d+: "path" of "sum"/,
    );
  });
});

describe("stack files on disk", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "funcd-stack-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("readStack names a missing file", async () => {
    await expect(readStack(join(dir, "funcd.yaml"))).rejects.toThrow(/funcd\.yaml does not exist/);
  });

  it("readFolderDefaults reads a flat spec or a one-function stack", async () => {
    await mkdir(join(dir, "a"));
    await writeFile(join(dir, "a", "function.yaml"), "name: adder\nroutes: [/add]\npath: ignored\n");
    expect(await readFolderDefaults(join(dir, "a"))).toEqual({
      file: join(dir, "a", "function.yaml"),
      name: "adder",
      spec: { routes: ["/add"] },
    });
    await mkdir(join(dir, "b"));
    await writeFile(join(dir, "b", "funcd.yaml"), "functions:\n  mul:\n    memory: 128\n");
    expect(await readFolderDefaults(join(dir, "b"))).toMatchObject({ name: "mul", spec: { memory: 128 } });
    expect(await readFolderDefaults(dir)).toBeUndefined();
  });

  it("readFolderDefaults asks for --name when the stack has several functions", async () => {
    await writeFile(join(dir, "funcd.yaml"), "functions:\n  a: {}\n  b: {timeout: 5s}\n");
    await expect(readFolderDefaults(dir)).rejects.toThrow(/defines 2 functions \(a, b\); pass --name/);
    expect(await readFolderDefaults(dir, "b")).toMatchObject({ name: "b", spec: { timeout: "5s" } });
  });
});
