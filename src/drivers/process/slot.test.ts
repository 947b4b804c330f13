import { chmod, lstat, mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { fillSlot } from "./slot.js";

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function tree(): Promise<{ artifact: string; slot: string }> {
  const root = await mkdtemp(join(tmpdir(), "funcd-slot-"));
  dirs.push(root);
  const artifact = join(root, "artifact");
  const slot = join(root, "slot");
  await mkdir(join(artifact, "lib"), { recursive: true });
  await mkdir(slot);
  await writeFile(join(artifact, "handler.js"), "exports.main = () => 1;\n", { mode: 0o644 });
  await writeFile(join(artifact, "lib", "util.js"), "module.exports = 2;\n", { mode: 0o644 });
  await writeFile(join(artifact, "secret.txt"), "only the function", { mode: 0o600 });
  await chmod(join(artifact, "secret.txt"), 0o600);
  await symlink("lib/util.js", join(artifact, "alias.js"));
  return { artifact, slot };
}

describe("fillSlot", () => {
  it("hard-links world-readable files, keeps the tree and its relative links", async () => {
    const { artifact, slot } = await tree();
    await fillSlot(artifact, slot, undefined);
    const [a, b] = await Promise.all([
      lstat(join(artifact, "lib", "util.js")),
      lstat(join(slot, "lib", "util.js")),
    ]);
    expect(b.ino).toBe(a.ino);
    expect(await readFile(join(slot, "handler.js"), "utf8")).toBe("exports.main = () => 1;\n");
    expect(await readlink(join(slot, "alias.js"))).toBe("lib/util.js");
    expect(await readFile(join(slot, "alias.js"), "utf8")).toBe("module.exports = 2;\n");
  });

  it.runIf(process.getuid?.() === 0)(
    "copies a file others may not read and gives the copy to the slot's group, leaving the artifact alone",
    async () => {
      const { artifact, slot } = await tree();
      await fillSlot(artifact, slot, 250_123);
      const original = await lstat(join(artifact, "secret.txt"));
      const copy = await lstat(join(slot, "secret.txt"));
      expect(copy.ino).not.toBe(original.ino);
      expect(copy.gid).toBe(250_123);
      expect(copy.mode & 0o777).toBe(0o640);
      expect(original.gid).toBe(0);
      expect(original.mode & 0o777).toBe(0o600);
      expect((await lstat(join(slot, "handler.js"))).ino).toBe(
        (await lstat(join(artifact, "handler.js"))).ino,
      );
    },
  );

  it("fills big trees too (the part past the synchronous budget goes asynchronously)", async () => {
    const { artifact, slot } = await tree();
    const many = join(artifact, "node_modules", "big");
    await mkdir(many, { recursive: true });
    await Promise.all(
      Array.from({ length: 600 }, (_, i) => writeFile(join(many, `f${i}.js`), `module.exports = ${i};\n`)),
    );
    await fillSlot(artifact, slot, undefined);
    for (const i of [0, 299, 599]) {
      expect(await readFile(join(slot, "node_modules", "big", `f${i}.js`), "utf8")).toBe(
        `module.exports = ${i};\n`,
      );
    }
  });
});
