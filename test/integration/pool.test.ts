/**
 * The warm pool with real processes: the process driver's generic instances (what only this driver
 * promises beyond the conformance cases: pool uids, reconcile, boot-only variables, templates without a
 * generic mode), and a real daemon serving cold starts from the pool — with the pool off as well.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { afterAll, describe, expect, it, onTestFinished } from "vitest";
import { invokeInstance } from "../../src/drivers/conformance.js";
import type { InstanceSpec } from "../../src/drivers/driver.js";
import { ProcessDriver } from "../../src/drivers/process/index.js";
import { isRunning } from "../../src/drivers/process/proctree.js";
import { isRoot, poolUidRange, probeBwrap } from "../../src/drivers/process/sandbox.js";
import { type Daemon, processesMentioning, removeDir, startDaemon } from "../helpers/daemon.js";

const here = dirname(fileURLToPath(import.meta.url));
const templatesDir = resolve(here, "../../templates");
const bwrap = await probeBwrap(isRoot() ? poolUidRange().first : undefined);
const sandbox = bwrap.ok ? "bwrap" : "none";
const dataDir = await mkdtemp(join(tmpdir(), "funcd-pool-"));
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

let counter = 0;

async function artifact(files: Record<string, string>): Promise<string> {
  await mkdir(join(dataDir, "artifacts"), { recursive: true });
  const dir = await mkdtemp(join(dataDir, "artifacts", "rev-"));
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  return dir;
}

function newDriver(runDir = "run", dir = templatesDir): ProcessDriver {
  const driver = new ProcessDriver({
    templatesDir: dir,
    runDir: join(dataDir, runDir),
    logSink: () => undefined,
    logger: pino({ level: "silent" }),
    sandbox,
  });
  onTestFinished(() => driver.dispose());
  return driver;
}

async function specOf(
  functionName: string,
  files: Record<string, string>,
  extra: Partial<InstanceSpec> = {},
) {
  counter++;
  return {
    instanceId: `${functionName}-${counter}`,
    functionName,
    revisionId: `rev-${counter}`,
    runtime: "nodejs20",
    artifactDir: await artifact(files),
    handler: "handler.main",
    env: {},
    memoryMb: 128,
    timeoutMs: 5_000,
    ...extra,
  } satisfies InstanceSpec;
}

const WHOAMI = "exports.main = async () => ({ uid: process.getuid(), env: process.env });\n";

describe("the Node runtime in generic mode", () => {
  const server = join(templatesDir, "nodejs20", "server.mjs");

  /** A generic runtime on a fresh socket, and a way to talk to it. */
  async function generic(functionDir: string) {
    const dir = await mkdtemp(join(dataDir, "generic-"));
    const socketPath = join(dir, "sock");
    const child: ChildProcess = spawn(process.execPath, [server], {
      env: {
        PATH: "/usr/bin:/bin",
        FUNCD_GENERIC: "1",
        FUNCD_LISTEN: socketPath,
        FUNCD_FUNCTION_DIR: functionDir,
        FUNCD_RUNTIME: "nodejs20",
        FUNCD_MEMORY_LIMIT_MB: "128",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    onTestFinished(() => {
      child.kill("SIGKILL");
    });
    const deadline = Date.now() + 10_000;
    while (!existsSync(socketPath)) {
      if (Date.now() > deadline) throw new Error(`the generic runtime did not listen:\n${stderr}`);
      await sleep(10);
    }
    const address = { socketPath };
    const specialize = (body: unknown) =>
      invokeInstance(address, {
        method: "POST",
        path: "/_funcd/specialize",
        headers: { "content-type": "application/json", "x-funcd-invoke": "0" },
        body: JSON.stringify(body),
      });
    return { address, specialize, exited, stderr: () => stderr };
  }

  const body = (handler: string, extra: Record<string, unknown> = {}) => ({
    handler,
    env: { PATH: "/usr/bin:/bin", GREETING: "hi", FUNCD_LISTEN: "ignored", FUNCD_RUNTIME: "ignored" },
    functionName: "gen",
    revision: "r9",
    timeoutMs: 3000,
    memoryMb: 128,
    ...extra,
  });

  it("says generic, serves nothing, then becomes the function once and only once", async () => {
    const fn = await artifact({
      "handler.js":
        "exports.main = async (e, c) => ({ env: process.env, name: c['function-name'], timeout: c.timeout });\n",
    });
    const rt = await generic(fn);
    const health = await invokeInstance(rt.address, { headers: { "x-funcd-invoke": "0" }, path: "/healthz" });
    expect(health.text).toBe('{"status":"generic"}');
    expect((await invokeInstance(rt.address)).status).toBe(503);
    // A bad body changes nothing: still generic, still specializable.
    expect((await rt.specialize({ nope: true })).status).toBe(400);
    expect((await rt.specialize(body("handler.main", { memoryMb: 256 }))).status).toBe(400);

    const ready = await rt.specialize(body("handler.main"));
    expect(ready.status).toBe(200);
    expect(ready.text).toBe('{"status":"ready"}');
    const reply = await invokeInstance(rt.address);
    const result = JSON.parse(reply.text) as { env: Record<string, string>; name: string; timeout: number };
    expect(result.name).toBe("gen");
    expect(result.timeout).toBe(3);
    expect(result.env).toMatchObject({
      GREETING: "hi",
      FUNCD_HANDLER: "handler.main",
      FUNCD_FUNCTION_NAME: "gen",
      FUNCD_REVISION: "r9",
      FUNCD_TIMEOUT_MS: "3000",
      FUNCD_MEMORY_LIMIT_MB: "128",
      FUNCD_RUNTIME: "nodejs20",
      FUNCD_FUNCTION_DIR: fn,
    });
    expect(result.env.FUNCD_LISTEN).toBe(rt.address.socketPath);
    expect(result.env).not.toHaveProperty("FUNCD_GENERIC");
    const health2 = await invokeInstance(rt.address, {
      headers: { "x-funcd-invoke": "0" },
      path: "/healthz",
    });
    expect(health2.text).toBe('{"status":"ready"}');
    // Once specialized, the path is the function's like any other.
    const again = await rt.specialize(body("handler.main"));
    expect(again.status).toBe(200);
    expect(JSON.parse(again.text)).toHaveProperty("name", "gen");
    // The boot-time rehearsal left nothing behind: only the invocations above are counted.
    const metrics = await invokeInstance(rt.address, {
      headers: { "x-funcd-invoke": "0" },
      path: "/metrics",
    });
    expect(metrics.text).toContain('function_calls_total{function="gen"} 2');
  });

  it.each([
    ["CommonJS", { "handler.js": "exports.main = async () => 'cjs';\n" }, "cjs"],
    [
      "an ES module (package.json type module)",
      {
        "package.json": '{"type":"module"}',
        "handler.js": "export const main = async () => 'esm';\n",
      },
      "esm",
    ],
    [
      "an ES module with top-level await",
      {
        "package.json": '{"type":"module"}',
        "handler.js": "const value = await Promise.resolve('tla');\nexport const main = async () => value;\n",
      },
      "tla",
    ],
    ["an .mjs module", { "handler.mjs": "export default { main: async () => 'mjs' };\n" }, "mjs"],
  ])("loads %s as a normal start does", async (_kind, files, expected) => {
    const rt = await generic(await artifact(files));
    expect((await rt.specialize(body("handler.main"))).status).toBe(200);
    expect((await invokeInstance(rt.address)).text).toBe(expected);
  });

  it("a handler that does not load answers 422 with the output, and the process exits with code 3", async () => {
    const fn = await artifact({ "handler.js": "exports.main = async () => { return (1 +; };\n" });
    const rt = await generic(fn);
    const failed = await rt.specialize(body("handler.main"));
    expect(failed.status).toBe(422);
    const problem = JSON.parse(failed.text) as { error: string; logs: string[] };
    expect(problem.error).toContain("handler.js");
    expect(problem.logs.join("\n")).toContain("SyntaxError");
    expect(await rt.exited).toBe(3);
    expect(rt.stderr()).toContain("SyntaxError");
  });
});

describe(`process driver warm pool (${sandbox})`, () => {
  it.runIf(isRoot())("a pool instance runs as a pool uid, outside every function's uid range", async () => {
    const driver = newDriver();
    const poolId = `pool-uid-${++counter}`;
    await driver.startGeneric("nodejs20", { poolId, memoryMb: 128 });
    const info = await driver.specialize(poolId, await specOf("uidcheck", { "handler.js": WHOAMI }));
    const { uid } = JSON.parse((await invokeInstance(info.address)).text) as { uid: number };
    const { first, size } = poolUidRange();
    expect(uid).toBeGreaterThanOrEqual(first);
    expect(uid).toBeLessThan(first + size);
  });

  it("reconcile() spares a live specialized instance, and a later driver removes it as a leftover", async () => {
    const driver = newDriver("run-reconcile");
    const poolId = `pool-rec-${++counter}`;
    const generic = await driver.startGeneric("nodejs20", { poolId, memoryMb: 128 });
    const spec = await specOf("survivor", { "handler.js": WHOAMI });
    const info = await driver.specialize(poolId, spec);
    expect((await driver.reconcile()).removed).toBe(0);
    expect((await invokeInstance(info.address)).status).toBe(200);
    // A second driver on the same run dir plays the restarted daemon.
    const next = newDriver("run-reconcile");
    expect((await next.reconcile()).removed).toBeGreaterThanOrEqual(1);
    if (generic.pid !== undefined) expect(await isRunning(generic.pid)).toBe(false);
  });

  it("refuses a function that sets a variable the runtime reads only at boot, and stays generic", async () => {
    const driver = newDriver();
    const poolId = `pool-boot-${++counter}`;
    await driver.startGeneric("nodejs20", { poolId, memoryMb: 128 });
    const spec = await specOf(
      "inspector",
      { "handler.js": WHOAMI },
      { env: { NODE_OPTIONS: "--no-warnings" } },
    );
    await expect(driver.specialize(poolId, spec)).rejects.toMatchObject({
      code: "FUNCTION_UNAVAILABLE",
      extra: { refused: true },
    });
    const plain = await specOf("plain", { "handler.js": WHOAMI });
    const info = await driver.specialize(poolId, plain);
    expect((await invokeInstance(info.address)).status).toBe(200);
  });

  it("a runtime whose template does not declare generic support cannot be pre-started", async () => {
    const dir = await mkdtemp(join(dataDir, "templates-"));
    await cp(join(templatesDir, "nodejs20"), join(dir, "nodejs20"), { recursive: true });
    const yaml = join(dir, "nodejs20", "template.yaml");
    await writeFile(yaml, (await readFile(yaml, "utf8")).replace(/^generic: true$/m, ""));
    const driver = newDriver("run-nogeneric", dir);
    await expect(
      driver.startGeneric("nodejs20", { poolId: `pool-no-${++counter}`, memoryMb: 128 }),
    ).rejects.toMatchObject({ code: "UNKNOWN_RUNTIME" });
    expect(driver.list()).toEqual([]);
  });
});

interface FunctionView {
  instances: unknown[];
}

/** Polls until `check` returns a value other than undefined. */
async function eventually<T>(
  check: () => Promise<T | undefined>,
  what: string,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

async function poolReady(daemon: Daemon, runtime = "nodejs20"): Promise<number> {
  const metrics = (await daemon.call("GET", "/metrics")).text;
  const match = new RegExp(`^funcd_pool_instances\\{runtime="${runtime}",state="ready"\\} (\\d+)$`, "m").exec(
    metrics,
  );
  return Number(match?.[1] ?? 0);
}

async function waitForZero(daemon: Daemon, name: string): Promise<void> {
  await eventually(async () => {
    const view = (await daemon.api("GET", `/api/v1/functions/${name}`)).json<FunctionView>();
    return view.instances.length === 0 ? true : undefined;
  }, `${name} to scale to zero`);
}

async function logText(daemon: Daemon, name: string): Promise<string> {
  return (await daemon.api("GET", `/api/v1/functions/${name}/logs?tail=200`)).text;
}

const ENV_AND_UID = [
  "const fs = require('node:fs');",
  "exports.main = async () => ({ uid: process.getuid(), env: process.env, heapMb: require('node:v8').getHeapStatistics().heap_size_limit / 1048576 });",
].join("\n");

describe("a daemon with the warm pool", () => {
  let daemon: Daemon;

  it("serves a cold start from a specialized pool instance with the function's env and limits, then refills", async () => {
    daemon = await startDaemon({ env: { FUNCD_POOL_SIZE: "2" } });
    onTestFinished(async () => {
      await daemon.stop();
      expect(processesMentioning(daemon.dataDir)).toEqual([]);
      removeDir(daemon.dataDir);
    });
    // Nothing deployed: no pool.
    expect(await poolReady(daemon)).toBe(0);
    const deployed = await daemon.api("PUT", "/api/v1/functions/pooled", {
      runtime: "nodejs20",
      files: { "handler.js": ENV_AND_UID },
      env: { GREETING: "hello from the env" },
      scale: { idleTimeout: "200ms" },
    });
    expect(deployed.status).toBe(201);
    await eventually(
      async () => ((await poolReady(daemon)) === 2 ? true : undefined),
      "two ready pool instances",
    );
    await waitForZero(daemon, "pooled");

    const cold = await daemon.call("GET", "/function/pooled");
    expect(cold.status).toBe(200);
    const body = cold.json<{ uid: number; env: Record<string, string>; heapMb: number }>();
    expect(body.env).toMatchObject({
      GREETING: "hello from the env",
      FUNCD_FUNCTION_NAME: "pooled",
      FUNCD_MEMORY_LIMIT_MB: "256",
    });
    expect(body.env).not.toHaveProperty("FUNCD_GENERIC");
    // The heap limit the runtime booted with is the one a normal start at 256 MiB gets.
    expect(body.heapMb).toBeLessThan(256);
    if (isRoot()) expect(body.uid).toBeGreaterThanOrEqual(poolUidRange().first);
    await eventually(
      async () => ((await logText(daemon, "pooled")).includes("(from the warm pool)") ? true : undefined),
      'the "from the warm pool" line in the function\'s logs',
    );
    expect(await logText(daemon, "pooled")).toMatch(/instance ready in [\d.]+ ms \(from the warm pool\)/);
    const metrics = (await daemon.call("GET", "/metrics")).text;
    expect(metrics).toMatch(/funcd_pool_takes_total\{runtime="nodejs20",outcome="specialized"\} [1-9]/);
    // The take is refilled in the background.
    await eventually(async () => ((await poolReady(daemon)) === 2 ? true : undefined), "the pool to refill");

    // The memory limit applies: past 256 MiB the specialized instance is OOMKilled.
    await daemon.api("PUT", "/api/v1/functions/pooled-hog", {
      runtime: "nodejs20",
      files: {
        "handler.js":
          "const keep = []; exports.main = () => { for (;;) keep.push(Buffer.alloc(16 * 1024 * 1024, 1)); };",
      },
      scale: { idleTimeout: "200ms" },
    });
    await waitForZero(daemon, "pooled-hog");
    await eventually(async () => ((await poolReady(daemon)) === 2 ? true : undefined), "a full pool");
    const hog = await daemon.call("GET", "/function/pooled-hog");
    expect(hog.status).toBe(502);
    const hogLogs = await eventually(async () => {
      const text = await logText(daemon, "pooled-hog");
      return text.includes("OOMKilled") ? text : undefined;
    }, "the OOMKilled line");
    expect(hogLogs).toContain("(from the warm pool)");

    // A handler that does not load is a failed deploy, pool or not.
    const broken = await daemon.api("PUT", "/api/v1/functions/pooled-broken", {
      runtime: "nodejs20",
      files: { "handler.js": "module.exports = { main: () => 'x' ;" },
    });
    expect(broken.status).toBe(422);
    const problem = broken.json<{ code: string; logs: string[] }>();
    expect(problem.code).toBe("HANDLER_LOAD_FAILED");
    expect(problem.logs.join("\n")).toContain("SyntaxError");

    // Deleting every function empties the pool.
    for (const name of ["pooled", "pooled-hog"]) {
      expect((await daemon.api("DELETE", `/api/v1/functions/${name}`)).status).toBe(204);
    }
    await eventually(async () => ((await poolReady(daemon)) === 0 ? true : undefined), "an empty pool");
  });
});

describe("a daemon without the warm pool (FUNCD_POOL_SIZE=0)", () => {
  it("starts instances normally and everything still works", async () => {
    const daemon = await startDaemon({ env: { FUNCD_POOL_SIZE: "0" } });
    onTestFinished(async () => {
      await daemon.stop();
      expect(processesMentioning(daemon.dataDir)).toEqual([]);
      removeDir(daemon.dataDir);
    });
    const deployed = await daemon.api("PUT", "/api/v1/functions/unpooled", {
      runtime: "nodejs20",
      files: { "handler.js": ENV_AND_UID },
      env: { GREETING: "still here" },
      scale: { idleTimeout: "200ms" },
    });
    expect(deployed.status).toBe(201);
    await waitForZero(daemon, "unpooled");
    const cold = await daemon.call("GET", "/function/unpooled");
    expect(cold.status).toBe(200);
    expect(cold.json<{ env: Record<string, string> }>().env).toMatchObject({ GREETING: "still here" });
    const logs = await logText(daemon, "unpooled");
    expect(logs).toContain("instance ready in");
    expect(logs).not.toContain("warm pool");
    expect(await poolReady(daemon)).toBe(0);
    expect(processesMentioning(join(daemon.dataDir, "run", "pool-"))).toEqual([]);
  });
});
