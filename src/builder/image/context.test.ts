import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { list as listTar } from "tar";
import { afterEach, describe, expect, it } from "vitest";
import { isFuncdError } from "../../shared/errors.js";
import { RuntimeRegistry } from "../runtimes.js";
import {
  assembleContext,
  type ContextFile,
  contentHash,
  type HashInputs,
  readTemplateFiles,
} from "./context.js";

const templatesDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../templates");
const runtimes = new RuntimeRegistry(templatesDir);
const temps: string[] = [];
afterEach(() => {
  for (const dir of temps.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const file = (p: string, text: string, mode = 0o644): ContextFile => ({
  path: p,
  data: Buffer.from(text),
  mode,
});

describe("readTemplateFiles", () => {
  it("takes the Dockerfile and the image.copy entries, without scaffold, README or bytecode", async () => {
    const node = (await readTemplateFiles(runtimes.get("nodejs20"))).map((f) => f.path);
    expect(node).toEqual([
      "Dockerfile",
      "runtime/server.mjs",
      "runtime/lambda.mjs",
      "runtime/warmup.cjs",
      "runtime/warmup-scope.js",
    ]);
    const python = (await readTemplateFiles(runtimes.get("python3"))).map((f) => f.path);
    expect(python).toContain("runtime/server.py");
    expect(python).toContain("runtime/funcd_runtime/runtime.py");
    expect(python.some((p) => p.includes("__pycache__") || p.endsWith(".pyc"))).toBe(false);
    expect(python.some((p) => p.includes("scaffold") || p.includes("README"))).toBe(false);
  });

  it("refuses a template without an image section, naming the runtime", async () => {
    const template = { ...runtimes.get("nodejs20"), runtime: "plain" };
    delete (template as { image?: unknown }).image;
    const err = await readTemplateFiles(template).catch((e: unknown) => e);
    expect(isFuncdError(err, "IMAGE_BUILD_FAILED")).toBe(true);
    expect((err as Error).message).toContain('Runtime "plain"');
  });
});

describe("contentHash", () => {
  const base: HashInputs = {
    target: "function",
    templateFiles: [file("Dockerfile", "FROM x"), file("runtime/server.mjs", "serve()")],
    functionFiles: [file("handler.js", "exports.main = () => 1"), file("lib/util.js", "x")],
    depsKey: "k1",
    baseImageId: "sha256:aaa",
    buildArgs: { FUNCD_HANDLER: "handler.main", FUNCD_TIMEOUT_MS: "30000" },
    labels: { "funcd.managed": "true" },
  };

  it("is the same for the same inputs, whatever their order", () => {
    const again = {
      ...base,
      functionFiles: [...base.functionFiles].reverse(),
      buildArgs: { FUNCD_TIMEOUT_MS: "30000", FUNCD_HANDLER: "handler.main" },
    };
    expect(contentHash(again)).toBe(contentHash(base));
    expect(contentHash(base)).toMatch(/^[0-9a-f]{20}$/);
  });

  it.each<[string, Partial<HashInputs>]>([
    ["a function file's content", { functionFiles: [file("handler.js", "exports.main = () => 2")] }],
    [
      "a function file's executable bit",
      {
        functionFiles: [...base.functionFiles.slice(1), file("handler.js", "exports.main = () => 1", 0o755)],
      },
    ],
    ["a new function file", { functionFiles: [...base.functionFiles, file("extra.js", "")] }],
    [
      "a template file",
      { templateFiles: [file("Dockerfile", "FROM y"), file("runtime/server.mjs", "serve()")] },
    ],
    ["the dependency key", { depsKey: "k2" }],
    ["no dependencies", { depsKey: null }],
    ["the base image", { baseImageId: "sha256:bbb" }],
    ["a build setting", { buildArgs: { FUNCD_HANDLER: "handler.other", FUNCD_TIMEOUT_MS: "30000" } }],
    ["the target stage", { target: "runtime" }],
  ])("changes with %s", (_what, change) => {
    expect(contentHash({ ...base, ...change })).not.toBe(contentHash(base));
  });

  it("does not mistake a file moved between template and function for the same context", () => {
    const moved = {
      ...base,
      templateFiles: [...base.templateFiles, file("handler.js", "exports.main = () => 1")],
      functionFiles: base.functionFiles.slice(1),
    };
    expect(contentHash(moved)).not.toBe(contentHash(base));
  });
});

describe("assembleContext", () => {
  it("lays out the template at the root, the function under function/ and the deps under deps/", async () => {
    const work = mkdtempSync(path.join(os.tmpdir(), "funcd-ctx-test-"));
    temps.push(work);
    const deps = path.join(work, "cache-entry");
    mkdirSync(path.join(deps, "node_modules", "left-pad", ".bin"), { recursive: true });
    writeFileSync(path.join(deps, "node_modules", "left-pad", "index.js"), "module.exports = 1");
    symlinkSync("../index.js", path.join(deps, "node_modules", "left-pad", ".bin", "pad"));

    const templateFiles = await readTemplateFiles(runtimes.get("nodejs20"));
    const context = await assembleContext({
      templateFiles,
      functionFiles: [
        file("handler.js", "exports.main = () => 'hi'"),
        file("lib/run.sh", "#!/bin/sh", 0o755),
      ],
      depsDir: deps,
      workDir: work,
    });
    try {
      const read = (p: string) => readFileSync(path.join(context.dir, p), "utf8");
      expect(read("Dockerfile")).toContain("AS function");
      expect(read("runtime/server.mjs")).toBe(
        readFileSync(path.join(templatesDir, "nodejs20/server.mjs"), "utf8"),
      );
      expect(read("function/handler.js")).toBe("exports.main = () => 'hi'");
      expect(read("deps/node_modules/left-pad/index.js")).toBe("module.exports = 1");

      const entries = new Map<string, { type: string; mode: number; linkpath?: string }>();
      await new Promise<void>((resolve, reject) => {
        const parser = listTar({
          onReadEntry: (e) => {
            entries.set(e.path, {
              type: e.type,
              mode: e.mode ?? 0,
              ...(e.linkpath ? { linkpath: e.linkpath } : {}),
            });
          },
        });
        parser.on("end", resolve);
        parser.on("error", reject);
        context.tar().pipe(parser as unknown as NodeJS.WritableStream);
      });
      expect(entries.get("Dockerfile")?.type).toBe("File");
      expect(entries.get("function/handler.js")?.mode).toBe(0o644);
      expect(entries.get("function/lib/run.sh")?.mode).toBe(0o755);
      // node_modules/.bin links stay links.
      expect(entries.get("deps/node_modules/left-pad/.bin/pad")).toMatchObject({
        type: "SymbolicLink",
        linkpath: "../index.js",
      });
      expect([...entries.keys()].some((p) => p.includes("scaffold"))).toBe(false);
    } finally {
      await context.dispose();
    }
    expect(() => readFileSync(path.join(context.dir, "Dockerfile"))).toThrow();
  });
});
