import { createHash } from "node:crypto";
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { isFuncdError } from "../shared/errors.js";
import type { BlobRepo, ManifestEntry } from "../store/types.js";
import { linkTree } from "./artifacts.js";
import { DependencyCache, planDependencies } from "./dependencies.js";
import { installEnv, npmInstaller, pipInstaller } from "./installers.js";

const node = { runtime: "nodejs20", dependencyFile: "package.json" };
const python = { runtime: "python3", dependencyFile: "requirements.txt" };

/** An in-memory function upload: path → text, as a manifest plus a blob reader. */
function upload(files: Record<string, string>) {
  const blobs = new Map<string, Buffer>();
  const manifest: ManifestEntry[] = Object.entries(files).map(([p, text]) => {
    const data = Buffer.from(text);
    const hash = createHash("sha256").update(data).digest("hex");
    blobs.set(hash, data);
    return { path: p, hash, size: data.length, mode: 0o644 };
  });
  return { manifest, read: (e: ManifestEntry) => blobs.get(e.hash) };
}

function keyOf(template: typeof node, files: Record<string, string>): string | null {
  const { manifest, read } = upload(files);
  return planDependencies(template, manifest, read)?.key ?? null;
}

const PKG = JSON.stringify({ dependencies: { lodash: "4.17.21" } });
const LOCK = JSON.stringify({
  lockfileVersion: 3,
  packages: { "node_modules/lodash": { version: "4.17.21" } },
});

const temps: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "funcd-deps-unit-"));
  temps.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of temps.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("dependency cache keys", () => {
  it("are the same for the same dependency files, whatever else the function has", () => {
    const a = keyOf(node, { "handler.js": "module.exports = { main: () => 1 }", "package.json": PKG });
    const b = keyOf(node, {
      "handler.js": "module.exports = { main: () => 2 }",
      "package.json": PKG,
      "x.js": "",
    });
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(b).toBe(a);
  });

  it("change when the lock file appears or changes", () => {
    const plain = keyOf(node, { "package.json": PKG });
    const locked = keyOf(node, { "package.json": PKG, "package-lock.json": LOCK });
    const relocked = keyOf(node, { "package.json": PKG, "package-lock.json": LOCK.replace("3", "2") });
    expect(new Set([plain, locked, relocked]).size).toBe(3);
  });

  it("change with the runtime", () => {
    const a = keyOf(node, { "package.json": PKG });
    const b = keyOf({ ...node, runtime: "nodejs22" }, { "package.json": PKG });
    expect(b).not.toBe(a);
  });

  it("cover .npmrc, which can change the registry", () => {
    expect(keyOf(node, { "package.json": PKG, ".npmrc": "registry=https://example.test/" })).not.toBe(
      keyOf(node, { "package.json": PKG }),
    );
  });

  it("are null when there is nothing to install", () => {
    expect(keyOf(node, { "handler.js": "" })).toBeNull();
    expect(keyOf(node, { "package.json": '{ "type": "module" }' })).toBeNull();
    expect(keyOf(node, { "package.json": '{ "devDependencies": { "x": "1" } }' })).toBeNull();
    expect(keyOf(python, { "requirements.txt": "# nothing yet\n\n" })).toBeNull();
    expect(keyOf({ runtime: "custom", dependencyFile: "deps.lst" }, { "deps.lst": "x" })).toBeNull();
  });

  it("refuses a package.json that is not JSON", () => {
    let caught: unknown;
    try {
      keyOf(node, { "package.json": "{ nope" });
    } catch (err) {
      caught = err;
    }
    expect(isFuncdError(caught) && caught.code).toBe("DEPLOY_FAILED");
    expect(String(caught)).toContain("package.json is not valid JSON");
  });

  it("cover the files of a local package a requirements file points at, and only those", () => {
    const base = {
      "handler.py": "def main(e, c): return 1",
      "requirements.txt": "./localpkg\n",
      "localpkg/pyproject.toml": "[project]\nname='localpkg'",
      "localpkg/localpkg/__init__.py": "X = 1",
    };
    const key = keyOf(python, base);
    expect(keyOf(python, { ...base, "handler.py": "def main(e, c): return 2" })).toBe(key);
    expect(keyOf(python, { ...base, "localpkg/localpkg/__init__.py": "X = 2" })).not.toBe(key);
  });

  it("follow nested requirement files, wheels and file: links", () => {
    const { manifest, read } = upload({
      "requirements.txt": "-r reqs/base.txt\n--find-links=./wheels\nfile:vendor/a  # local\n",
      "reqs/base.txt": "../libs/b.whl\nrequests==2.0  # from the index\n",
      "libs/b.whl": "wheel",
      "wheels/c.whl": "wheel",
      "vendor/a/setup.py": "",
      "handler.py": "",
    });
    const plan = planDependencies(python, manifest, read);
    expect(plan?.files.map((f) => f.path)).toEqual([
      "libs/b.whl",
      "reqs/base.txt",
      "requirements.txt",
      "vendor/a/setup.py",
      "wheels/c.whl",
    ]);
  });

  it("follow file: dependencies of a package.json", () => {
    const { manifest, read } = upload({
      "package.json": JSON.stringify({ dependencies: { mine: "file:./vendor/mine", lodash: "^4" } }),
      "vendor/mine/package.json": "{}",
      "vendor/mine/index.js": "",
      "handler.js": "",
    });
    expect(planDependencies(node, manifest, read)?.files.map((f) => f.path)).toEqual([
      "package.json",
      "vendor/mine/index.js",
      "vendor/mine/package.json",
    ]);
  });
});

describe("install commands and environment", () => {
  it("use npm ci with a lock file and npm install without, omitting dev dependencies", () => {
    const args = (present: string[]) =>
      npmInstaller.command({ workDir: "/w", targetDir: "/t", present: new Set(present) });
    expect(args(["package.json", "package-lock.json"])).toContain("ci");
    expect(args(["package.json"])).toContain("install");
    expect(args(["package.json"])).toEqual(expect.arrayContaining(["--omit=dev", "--no-audit", "--no-fund"]));
  });

  it("install Python packages into the target folder", () => {
    const args = pipInstaller.command({
      workDir: "/w",
      targetDir: "/t/.python_packages",
      present: new Set(),
    });
    expect(args.slice(1, 7)).toEqual(["-m", "pip", "install", "--target", "/t/.python_packages", "-r"]);
  });

  it("pass registry and proxy settings on, but not the daemon's own environment", () => {
    const env = installEnv(
      npmInstaller,
      { HOME: "/cache/home" },
      {
        NODE_EXTRA_CA_CERTS: "/ca.pem",
        NODE_OPTIONS: "--inspect",
        FUNCD_TOKEN: "secret",
        HOME: "/root",
        npm_config_registry: "https://registry.example/",
        NPM_CONFIG_STRICT_SSL: "false",
        npm_config_local_prefix: "/work/daemon",
        HTTPS_PROXY: "http://proxy:3128",
        no_proxy: "localhost",
      },
    );
    expect(env).toEqual({
      PATH: `${path.dirname(process.execPath)}:/usr/bin:/bin`,
      LANG: "C.UTF-8",
      HOME: "/cache/home",
      npm_config_registry: "https://registry.example/",
      NPM_CONFIG_STRICT_SSL: "false",
      HTTPS_PROXY: "http://proxy:3128",
      no_proxy: "localhost",
    });
  });
});

describe("linkTree", () => {
  it("hard-links files (same inode), recreates folders and copies symlinks as symlinks", async () => {
    const src = path.join(tempDir(), "src");
    mkdirSync(path.join(src, "node_modules", "lodash"), { recursive: true });
    writeFileSync(path.join(src, "node_modules", "lodash", "index.js"), "module.exports = 1");
    mkdirSync(path.join(src, "node_modules", ".bin"));
    symlinkSync("../lodash/index.js", path.join(src, "node_modules", ".bin", "lodash"));
    const dest = path.join(tempDir(), "dest");
    mkdirSync(dest);
    writeFileSync(path.join(dest, "handler.js"), "");

    await linkTree(src, dest);

    const original = statSync(path.join(src, "node_modules", "lodash", "index.js"));
    const linked = statSync(path.join(dest, "node_modules", "lodash", "index.js"));
    expect(linked.ino).toBe(original.ino);
    expect(linked.nlink).toBe(2);
    expect(lstatSync(path.join(dest, "node_modules", ".bin", "lodash")).isSymbolicLink()).toBe(true);
    expect(readlinkSync(path.join(dest, "node_modules", ".bin", "lodash"))).toBe("../lodash/index.js");
    expect(statSync(path.join(dest, "handler.js")).isFile()).toBe(true);
  });

  it("replaces an uploaded file of the same name with the installed one", async () => {
    const src = tempDir();
    mkdirSync(path.join(src, "node_modules"));
    writeFileSync(path.join(src, "node_modules", "x.js"), "installed");
    const dest = tempDir();
    mkdirSync(path.join(dest, "node_modules"));
    writeFileSync(path.join(dest, "node_modules", "x.js"), "uploaded");
    await linkTree(src, dest);
    expect(statSync(path.join(dest, "node_modules", "x.js")).ino).toBe(
      statSync(path.join(src, "node_modules", "x.js")).ino,
    );
  });
});

describe("DependencyCache.collectGarbage", () => {
  const noBlobs: BlobRepo = { put: () => "", get: () => undefined, collectGarbage: () => 0 };

  function cacheWith(entries: Record<string, number>, graceMs: number, now: number) {
    const root = tempDir();
    for (const [name, mtime] of Object.entries(entries)) {
      mkdirSync(path.join(root, name, "node_modules"), { recursive: true });
      utimesSync(path.join(root, name), mtime / 1000, mtime / 1000);
    }
    const clock = {
      now: () => now,
      setTimeout: () => ({ cancel() {} }),
      setInterval: () => ({ cancel() {} }),
    };
    const cache = new DependencyCache({
      root,
      cacheDir: tempDir(),
      blobs: noBlobs,
      logger: pino({ level: "silent" }),
      clock,
      graceMs,
    });
    return { root, cache };
  }

  it("removes entries no revision uses once they are older than the grace period", async () => {
    const now = Date.UTC(2025, 0, 1, 12);
    const hour = 3_600_000;
    const { root, cache } = cacheWith(
      { used: now - 5 * hour, old: now - 2 * hour, fresh: now - hour / 2, ".tmp-abc-1234": now - 5 * hour },
      hour,
      now,
    );
    expect(await cache.collectGarbage(new Set(["used"]))).toBe(1);
    const left = ["used", "old", "fresh", ".tmp-abc-1234"].filter((n) => {
      try {
        statSync(path.join(root, n));
        return true;
      } catch {
        return false;
      }
    });
    expect(left).toEqual(["used", "fresh"]);
  });

  it("does nothing when the cache folder does not exist yet", async () => {
    const cache = new DependencyCache({
      root: path.join(tempDir(), "missing"),
      cacheDir: tempDir(),
      blobs: noBlobs,
      logger: pino({ level: "silent" }),
    });
    expect(await cache.collectGarbage(new Set())).toBe(0);
  });
});
