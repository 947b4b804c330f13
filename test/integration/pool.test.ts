/**
 * The warm pool with real processes: the process driver's generic instances (what only this driver
 * promises beyond the conformance cases: pool uids, reconcile, boot-only variables, templates without a
 * generic mode), and a real daemon serving cold starts from the pool — with the pool off as well.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
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

/**
 * A runtime server started generic (`command`: interpreter and server file) on a fresh socket with the
 * environment a driver gives a generic instance, and a way to talk to it.
 */
function startGeneric(command: [string, ...string[]], runtime: string, functionDir: string) {
  return startRuntime(command, (socketPath) => ({
    PATH: "/usr/bin:/bin",
    FUNCD_GENERIC: "1",
    FUNCD_LISTEN: socketPath,
    FUNCD_FUNCTION_DIR: functionDir,
    FUNCD_RUNTIME: runtime,
    FUNCD_MEMORY_LIMIT_MB: "128",
  }));
}

/** A runtime server on a fresh socket with the environment `envOf(socketPath)`, once it answers. */
async function startRuntime(
  command: [string, ...string[]],
  envOf: (socketPath: string) => Record<string, string>,
) {
  const dir = await mkdtemp(join(dataDir, "runtime-"));
  const socketPath = join(dir, "sock");
  const [file, ...args] = command;
  const child: ChildProcess = spawn(file, args, {
    env: envOf(socketPath),
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
  const address = { socketPath };
  const accepting = () =>
    invokeInstance(address, { headers: { "x-funcd-invoke": "0" }, path: "/healthz" }).then(
      () => true,
      () => false,
    );
  const deadline = Date.now() + 10_000;
  // The socket file appears when it is bound, a moment before it accepts connections.
  while (!existsSync(socketPath) || !(await accepting())) {
    if (Date.now() > deadline) throw new Error(`the generic runtime did not listen:\n${stderr}`);
    await sleep(10);
  }
  const specialize = (body: unknown) =>
    invokeInstance(address, {
      method: "POST",
      path: "/_funcd/specialize",
      headers: { "content-type": "application/json", "x-funcd-invoke": "0" },
      body: JSON.stringify(body),
    });
  return { address, specialize, exited, stderr: () => stderr };
}

const PYTHON_SERVER: [string, ...string[]] = ["/usr/bin/python3", join(templatesDir, "python3", "server.py")];

/** What the daemon sends to `/_funcd/specialize`; the FUNCD_* entries in env must not win. */
const specializeBody = (handler: string, extra: Record<string, unknown> = {}) => ({
  handler,
  env: { PATH: "/usr/bin:/bin", GREETING: "hi", FUNCD_LISTEN: "ignored", FUNCD_RUNTIME: "ignored" },
  functionName: "gen",
  revision: "r9",
  timeoutMs: 3000,
  memoryMb: 128,
  ...extra,
});

/** Both runtimes answer the generic-mode contract alike; each returns its env, name and timeout. */
const GENERIC_RUNTIMES: { runtime: string; command: [string, ...string[]]; files: Record<string, string> }[] =
  [
    {
      runtime: "nodejs20",
      command: [process.execPath, join(templatesDir, "nodejs20", "server.mjs")] as [string, ...string[]],
      files: {
        "handler.js":
          "exports.main = async (e, c) => ({ env: process.env, name: c['function-name'], timeout: c.timeout });\n",
      },
    },
    {
      runtime: "python3",
      command: PYTHON_SERVER,
      files: {
        "handler.py": [
          "import os",
          "def main(event, context):",
          "    return {'env': dict(os.environ), 'name': context['function-name'], 'timeout': context['timeout']}",
          "",
        ].join("\n"),
      },
    },
  ];

describe.each(GENERIC_RUNTIMES)("the $runtime runtime in generic mode", ({ runtime, command, files }) => {
  it("says generic, serves nothing, then becomes the function once and only once", async () => {
    const fn = await artifact(files);
    const rt = await startGeneric(command, runtime, fn);
    const health = await invokeInstance(rt.address, { headers: { "x-funcd-invoke": "0" }, path: "/healthz" });
    expect(health.text).toBe('{"status":"generic"}');
    expect((await invokeInstance(rt.address)).status).toBe(503);
    // A bad body changes nothing: still generic, still specializable.
    expect((await rt.specialize({ nope: true })).status).toBe(400);
    expect((await rt.specialize(specializeBody("handler.main", { memoryMb: 256 }))).status).toBe(400);

    const ready = await rt.specialize(specializeBody("handler.main"));
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
      FUNCD_RUNTIME: runtime,
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
    const again = await rt.specialize(specializeBody("handler.main"));
    expect(again.status).toBe(200);
    expect(JSON.parse(again.text)).toHaveProperty("name", "gen");
    // A boot-time rehearsal, where the runtime has one, left nothing behind: only the calls above count.
    const metrics = await invokeInstance(rt.address, {
      headers: { "x-funcd-invoke": "0" },
      path: "/metrics",
    });
    expect(metrics.text).toContain('function_calls_total{function="gen"} 2');
  });
});

describe("the Node runtime in generic mode", () => {
  const server = join(templatesDir, "nodejs20", "server.mjs");
  const generic = (functionDir: string) => startGeneric([process.execPath, server], "nodejs20", functionDir);

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
    expect((await rt.specialize(specializeBody("handler.main"))).status).toBe(200);
    expect((await invokeInstance(rt.address)).text).toBe(expected);
  });

  it("a handler that does not load answers 422 with the output, and the process exits with code 3", async () => {
    const fn = await artifact({ "handler.js": "exports.main = async () => { return (1 +; };\n" });
    const rt = await generic(fn);
    const failed = await rt.specialize(specializeBody("handler.main"));
    expect(failed.status).toBe(422);
    const problem = JSON.parse(failed.text) as { error: string; logs: string[] };
    expect(problem.error).toContain("handler.js");
    expect(problem.logs.join("\n")).toContain("SyntaxError");
    expect(await rt.exited).toBe(3);
    expect(rt.stderr()).toContain("SyntaxError");
  });
});

describe("the Python runtime in generic mode", () => {
  const generic = (functionDir: string) => startGeneric(PYTHON_SERVER, "python3", functionDir);

  it("sees what a normal start of the function sees: environment, sys.path, time zone, interpreter flags", async () => {
    const fn = await artifact({
      "handler.py": [
        "import os, signal, sys, threading, time",
        "import greeting  # from .python_packages",
        "# Only the main thread may do this, and a normal start imports the handler on it.",
        "signal.signal(signal.SIGUSR1, signal.SIG_IGN)",
        "IMPORTED_ON_MAIN = threading.current_thread() is threading.main_thread()",
        "def main(event, context):",
        "    return {'env': dict(os.environ), 'path': sys.path, 'tz': list(time.tzname),",
        "            'utf8': sys.flags.utf8_mode, 'main': IMPORTED_ON_MAIN, 'greeting': greeting.TEXT}",
        "",
      ].join("\n"),
    });
    await mkdir(join(fn, ".python_packages"));
    await writeFile(join(fn, ".python_packages", "greeting.py"), "TEXT = 'hello from a dependency'\n");
    const env = { PATH: "/usr/bin:/bin", GREETING: "hi", TZ: "Asia/Tokyo" };
    const rt = await generic(fn);
    expect((await rt.specialize(specializeBody("handler.main", { env }))).status).toBe(200);
    const pooled = JSON.parse((await invokeInstance(rt.address)).text) as Record<string, unknown>;

    const normal = await startRuntime(PYTHON_SERVER, (socketPath) => ({
      ...env,
      FUNCD_LISTEN: socketPath,
      FUNCD_FUNCTION_DIR: fn,
      FUNCD_HANDLER: "handler.main",
      FUNCD_FUNCTION_NAME: "gen",
      FUNCD_REVISION: "r9",
      FUNCD_RUNTIME: "python3",
      FUNCD_TIMEOUT_MS: "3000",
      FUNCD_MEMORY_LIMIT_MB: "128",
    }));
    const started = JSON.parse((await invokeInstance(normal.address)).text) as Record<string, unknown>;
    const withoutSocket = ({ env, ...rest }: Record<string, unknown>) => ({
      ...rest,
      env: { ...(env as Record<string, string>), FUNCD_LISTEN: "(its own)" },
    });
    expect(withoutSocket(pooled)).toEqual(withoutSocket(started));
    expect(pooled).toMatchObject({ tz: ["JST", "JST"], main: true, greeting: "hello from a dependency" });
    // Python coerced the C locale to C.UTF-8 at boot (PEP 538) and says so in the environment.
    expect(pooled).toHaveProperty("env.LC_CTYPE", "C.UTF-8");
  });

  it.each([
    ["lam.handler", "a Lambda handler", "2.0"],
    ["both.handler", "a handler that is also the module's main: Kubeless", ""],
  ])("decides the style of %s as a normal start does (%s)", async (handler, _style, version) => {
    const fn = await artifact({
      "lam.py": "def handler(event, context):\n    return event.get('version')\n",
      "both.py": "def handler(event, context):\n    return event.get('version')\nmain = handler\n",
    });
    const rt = await generic(fn);
    expect((await rt.specialize(specializeBody(handler))).status).toBe(200);
    expect((await invokeInstance(rt.address)).text).toBe(version);
  });

  it("a handler that does not load answers 422 with the output, and the process exits with code 3", async () => {
    const fn = await artifact({ "handler.py": "def main(event, context):\n    return {'ok': True\n" });
    const rt = await generic(fn);
    const failed = await rt.specialize(specializeBody("handler.main"));
    expect(failed.status).toBe(422);
    const problem = JSON.parse(failed.text) as { error: string; logs: string[] };
    expect(problem.error).toContain("handler.py");
    expect(problem.logs[0]).toBe(`funcd: ${problem.error}`);
    expect(problem.logs.join("\n")).toContain("SyntaxError");
    expect(await rt.exited).toBe(3);
    expect(rt.stderr()).toContain("SyntaxError");
  });

  it("an invalid FUNCD_* value answers 422 and the process exits with code 1", async () => {
    const rt = await generic(await artifact({ "handler.py": "def main(event, context):\n    return 1\n" }));
    const failed = await rt.specialize(specializeBody("handler.main", { handlerStyle: "sideways" }));
    expect(failed.status).toBe(422);
    expect(JSON.parse(failed.text)).toHaveProperty("error", expect.stringContaining('"sideways"'));
    expect(await rt.exited).toBe(1);
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

  it("specializes a Python pool instance, and refuses a function that sets PYTHONPATH (read only at boot)", async () => {
    const driver = newDriver();
    const poolId = `pool-py-${++counter}`;
    await driver.startGeneric("python3", { poolId, memoryMb: 128 });
    const files = { "handler.py": PY_WHOAMI };
    const booting = await specOf("pypath", files, {
      runtime: "python3",
      env: { PYTHONPATH: "/function/lib" },
    });
    await expect(driver.specialize(poolId, booting)).rejects.toMatchObject({
      code: "FUNCTION_UNAVAILABLE",
      extra: { refused: true },
    });
    const spec = await specOf("pyplain", files, { runtime: "python3", env: { GREETING: "hi" } });
    const info = await driver.specialize(poolId, spec);
    const { uid, env } = JSON.parse((await invokeInstance(info.address)).text) as {
      uid: number;
      env: Record<string, string>;
    };
    expect(env).toMatchObject({ GREETING: "hi", FUNCD_FUNCTION_NAME: "pyplain", FUNCD_RUNTIME: "python3" });
    if (isRoot()) expect(uid).toBeGreaterThanOrEqual(poolUidRange().first);
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

const PY_WHOAMI =
  "import os\ndef main(event, context):\n    return {'uid': os.getuid(), 'env': dict(os.environ)}\n";

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

/** Ids of the instances (generic or not) whose process still runs, from their run dirs' pid files. */
async function liveInstances(daemon: Daemon): Promise<string[]> {
  const runDir = join(daemon.dataDir, "run");
  const live: string[] = [];
  for (const id of await readdir(runDir).catch(() => [])) {
    const pid = Number((await readFile(join(runDir, id, "pid"), "utf8").catch(() => "")).split(" ")[0]);
    if (pid > 0 && (await isRunning(pid))) live.push(id);
  }
  return live.sort();
}

const PY_ENV_AND_PATH = [
  "import os, sys",
  "def main(event, context):",
  "    return {'uid': os.getuid(), 'env': dict(os.environ), 'path': sys.path}",
  "",
].join("\n");

describe("a daemon with the warm pool, for Python", () => {
  it("serves a cold start from a specialized pool instance as a normal start would, with the memory limit; a handler that does not load leaves nothing running", async () => {
    const daemon = await startDaemon({ env: { FUNCD_POOL_SIZE: "2" } });
    onTestFinished(async () => {
      await daemon.stop();
      expect(processesMentioning(daemon.dataDir)).toEqual([]);
      removeDir(daemon.dataDir);
    });
    const deploy = async (
      name: string,
      files: Record<string, string>,
      extra: Record<string, unknown> = {},
    ) => {
      const res = await daemon.api("PUT", `/api/v1/functions/${name}`, {
        runtime: "python3",
        files,
        scale: { idleTimeout: "200ms" },
        ...extra,
      });
      expect(res.status, res.text).toBe(201);
      await waitForZero(daemon, name);
      await eventually(
        async () => ((await poolReady(daemon, "python3")) === 2 ? true : undefined),
        "two ready python3 pool instances",
      );
    };
    const env = { GREETING: "hello from the env" };
    await deploy("pypooled", { "handler.py": PY_ENV_AND_PATH }, { env });
    const cold = await daemon.call("GET", "/function/pypooled");
    expect(cold.status).toBe(200);
    type Seen = { uid: number; env: Record<string, string>; path: string[] };
    const pooled = cold.json<Seen>();
    expect(pooled.env).toMatchObject({
      GREETING: "hello from the env",
      FUNCD_FUNCTION_NAME: "pypooled",
      FUNCD_MEMORY_LIMIT_MB: "256",
      FUNCD_RUNTIME: "python3",
    });
    expect(pooled.env).not.toHaveProperty("FUNCD_GENERIC");
    if (isRoot()) expect(pooled.uid).toBeGreaterThanOrEqual(poolUidRange().first);
    await eventually(
      async () => ((await logText(daemon, "pypooled")).includes("(from the warm pool)") ? true : undefined),
      'the "from the warm pool" line in the function\'s logs',
    );
    expect((await daemon.call("GET", "/metrics")).text).toMatch(
      /funcd_pool_takes_total\{runtime="python3",outcome="specialized"\} [1-9]/,
    );

    // The same function started normally (its memory limit is not the pool's) sees the same, but for
    // what names the function and its instance.
    await deploy("pynormal", { "handler.py": PY_ENV_AND_PATH }, { env, memory: 128 });
    const normal = (await daemon.call("GET", "/function/pynormal")).json<Seen>();
    expect(await logText(daemon, "pynormal")).not.toContain("warm pool");
    const comparable = (seen: Seen) => {
      const dir = seen.env.FUNCD_FUNCTION_DIR ?? "";
      const {
        FUNCD_FUNCTION_NAME,
        FUNCD_REVISION,
        FUNCD_MEMORY_LIMIT_MB,
        FUNCD_LISTEN,
        FUNCD_FUNCTION_DIR,
        ...rest
      } = seen.env;
      return { env: rest, path: seen.path.map((entry) => entry.replace(dir, "<function>")) };
    };
    expect(comparable(pooled)).toEqual(comparable(normal));

    // The memory limit applies: past 256 MiB the specialized instance is OOMKilled.
    const hog =
      "keep = []\ndef main(event, context):\n    while True:\n        keep.append(b'x' * (16 << 20))\n";
    await deploy("pyhog", { "handler.py": hog });
    expect((await daemon.call("GET", "/function/pyhog")).status).toBe(502);
    const hogLogs = await eventually(async () => {
      const text = await logText(daemon, "pyhog");
      return text.includes("OOMKilled") ? text : undefined;
    }, "the OOMKilled line");
    expect(hogLogs).toContain("(from the warm pool)");
    await waitForZero(daemon, "pyhog");

    // A handler that does not load is a failed deploy, pool or not, and the instance it was loaded
    // into is gone: what runs afterwards is the refilled pool and nothing else.
    const before = await eventually(async () => {
      const ids = await liveInstances(daemon);
      return (await poolReady(daemon, "python3")) === 2 && ids.length === 2 ? ids : undefined;
    }, "a full pool and nothing else running");
    const broken = await daemon.api("PUT", "/api/v1/functions/pybroken", {
      runtime: "python3",
      files: { "handler.py": "def main(event, context):\n    return {'ok': True\n" },
    });
    expect(broken.status).toBe(422);
    const problem = broken.json<{ code: string; logs: string[] }>();
    expect(problem.code).toBe("HANDLER_LOAD_FAILED");
    expect(problem.logs.join("\n")).toContain("SyntaxError");
    const after = await eventually(async () => {
      const ids = await liveInstances(daemon);
      const full = (await poolReady(daemon, "python3")) === 2;
      return full && ids.length === 2 && !ids.every((id) => before.includes(id)) ? ids : undefined;
    }, "the pool refilled, with nothing else running");
    // One pool instance took the broken handler and is gone; the other is still there, beside its refill.
    expect(after.filter((id) => before.includes(id))).toHaveLength(1);
    expect(after.every((id) => id.startsWith("pool-python3-"))).toBe(true);
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
