import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { create } from "tar";
import { describe, expect, it } from "vitest";
import { isFuncdError } from "../shared/errors.js";
import { filesFromArchive, filesFromMap, safeRelativePath } from "./code.js";

async function tarOf(build: (dir: string) => string[]): Promise<Buffer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "funcd-code-"));
  try {
    const entries = build(dir);
    return await create({ gzip: true, cwd: dir, portable: true }, entries).concat();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("expected a rejection");
}

describe("code intake", () => {
  it.each(["../x.js", "/etc/passwd", "a/../../x", "a/../..", ""])("refuses the path %j", (p) => {
    expect(() => safeRelativePath(p)).toThrow(/leaves the function folder/);
  });

  it("normalises harmless relative paths", () => {
    expect(safeRelativePath("./lib/../handler.js")).toBe("handler.js");
    expect(safeRelativePath("lib\\util.js")).toBe("lib/util.js");
  });

  it("reads a files map with text and base64 content", () => {
    const files = filesFromMap({ "handler.js": "x", "img.bin": { base64: "AAEC" } }, { maxBytes: 100 });
    expect(files.map((f) => [f.path, [...f.data]])).toEqual([
      ["handler.js", [120]],
      ["img.bin", [0, 1, 2]],
    ]);
  });

  it("refuses a files map over the size limit", () => {
    expect(() => filesFromMap({ "a.js": "x".repeat(11) }, { maxBytes: 10 })).toThrow(/larger than 10 bytes/);
  });

  it("unpacks a tar.gz with nested folders and an in-tree symlink", async () => {
    const archive = await tarOf((dir) => {
      mkdirSync(path.join(dir, "lib"));
      writeFileSync(path.join(dir, "handler.js"), "module.exports={}");
      writeFileSync(path.join(dir, "lib", "util.js"), "u");
      symlinkSync("util.js", path.join(dir, "lib", "alias.js"));
      return ["handler.js", "lib"];
    });
    const files = await filesFromArchive(archive, { maxBytes: 1000 });
    expect(files.map((f) => [f.path, f.data.toString()])).toEqual([
      ["handler.js", "module.exports={}"],
      ["lib/alias.js", "u"],
      ["lib/util.js", "u"],
    ]);
  });

  it("refuses a symlink that points out of the tree", async () => {
    const archive = await tarOf((dir) => {
      symlinkSync("/etc/passwd", path.join(dir, "passwd"));
      return ["passwd"];
    });
    const err = await rejection(filesFromArchive(archive, { maxBytes: 1000 }));
    expect(isFuncdError(err, "INVALID_ARCHIVE")).toBe(true);
  });

  it("refuses an archive that unpacks past the limit", async () => {
    const archive = await tarOf((dir) => {
      writeFileSync(path.join(dir, "big.js"), "x".repeat(5000));
      return ["big.js"];
    });
    const err = await rejection(filesFromArchive(archive, { maxBytes: 1000 }));
    expect(isFuncdError(err, "PAYLOAD_TOO_LARGE")).toBe(true);
  });

  it("refuses bytes that are not a tar.gz", async () => {
    const err = await rejection(filesFromArchive(Buffer.from("definitely not gzip"), { maxBytes: 1000 }));
    expect(isFuncdError(err, "INVALID_ARCHIVE")).toBe(true);
  });
});

describe("archive bombs", () => {
  it("refuses an archive that inflates past the ratio limit even under the byte limit", async () => {
    const archive = await tarOf((dir) => {
      writeFileSync(path.join(dir, "zeros.bin"), Buffer.alloc(20 * 1024 * 1024));
      return ["zeros.bin"];
    });
    const err = await rejection(filesFromArchive(archive, { maxBytes: 100 * 1024 * 1024 }));
    expect(isFuncdError(err) && err.code).toBe("PAYLOAD_TOO_LARGE");
    expect(String(err)).toMatch(/times its compressed size/);
  });
});

describe("file and folder clashes", () => {
  it("refuses a files map where one path is both a file and a folder, naming it", () => {
    expect(() =>
      filesFromMap({ lib: "x", "lib/util.js": "y", "handler.js": "z" }, { maxBytes: 100 }),
    ).toThrow(/"lib" is both a file and a folder/);
  });
});
