import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { list } from "tar";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CliError } from "./errors.js";
import { packFolder } from "./pack.js";

async function entriesOf(archive: Buffer): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const parser = list({
    onReadEntry: (entry) => {
      const chunks: Buffer[] = [];
      entry.on("data", (c: Buffer) => chunks.push(c));
      entry.on("end", () => found.set(entry.path, `${entry.type}:${Buffer.concat(chunks).toString()}`));
    },
  });
  await new Promise<void>((resolve, reject) => {
    parser.on("end", resolve);
    parser.on("error", reject);
    Readable.from([archive]).pipe(parser);
  });
  return found;
}

describe("packFolder", () => {
  let root: string;
  let fn: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "funcd-pack-"));
    fn = join(root, "fn");
    await mkdir(join(fn, "lib"), { recursive: true });
    await writeFile(join(fn, "handler.js"), "exports.main = () => 1;\n");
    await writeFile(join(fn, "lib", "util.js"), "module.exports = 2;\n");
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("packs the folder's files with paths relative to it", async () => {
    const packed = await packFolder(fn);
    expect(packed.files).toEqual(["handler.js", "lib/util.js"]);
    const entries = await entriesOf(packed.archive);
    expect(entries.get("handler.js")).toBe("File:exports.main = () => 1;\n");
    expect(entries.get("lib/util.js")).toBe("File:module.exports = 2;\n");
  });

  it("leaves out node_modules and .git at any depth", async () => {
    await mkdir(join(fn, "node_modules", "left-pad"), { recursive: true });
    await writeFile(join(fn, "node_modules", "left-pad", "index.js"), "x");
    await mkdir(join(fn, "lib", "node_modules"), { recursive: true });
    await writeFile(join(fn, "lib", "node_modules", "y.js"), "y");
    await mkdir(join(fn, ".git"));
    await writeFile(join(fn, ".git", "HEAD"), "ref");
    const packed = await packFolder(fn);
    expect(packed.files).toEqual(["handler.js", "lib/util.js"]);
    expect([...(await entriesOf(packed.archive)).keys()].sort()).toEqual(["handler.js", "lib/util.js"]);
  });

  it("refuses a symlink that points outside the folder, naming it", async () => {
    await writeFile(join(root, "secret.txt"), "do not ship");
    await symlink(join(root, "secret.txt"), join(fn, "leak.txt"));
    const error = await packFolder(fn).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CliError);
    expect((error as CliError).code).toBe("USAGE");
    expect((error as CliError).detail).toMatch(/leak\.txt .*symlink .*outside the function folder/);
  });

  it("refuses a symlinked folder that leads outside", async () => {
    await symlink(root, join(fn, "up"));
    await expect(packFolder(fn)).rejects.toThrow(/up .*outside the function folder/);
  });

  it("ships a symlink inside the folder as the file it points to", async () => {
    await symlink("lib/util.js", join(fn, "alias.js"));
    const packed = await packFolder(fn);
    expect(packed.files).toContain("alias.js");
    expect((await entriesOf(packed.archive)).get("alias.js")).toBe("File:module.exports = 2;\n");
  });

  it("says so when the folder does not exist or is empty", async () => {
    await expect(packFolder(join(root, "nope"))).rejects.toThrow(/does not exist/);
    await mkdir(join(root, "empty"));
    await expect(packFolder(join(root, "empty"))).rejects.toThrow(/has no files/);
  });
});
