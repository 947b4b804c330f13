/**
 * Dependencies through the shared cache: a real daemon installs `package.json` dependencies with npm
 * (from the public registry) and `requirements.txt` ones with pip (a local package, offline), shares
 * one install between functions and revisions, and keeps the previous revision serving when an install
 * fails. The second half drives `DependencyCache` directly for what a daemon hides: the install uid,
 * timeouts and concurrent deploys of the same dependencies.
 *
 * The Python cases need the Python runtime (templates/python3); they are skipped, with that reason,
 * only when it is missing and never under CI=true.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DependencyCache, INSTALL_UID } from "../../src/builder/dependencies.js";
import { isRoot } from "../../src/drivers/process/sandbox.js";
import type { BlobRepo, ManifestEntry } from "../../src/store/types.js";
import { type Daemon, processesMentioning, ROOT, removeDir, startDaemon } from "../helpers/daemon.js";

const FIXTURES = path.join(ROOT, "test", "fixtures", "deps");
const isCI = process.env.CI === "true";
const skipPython =
  existsSync(path.join(ROOT, "templates", "python3", "template.yaml")) || isCI
    ? undefined
    : "the Python runtime (templates/python3) is not in this checkout yet";

/** A fixture folder as the API's `files` map. */
function filesOf(dir: string, prefix = ""): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const rel = prefix + entry.name;
    if (entry.isDirectory()) Object.assign(out, filesOf(path.join(dir, entry.name), `${rel}/`));
    else out[rel] = readFileSync(path.join(dir, entry.name), "utf8");
  }
  return out;
}

interface DeployResultView {
  changed: boolean;
  revision: { id: string; number: number };
  dependencies: { key: string; cached: boolean } | null;
}

interface DeployOutcome {
  progress: string[];
  result?: DeployResultView | undefined;
  problem?: { code: string; detail: string; logs?: string[] } | undefined;
}

/** A deploy as the CLI makes it: NDJSON progress lines, then the result or the problem. */
async function deploy(daemon: Daemon, name: string, body: Record<string, unknown>): Promise<DeployOutcome> {
  const res = await daemon.api("PUT", `/api/v1/functions/${name}`, body, { accept: "application/x-ndjson" });
  const outcome: DeployOutcome = { progress: [] };
  for (const line of res.text.split("\n").filter((l) => l.trim() !== "")) {
    const item = JSON.parse(line) as { type: string; message?: string; problem?: DeployOutcome["problem"] };
    if (item.type === "progress") outcome.progress.push(String(item.message));
    else if (item.type === "result") outcome.result = item as unknown as DeployResultView;
    else if (item.type === "error") outcome.problem = item.problem;
  }
  return outcome;
}

const lodashFiles = filesOf(path.join(FIXTURES, "node-lodash"));

describe("a daemon installing dependencies", () => {
  let daemon: Daemon;
  let dataDir: string;
  let lodashKey: string;

  beforeAll(async () => {
    daemon = await startDaemon();
    dataDir = daemon.dataDir;
  });
  afterAll(async () => {
    await daemon?.stop();
    if (dataDir) removeDir(dataDir);
  });

  const depsEntries = () => readdirSync(path.join(dataDir, "deps")).filter((n) => !n.startsWith("."));

  it("installs package.json dependencies at deploy time and the function uses them", async () => {
    const out = await deploy(daemon, "chunker", { runtime: "nodejs20", files: lodashFiles });
    expect(out.problem).toBeUndefined();
    expect(out.progress).toContain("installing dependencies (npm install)");
    // npm's own output streams through as progress.
    expect(out.progress.some((m) => /^installing dependencies: .*lodash/.test(m))).toBe(true);
    expect(out.result?.dependencies).toEqual({ key: expect.stringMatching(/^[0-9a-f]{64}$/), cached: false });
    lodashKey = out.result?.dependencies?.key ?? "";

    const res = await daemon.call("POST", "/function/chunker", "abcde", { "content-type": "text/plain" });
    expect(res.status).toBe(200);
    expect(res.json()).toEqual([["a", "b"], ["c", "d"], ["e"]]);
  });

  it("shares one install between two functions with the same package.json", async () => {
    const out = await deploy(daemon, "chunker2", { runtime: "nodejs20", files: lodashFiles });
    expect(out.result?.dependencies).toEqual({ key: lodashKey, cached: true });
    expect(out.progress).toContain("dependencies unchanged (cache hit)");
    expect(out.progress.some((m) => m.startsWith("installing dependencies"))).toBe(false);
    expect((await daemon.call("POST", "/function/chunker2", "xyz")).json()).toEqual([["x", "y"], ["z"]]);

    // One copy on disk: both artifacts hard-link the cache entry's files.
    expect(depsEntries()).toEqual([lodashKey]);
    const file = path.join("node_modules", "lodash", "lodash.js");
    const cached = statSync(path.join(dataDir, "deps", lodashKey, file));
    const revisions = await Promise.all(
      ["chunker", "chunker2"].map(async (name) => {
        const view = (await daemon.api("GET", `/api/v1/functions/${name}`)).json<{
          activeRevision: { id: string };
        }>();
        return view.activeRevision.id;
      }),
    );
    for (const id of revisions) {
      expect(statSync(path.join(dataDir, "artifacts", id, file)).ino).toBe(cached.ino);
    }
    const listed = (await daemon.api("GET", "/api/v1/functions/chunker2/revisions")).json<{
      items: { dependencies: { key: string } | null }[];
    }>();
    expect(listed.items[0]?.dependencies).toEqual({ key: lodashKey });
  });

  it("installs nothing when a redeploy leaves the dependencies unchanged", async () => {
    const handler = `${lodashFiles["handler.js"]}\n// a new revision, same dependencies\n`;
    const changed = await deploy(daemon, "chunker", {
      runtime: "nodejs20",
      files: { ...lodashFiles, "handler.js": handler },
    });
    expect(changed.result).toMatchObject({ changed: true, revision: { number: 2 } });
    expect(changed.result?.dependencies).toEqual({ key: lodashKey, cached: true });
    expect(changed.progress).toContain("dependencies unchanged (cache hit)");
    expect(changed.progress.some((m) => m.startsWith("installing dependencies"))).toBe(false);

    const same = await deploy(daemon, "chunker", {
      runtime: "nodejs20",
      files: { ...lodashFiles, "handler.js": handler },
    });
    expect(same.result).toMatchObject({ changed: false, dependencies: { key: lodashKey, cached: true } });
    expect(same.progress).toContain("dependencies unchanged (cache hit)");
  });

  it("writes the install's output into the function's logs", async () => {
    const res = await daemon.api("GET", "/api/v1/functions/chunker/logs");
    const lines = res.text
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as { instanceId: string; stream: string; text: string });
    const build = lines.filter((l) => l.instanceId === "build");
    expect(build.every((l) => l.stream === "system")).toBe(true);
    expect(build.map((l) => l.text)).toContain("funcd: installing dependencies (npm install)");
    expect(build.some((l) => l.text.includes("lodash"))).toBe(true);
  });

  it("fails the deploy with npm's error when a package does not exist, and the previous revision keeps serving", async () => {
    const broken = JSON.stringify({
      dependencies: { lodash: "4.17.21", "funcd-no-such-package-xyz": "1.0.0" },
    });
    const out = await deploy(daemon, "chunker", {
      runtime: "nodejs20",
      files: { ...lodashFiles, "package.json": broken },
    });
    expect(out.result).toBeUndefined();
    expect(out.problem?.code).toBe("DEPLOY_FAILED");
    expect(out.problem?.detail).toContain('Installing dependencies of "chunker" failed (npm exited with 1)');
    expect(out.problem?.detail).toContain("previous revision keeps serving");
    // npm's output is in `logs`, once, not quoted in the detail as well.
    expect(out.problem?.detail).not.toContain("funcd-no-such-package-xyz");
    expect(out.problem?.logs?.join("\n")).toContain("funcd-no-such-package-xyz");
    expect(out.problem?.logs?.join("\n")).toMatch(/E404|404 Not Found/);

    expect((await daemon.call("POST", "/function/chunker", "ab")).json()).toEqual([["a", "b"]]);
    const view = (await daemon.api("GET", "/api/v1/functions/chunker")).json<{
      activeRevision: { number: number };
    }>();
    expect(view.activeRevision.number).toBe(2);
    const revisions = (await daemon.api("GET", "/api/v1/functions/chunker/revisions")).json<{
      items: { number: number; status: string }[];
    }>();
    expect(revisions.items[0]).toMatchObject({ number: 3, status: "failed" });
    // The failed install left nothing half-done in the cache.
    expect(depsEntries()).toEqual([lodashKey]);
  });

  it("serves from the cache after a restart without installing again", async () => {
    await daemon.stop();
    daemon = await startDaemon({ dataDir });
    expect((await daemon.call("POST", "/function/chunker2", "abc")).json()).toEqual([["a", "b"], ["c"]]);
    expect(depsEntries()).toEqual([lodashKey]);
    const again = await deploy(daemon, "chunker3", { runtime: "nodejs20", files: lodashFiles });
    expect(again.result?.dependencies).toEqual({ key: lodashKey, cached: true });
  });

  it.skipIf(skipPython !== undefined)(
    `installs a local Python package from requirements.txt${skipPython ? ` (skipped: ${skipPython})` : ""}`,
    async () => {
      const files = filesOf(path.join(FIXTURES, "python-localpkg"));
      const out = await deploy(daemon, "greeter", { runtime: "python3", files });
      expect(out.problem).toBeUndefined();
      expect(out.progress).toContain("installing dependencies (pip install -r requirements.txt)");
      expect(out.result?.dependencies?.cached).toBe(false);
      const res = await daemon.call("GET", "/function/greeter");
      expect(res.status).toBe(200);
      expect(res.text).toContain("Hello from localpkg, funcd!");

      // Another function with the same requirements and local package: one install.
      const second = await deploy(daemon, "greeter2", { runtime: "python3", files });
      expect(second.result?.dependencies).toEqual({ key: out.result?.dependencies?.key, cached: true });
      expect((await daemon.call("GET", "/function/greeter2")).text).toContain("Hello from localpkg");
    },
  );
});

/** An in-memory blob store and manifest for driving the cache without a daemon. */
function memoryUpload(files: Record<string, string>): { blobs: BlobRepo; manifest: ManifestEntry[] } {
  const data = new Map<string, Buffer>();
  const manifest = Object.entries(files).map(([p, text]) => {
    const bytes = Buffer.from(text);
    const hash = createHash("sha256").update(bytes).digest("hex");
    data.set(hash, bytes);
    return { path: p, hash, size: bytes.length, mode: 0o644 };
  });
  const blobs: BlobRepo = { put: () => "", get: (h) => data.get(h), collectGarbage: () => 0 };
  return { blobs, manifest };
}

describe("DependencyCache with real installers", () => {
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "funcd-deps-"));
  });
  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  function cacheFor(files: Record<string, string>, options: { timeoutMs?: number } = {}) {
    const { blobs, manifest } = memoryUpload(files);
    const cache = new DependencyCache({
      root: path.join(dataDir, "deps"),
      cacheDir: path.join(dataDir, "cache"),
      blobs,
      logger: pino({ level: "silent" }),
      ...options,
    });
    return { cache, manifest };
  }

  async function failure(
    promise: Promise<unknown>,
  ): Promise<{ message: string; extra: { logs?: string[] } }> {
    try {
      await promise;
    } catch (err) {
      return err as { message: string; extra: { logs?: string[] } };
    }
    throw new Error("expected the install to fail");
  }

  it("pip builds and installs a local package offline into .python_packages", async () => {
    const { cache, manifest } = cacheFor(filesOf(path.join(FIXTURES, "python-localpkg")));
    const plan = cache.plan({ runtime: "python3", dependencyFile: "requirements.txt" }, manifest);
    expect(plan?.files.map((f) => f.path)).toEqual([
      "localpkg/localpkg/__init__.py",
      "localpkg/pyproject.toml",
      "requirements.txt",
    ]);
    if (!plan) return;
    const lines: string[] = [];
    const ensured = await cache.ensure(plan, { functionName: "greeter", onLine: (l) => lines.push(l) });
    expect(ensured.cached).toBe(false);
    expect(lines.join("\n")).toContain("Successfully installed localpkg-0.1.0");
    const init = path.join(ensured.dir, ".python_packages", "localpkg", "__init__.py");
    expect(readFileSync(init, "utf8")).toContain("Hello from localpkg");
    // Sealed: owned by the daemon's user (root when root), readable by every function uid, writable by none.
    const info = statSync(init);
    expect(info.uid).toBe(process.getuid?.());
    expect(info.mode & 0o777).toBe(0o644);

    const again = await cache.ensure(plan, { functionName: "greeter" });
    expect(again).toEqual({ ...ensured, cached: true });
  });

  it("runs package scripts as an unprivileged uid and reports a failed install with its output", async () => {
    const hook = {
      name: "hook",
      version: "1.0.0",
      scripts: { postinstall: `node -e "console.log('uid=' + process.getuid()); process.exit(3)"` },
    };
    const { cache, manifest } = cacheFor({
      "package.json": JSON.stringify({ dependencies: { hook: "file:./hook" } }),
      "hook/package.json": JSON.stringify(hook),
      "handler.js": "",
    });
    const plan = cache.plan({ runtime: "nodejs20", dependencyFile: "package.json" }, manifest);
    if (!plan) throw new Error("expected a plan");
    const err = await failure(cache.ensure(plan, { functionName: "hooked" }));
    expect(err.message).toContain('Installing dependencies of "hooked" failed (npm exited with 3)');
    const uid = isRoot() ? INSTALL_UID : process.getuid?.();
    expect(err.extra.logs?.join("\n")).toContain(`uid=${uid}`);
    expect(existsSync(cache.dirFor(plan.key))).toBe(false);
  });

  it("stops an install that outlives its timeout, with everything it started", async () => {
    const { cache, manifest } = cacheFor(
      {
        "package.json": JSON.stringify({
          dependencies: { tiny: "file:./tiny" },
          scripts: { postinstall: `node -e "setTimeout(() => {}, 60000)" funcd-slow-install-marker` },
        }),
        "tiny/package.json": JSON.stringify({ name: "tiny", version: "1.0.0" }),
      },
      { timeoutMs: 3000 },
    );
    const plan = cache.plan({ runtime: "nodejs20", dependencyFile: "package.json" }, manifest);
    if (!plan) throw new Error("expected a plan");
    const began = Date.now();
    const err = await failure(cache.ensure(plan, { functionName: "slow" }));
    expect(err.message).toContain("npm did not finish within 3 s and was stopped");
    expect(Date.now() - began).toBeLessThan(20_000);
    expect(processesMentioning("funcd-slow-install-marker")).toEqual([]);
  }, 30_000);

  it("lets concurrent deploys of the same dependencies share one install", async () => {
    const { cache, manifest } = cacheFor({
      "package.json": JSON.stringify({ dependencies: { tiny: "file:./tiny" }, description: "shared" }),
      "tiny/package.json": JSON.stringify({ name: "tiny", version: "1.0.0" }),
    });
    const plan = cache.plan({ runtime: "nodejs20", dependencyFile: "package.json" }, manifest);
    if (!plan) throw new Error("expected a plan");
    const progress: string[] = [];
    const results = await Promise.all(
      ["a", "b", "c"].map((name) =>
        cache.ensure(plan, { functionName: name, onProgress: (m) => progress.push(`${name}: ${m}`) }),
      ),
    );
    expect(results.map((r) => r.cached).sort()).toEqual([false, true, true]);
    expect(progress.filter((m) => m.includes("installing dependencies (npm install)"))).toHaveLength(1);
    expect(progress.filter((m) => m.includes("waiting for an install"))).toHaveLength(2);
  });
});
