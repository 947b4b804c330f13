import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { describe, expect, it } from "vitest";

/**
 * package.json's `engines.node` is a promise: every Node version it admits runs every package the lock file
 * installs. npm only warns when a dependency wants more (cookie@2 wanted Node 22 while we said 20.18), so
 * this keeps the promise true: each locked package's own `engines.node` must admit all of ours.
 */
// npm's own range logic; loaded untyped so the check needs no @types package (two functions are used).
const semver = createRequire(import.meta.url)("semver") as {
  subset(range: string, of: string): boolean;
  satisfies(version: string, range: string): boolean;
};
const root = path.resolve(import.meta.dirname, "..", "..");
const pkg = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as {
  engines: { node: string };
};
const lock = JSON.parse(readFileSync(path.join(root, "package-lock.json"), "utf8")) as {
  packages: Record<string, { version?: string; engines?: { node?: string } | string[] }>;
};

describe("package.json engines", () => {
  it("admits only Node versions every locked package supports", () => {
    const ours = pkg.engines.node;
    const narrower: string[] = [];
    for (const [where, entry] of Object.entries(lock.packages)) {
      const theirs = Array.isArray(entry.engines) ? undefined : entry.engines?.node;
      if (!where || !theirs) continue;
      if (!semver.subset(ours, theirs)) narrower.push(`${where}@${entry.version}: node ${theirs}`);
    }
    expect(narrower, `package.json says node ${ours}, but these want less`).toEqual([]);
  });

  it("admits the Node this machine and CI run", () => {
    expect(semver.satisfies(process.versions.node, pkg.engines.node)).toBe(true);
  });
});
