/**
 * The driver conformance suite: what every `Driver` must do, as Vitest cases. Each driver's
 * integration test calls `runDriverConformance` once; a gap is declared in `skip` with its reason, so
 * it shows in the test report instead of hiding in a driver's own tests.
 *
 * It needs a runtime that follows docs/runtime-contract.md (default `nodejs20`) and handlers written in
 * CommonJS for it.
 */
import { chmod } from "node:fs/promises";
import { join } from "node:path";
import { Client } from "undici";
import { describe, expect, it, onTestFinished, type TestContext } from "vitest";
import type {
  Driver,
  DriverEvent,
  InstanceAddress,
  InstanceInfo,
  InstanceSpec,
  LogLine,
  LogSink,
} from "./driver.js";
import { isRunning, processTree } from "./process/proctree.js";

/** The cases of the suite, for `skip`. */
export type CaseName =
  | "hello"
  | "handlerLoadFailure"
  | "readyTimeout"
  | "abortStart"
  | "stopAfterGrace"
  | "stopGraceful"
  | "crash"
  | "oom"
  | "logs"
  | "env"
  | "list"
  | "dispose"
  | "reconcile"
  | "poolSpecialize"
  | "poolEnvAndLimits"
  | "poolLoadFailure"
  | "poolIsolation";

export interface DriverConformanceOptions {
  /** Shown in the suite's title, e.g. `process (bwrap)`. */
  name: string;
  /**
   * A new driver sending instance output to `logSink`. Drivers made by one suite must share their
   * state (run dir, labels), so that a second driver can reconcile what the first one left.
   */
  newDriver: (logSink: LogSink) => Promise<Driver> | Driver;
  /** Writes a function's files somewhere the driver can run them from; returns the artifact dir. */
  prepareArtifact: (files: Record<string, string>) => Promise<string>;
  /** Default `nodejs20`. */
  runtime?: string;
  /**
   * How to tell that an instance is gone. Called while `info` runs, it returns a check listing what of
   * the instance still runs or exists (empty: nothing). Default: the instance's local process tree, for
   * drivers that report a pid (Linux); a driver without pids (containers) says how to look.
   */
  remains?: (info: InstanceInfo) => Promise<() => Promise<string[]>>;
  /**
   * The driver's `reconcile()` adopts a healthy instance a previous driver left (lists it with
   * `adopted: true`, keeps it serving) instead of removing it. Default false: removed.
   */
  adopts?: boolean;
  /**
   * Variables the instance's environment may hold besides the function's env, the FUNCD_* contract
   * and PATH/HOME/NODE_ENV/PWD/HOSTNAME — e.g. the ENV of a container image (`NODE_VERSION`). Never
   * the daemon's.
   */
  ambientEnv?: string[];
  /**
   * Cases this driver cannot pass yet, each with the reason. The pool cases (`pool*`) skip themselves
   * for a driver without the optional `startGeneric` and `specialize`.
   */
  skip?: Partial<Record<CaseName, string>>;
  /**
   * Extra time a cluster driver gets on top of the cases' 5 s bounds for giving up a start and for a
   * stop: its starts push an image and wait for a scheduler, its stops go through a manager and a node's
   * agent. Default 0.
   */
  slowerByMs?: number;
}

/** Handlers the cases use (CommonJS, so they need no package.json). */
const HANDLERS = {
  hello: `exports.main = async (event, context) => "hello from " + context["function-name"];\n`,
  syntaxError: `exports.main = async (event) => {\n  return (1 +;\n};\n`,
  ignoresTerm: [
    `exports.main = async () => {`,
    `  process.removeAllListeners("SIGTERM");`,
    `  process.on("SIGTERM", () => console.log("ignoring SIGTERM"));`,
    `  return "armed";`,
    `};`,
  ].join("\n"),
  crash: [
    `exports.main = async () => {`,
    `  console.log("about to crash");`,
    `  setTimeout(() => { throw new Error("boom from the handler"); }, 20);`,
    `  return "ok";`,
    `};`,
  ].join("\n"),
  // Filled buffers, so the pages are really touched (and charged), not just reserved.
  hog: [
    `const keep = [];`,
    `exports.main = async () => {`,
    `  for (let i = 0; i < 200; i++) keep.push(Buffer.alloc(1024 * 1024, i));`,
    `  return "survived with " + keep.length + " MiB";`,
    `};`,
  ].join("\n"),
  logs: [
    `exports.main = async () => {`,
    `  console.log("a line from the handler");`,
    `  console.error("an error line from the handler");`,
    `  return "logged";`,
    `};`,
  ].join("\n"),
  env: `exports.main = async () => ({ ...process.env });\n`,
  /** Says something while its module loads, then greets. */
  loudHello: [
    `console.log("module of " + process.env.FUNCD_FUNCTION_NAME + " loading");`,
    `exports.main = async (event, context) => "hello from " + context["function-name"];`,
  ].join("\n"),
  /** One file system operation given as JSON, and its outcome. */
  fsProbe: [
    `const fs = require("node:fs");`,
    `exports.main = async (event) => {`,
    `  const { op, path } = event.data;`,
    `  try {`,
    `    if (op === "read") return { ok: true, result: fs.readFileSync(path, "utf8") };`,
    `    if (op === "whoami") return { ok: true, result: { uid: process.getuid(), gid: process.getgid(), functionDir: process.env.FUNCD_FUNCTION_DIR } };`,
    `    return { ok: false, code: "BAD_OP" };`,
    `  } catch (err) {`,
    `    return { ok: false, code: err.code };`,
    `  }`,
    `};`,
  ].join("\n"),
  /** ESM, for a top-level await that keeps the runtime from listening. */
  slowStart: `await new Promise((resolve) => setTimeout(resolve, 30_000));\nexport const main = async () => "late";\n`,
};

/** Variables a runtime environment may hold besides the function's env and the FUNCD_* contract. */
const AMBIENT_ENV = new Set(["PATH", "HOME", "NODE_ENV", "PWD", "HOSTNAME"]);

const TITLES: Record<CaseName, string> = {
  hello: "starts an instance that answers over its address",
  handlerLoadFailure: "start() rejects with HANDLER_LOAD_FAILED naming the file, and leaves nothing running",
  readyTimeout: "start() gives up after readyTimeoutMs with FUNCTION_UNAVAILABLE and leaves nothing running",
  abortStart: "start() rejects when its signal aborts, and leaves nothing running",
  stopAfterGrace: "stop() kills an instance that ignores SIGTERM after the grace period",
  stopGraceful: "stop() ends a well-behaved instance without waiting out the grace period",
  crash: 'a crash emits an exit event with reason "crashed" and the last log lines',
  oom: 'an instance over its memory limit is killed and reported as "OOMKilled"',
  logs: "output reaches the log sink tagged with the request id",
  env: "the instance's env holds only the function's env and the contract variables",
  list: "list() reflects started and stopped instances",
  dispose: "dispose() leaves no process behind",
  reconcile:
    "reconcile() removes (or, if the driver adopts, takes over) an instance left by a previous driver",
  poolSpecialize: "a generic instance specializes into the function and answers",
  poolEnvAndLimits: "specialization applies the function's env and memory limit",
  poolLoadFailure:
    "a handler that fails to load during specialization is reported as HANDLER_LOAD_FAILED and leaves nothing running",
  poolIsolation:
    "specialized instances of two functions have different uids and cannot read each other's files",
};

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** One request to an instance, as the gateway sends it. */
export async function invokeInstance(
  address: InstanceAddress,
  request: { path?: string; method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Reply> {
  const client =
    "socketPath" in address
      ? new Client("http://localhost", { socketPath: address.socketPath })
      : new Client(`http://${address.host}:${address.port}`);
  try {
    const res = await client.request({
      path: request.path ?? "/",
      method: (request.method ?? (request.body === undefined ? "GET" : "POST")) as "GET",
      headers: { "x-funcd-invoke": "1", ...request.headers },
      ...(request.body === undefined ? {} : { body: request.body }),
      headersTimeout: 15_000,
      bodyTimeout: 15_000,
    });
    return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
  } finally {
    await client.close().catch(() => undefined);
  }
}

/** Polls `check` until it returns a value other than undefined. */
async function eventually<T>(check: () => T | undefined, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The default `remains`: the instance's process tree, where the driver reports a local pid (Linux). */
async function localProcesses(info: InstanceInfo): Promise<() => Promise<string[]>> {
  if (info.pid === undefined || process.platform !== "linux") return async () => [];
  const pids = await processTree(info.pid);
  return async () => (await stillRunning(pids)).map((pid) => `process ${pid}`);
}

async function stillRunning(pids: number[]): Promise<number[]> {
  const running = await Promise.all(pids.map(async (pid) => ((await isRunning(pid)) ? pid : undefined)));
  return running.filter((pid): pid is number => pid !== undefined);
}

/** A start (or specialization) of the syntax-error handler rejects with HANDLER_LOAD_FAILED and its output. */
async function expectSyntaxErrorFailure(start: Promise<unknown>): Promise<void> {
  const failure = await start.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(failure).toMatchObject({ code: "HANDLER_LOAD_FAILED" });
  expect((failure as Error).message).toContain("handler.js");
  expect((failure as { extra: { logs: string[] } }).extra.logs.join("\n")).toContain("SyntaxError");
}

/** Registers the conformance cases for one driver. */
export function runDriverConformance(options: DriverConformanceOptions): void {
  const runtime = options.runtime ?? "nodejs20";
  const remains = options.remains ?? localProcesses;
  const ambientEnv = new Set([...AMBIENT_ENV, ...(options.ambientEnv ?? [])]);
  /** What of all `infos` is left. */
  const leftOf = async (checks: (() => Promise<string[]>)[]) =>
    (await Promise.all(checks.map((check) => check()))).flat();
  let counter = 0;

  /** A driver for the current case, disposed when the case ends; with its log lines and events. */
  async function setup() {
    const logs: LogLine[] = [];
    const events: DriverEvent[] = [];
    const driver = await options.newDriver((line) => logs.push(line));
    const unsubscribe = driver.onEvent((event) => events.push(event));
    onTestFinished(async () => {
      unsubscribe();
      await driver.dispose();
    });
    return { driver, logs, events };
  }

  async function specFor(
    functionName: string,
    files: Record<string, string>,
    overrides: Partial<InstanceSpec> = {},
  ): Promise<InstanceSpec> {
    counter++;
    return {
      instanceId: `${functionName}-${process.pid}-${counter}`,
      functionName,
      revisionId: `rev-${counter}`,
      runtime,
      artifactDir: await options.prepareArtifact(files),
      handler: "handler.main",
      env: {},
      memoryMb: 128,
      timeoutMs: 10_000,
      ...overrides,
    };
  }

  const slack = options.slowerByMs ?? 0;
  const test = (name: CaseName, fn: (ctx: TestContext) => Promise<void>) => {
    const reason = options.skip?.[name];
    if (reason === undefined) it(TITLES[name], fn);
    else it.skip(`${TITLES[name]} (skipped: ${reason})`, fn);
  };

  /** Whether this suite's driver has the optional pool members (asked once, of a throwaway driver). */
  let poolCapable: Promise<boolean> | undefined;
  const hasPool = () => {
    poolCapable ??= (async () => {
      const probe = await options.newDriver(() => undefined);
      const capable = typeof probe.startGeneric === "function" && typeof probe.specialize === "function";
      await probe.dispose();
      return capable;
    })();
    return poolCapable;
  };

  /** A pool case: skipped for a driver without a pool, else given the driver's pool members. */
  const poolTest = (
    name: CaseName,
    fn: (
      pool: Awaited<ReturnType<typeof setup>> & {
        startGeneric: NonNullable<Driver["startGeneric"]>;
        specialize: NonNullable<Driver["specialize"]>;
        nextPoolId: () => string;
      },
    ) => Promise<void>,
  ) =>
    test(name, async (ctx) => {
      if (!(await hasPool())) {
        ctx.skip("the driver has no warm pool (no startGeneric/specialize)");
        return;
      }
      const env = await setup();
      const { driver } = env;
      if (driver.startGeneric === undefined || driver.specialize === undefined)
        throw new Error("unreachable");
      await fn({
        ...env,
        startGeneric: driver.startGeneric.bind(driver),
        specialize: driver.specialize.bind(driver),
        nextPoolId: () => `pool-${process.pid}-${++counter}`,
      });
    });

  describe(`driver conformance: ${options.name}`, () => {
    test("hello", async () => {
      const { driver } = await setup();
      const spec = await specFor("hello", { "handler.js": HANDLERS.hello });
      const info = await driver.start(spec);
      expect(info).toMatchObject({ instanceId: spec.instanceId, functionName: "hello", state: "ready" });
      const reply = await invokeInstance(info.address);
      expect(reply.status).toBe(200);
      expect(reply.text).toBe("hello from hello");
      await driver.stop(spec.instanceId);
    });

    test("handlerLoadFailure", async () => {
      const { driver } = await setup();
      const spec = await specFor("broken", { "handler.js": HANDLERS.syntaxError });
      await expectSyntaxErrorFailure(driver.start(spec));
      expect(driver.list()).toEqual([]);
    });

    test("readyTimeout", async () => {
      const { driver } = await setup();
      const spec = await specFor("sleepy", { "handler.mjs": HANDLERS.slowStart });
      const began = Date.now();
      await expect(driver.start(spec, { readyTimeoutMs: 700 })).rejects.toMatchObject({
        code: "FUNCTION_UNAVAILABLE",
      });
      expect(Date.now() - began).toBeLessThan(5_000 + slack);
      expect(driver.list()).toEqual([]);
    });

    test("abortStart", async () => {
      const { driver } = await setup();
      const spec = await specFor("aborted", { "handler.mjs": HANDLERS.slowStart });
      const reason = new Error("the caller gave up");
      const controller = new AbortController();
      setTimeout(() => controller.abort(reason), 300);
      const began = Date.now();
      await expect(driver.start(spec, { signal: controller.signal })).rejects.toBe(reason);
      expect(Date.now() - began).toBeLessThan(5_000 + slack);
      expect(driver.list()).toEqual([]);
    });

    test("stopAfterGrace", async () => {
      const { driver, logs } = await setup();
      const spec = await specFor("stubborn", { "handler.js": HANDLERS.ignoresTerm });
      const info = await driver.start(spec);
      expect((await invokeInstance(info.address)).text).toBe("armed");
      const left = await remains(info);
      const began = Date.now();
      await driver.stop(spec.instanceId, { graceMs: 800 });
      const took = Date.now() - began;
      expect(took).toBeGreaterThanOrEqual(700);
      expect(took).toBeLessThan(5_000 + slack);
      // SIGTERM came first and reached the runtime; only then the kill.
      expect(logs.some((line) => line.text.includes("ignoring SIGTERM"))).toBe(true);
      expect(driver.list()).toEqual([]);
      expect(await left()).toEqual([]);
    });

    test("stopGraceful", async () => {
      const { driver, events } = await setup();
      const spec = await specFor("polite", { "handler.js": HANDLERS.hello });
      const info = await driver.start(spec);
      const left = await remains(info);
      const began = Date.now();
      await driver.stop(spec.instanceId, { graceMs: 20_000 });
      expect(Date.now() - began).toBeLessThan(5_000 + slack);
      expect(await left()).toEqual([]);
      // A requested stop is not news.
      expect(events).toEqual([]);
    });

    test("crash", async () => {
      const { driver, events } = await setup();
      const spec = await specFor("crashy", { "handler.js": HANDLERS.crash });
      const info = await driver.start(spec);
      expect((await invokeInstance(info.address)).status).toBe(200);
      const event = await eventually(
        () => events.find((e) => e.type === "exit" && e.instanceId === spec.instanceId),
        "the exit event of the crashed instance",
      );
      expect(event).toMatchObject({ type: "exit", functionName: "crashy", exit: { reason: "crashed" } });
      const lines = event.exit.lastLogLines.join("\n");
      expect(lines).toContain("about to crash");
      expect(lines).toContain("boom from the handler");
      expect(driver.list().map((i) => i.instanceId)).not.toContain(spec.instanceId);
    });

    test("oom", async () => {
      const { driver, events } = await setup();
      const spec = await specFor("hog", { "handler.js": HANDLERS.hog }, { memoryMb: 64 });
      const info = await driver.start(spec);
      // The reply may or may not make it out before the kill; the exit event is what counts.
      await invokeInstance(info.address).catch(() => undefined);
      const event = await eventually(
        () => events.find((e) => e.type === "exit" && e.instanceId === spec.instanceId),
        "the exit event of the instance over its memory limit",
      );
      expect(event.exit.reason).toBe("OOMKilled");
      expect(driver.list()).toEqual([]);
    });

    test("logs", async () => {
      const { driver, logs } = await setup();
      const spec = await specFor("chatty", { "handler.js": HANDLERS.logs });
      const info = await driver.start(spec);
      const reply = await invokeInstance(info.address, { headers: { "x-request-id": "req-conformance-1" } });
      expect(reply.text).toBe("logged");
      const out = await eventually(
        () => logs.find((l) => l.text === "a line from the handler"),
        "the handler's stdout line in the log sink",
      );
      expect(out).toMatchObject({
        stream: "stdout",
        requestId: "req-conformance-1",
        functionName: "chatty",
        revisionId: spec.revisionId,
        instanceId: spec.instanceId,
      });
      const err = await eventually(
        () => logs.find((l) => l.text === "an error line from the handler"),
        "the handler's stderr line in the log sink",
      );
      expect(err).toMatchObject({ stream: "stderr", requestId: "req-conformance-1" });
      expect(logs.some((l) => l.text.includes("\x1e") || l.text.includes("\x1f"))).toBe(false);
    });

    test("env", async () => {
      // Make sure the daemon's environment has something that must not leak.
      const saved = {
        extra: process.env.NODE_EXTRA_CA_CERTS,
        secret: process.env.FUNCD_CONFORMANCE_DAEMON_SECRET,
      };
      process.env.NODE_EXTRA_CA_CERTS ??= "/etc/ssl/certs/ca-certificates.crt";
      process.env.FUNCD_CONFORMANCE_DAEMON_SECRET = "must-not-leak";
      onTestFinished(() => {
        if (saved.extra === undefined) delete process.env.NODE_EXTRA_CA_CERTS;
        else process.env.NODE_EXTRA_CA_CERTS = saved.extra;
        if (saved.secret === undefined) delete process.env.FUNCD_CONFORMANCE_DAEMON_SECRET;
        else process.env.FUNCD_CONFORMANCE_DAEMON_SECRET = saved.secret;
      });
      const { driver } = await setup();
      const fnEnv = { GREETING: "hi there", API_URL: "https://example.test" };
      const spec = await specFor(
        "envy",
        { "handler.js": HANDLERS.env },
        { env: fnEnv, memoryMb: 96, timeoutMs: 4_000 },
      );
      const info = await driver.start(spec);
      const env = JSON.parse((await invokeInstance(info.address)).text) as Record<string, string>;
      expect(env).toMatchObject({
        ...fnEnv,
        FUNCD_FUNCTION_NAME: "envy",
        FUNCD_REVISION: spec.revisionId,
        FUNCD_RUNTIME: runtime,
        FUNCD_HANDLER: "handler.main",
        FUNCD_TIMEOUT_MS: "4000",
        FUNCD_MEMORY_LIMIT_MB: "96",
      });
      expect(env.FUNCD_LISTEN).toBeTruthy();
      expect(env.FUNCD_FUNCTION_DIR).toBeTruthy();
      expect(env).not.toHaveProperty("NODE_EXTRA_CA_CERTS");
      expect(env).not.toHaveProperty("FUNCD_CONFORMANCE_DAEMON_SECRET");
      const unexpected = Object.keys(env).filter(
        (key) => !(key in fnEnv) && !key.startsWith("FUNCD_") && !ambientEnv.has(key),
      );
      expect(unexpected).toEqual([]);
    });

    test("list", async () => {
      const { driver } = await setup();
      const [a, b] = await Promise.all([
        specFor("lister", { "handler.js": HANDLERS.hello }),
        specFor("lister", { "handler.js": HANDLERS.hello }),
      ]);
      if (a === undefined || b === undefined) throw new Error("unreachable");
      expect(driver.list()).toEqual([]);
      await Promise.all([driver.start(a), driver.start(b)]);
      const ids = () =>
        driver
          .list()
          .map((i) => i.instanceId)
          .sort();
      expect(ids()).toEqual([a.instanceId, b.instanceId].sort());
      expect(driver.list().every((i) => i.state === "ready" && i.functionName === "lister")).toBe(true);
      await driver.stop(a.instanceId);
      expect(ids()).toEqual([b.instanceId]);
      await driver.stop(b.instanceId);
      expect(driver.list()).toEqual([]);
    });

    test("dispose", async () => {
      const { driver } = await setup();
      const specs = await Promise.all([
        specFor("disposable", { "handler.js": HANDLERS.hello }),
        specFor("disposable", { "handler.js": HANDLERS.ignoresTerm }),
      ]);
      const infos = await Promise.all(specs.map((spec) => driver.start(spec)));
      // One of them will not go quietly.
      await invokeInstance((infos[1] as InstanceInfo).address);
      const left = await Promise.all(infos.map(remains));
      await driver.dispose();
      expect(driver.list()).toEqual([]);
      expect(await leftOf(left)).toEqual([]);
      for (const info of infos) await expect(invokeInstance(info.address)).rejects.toThrow();
    });

    test("reconcile", async () => {
      const first = await options.newDriver(() => undefined);
      // Disposed only when the case ends (or fails): until then it plays the crashed daemon.
      onTestFinished(() => first.dispose());
      const spec = await specFor("leftover", { "handler.js": HANDLERS.hello });
      const info = await first.start(spec);
      const left = await remains(info);
      // `first` is abandoned without dispose(), as a crashed daemon would leave it.
      const { driver: second } = await setup();
      const { removed } = await second.reconcile();
      if (options.adopts) {
        // Still healthy: taken over, serving on, and stopped like any instance of the new driver.
        expect(removed).toBe(0);
        expect(second.list()).toMatchObject([
          {
            instanceId: spec.instanceId,
            functionName: "leftover",
            revisionId: spec.revisionId,
            adopted: true,
          },
        ]);
        expect((await invokeInstance(info.address)).text).toBe("hello from leftover");
        await second.stop(spec.instanceId);
      } else {
        expect(removed).toBeGreaterThanOrEqual(1);
      }
      expect(await left()).toEqual([]);
      await expect(invokeInstance(info.address)).rejects.toThrow();
      expect(second.list()).toEqual([]);
      // Nothing is left for a third look.
      expect((await second.reconcile()).removed).toBe(0);
    });

    poolTest("poolSpecialize", async ({ driver, events, logs, startGeneric, specialize, nextPoolId }) => {
      const poolId = nextPoolId();
      const generic = await startGeneric(runtime, { poolId, memoryMb: 128 });
      expect(generic.poolId).toBe(poolId);
      // Generic instances are the pool's: not listed, not anyone's function.
      expect(driver.list()).toEqual([]);
      const spec = await specFor("pooled", { "handler.js": HANDLERS.loudHello });
      const info = await specialize(poolId, spec);
      expect(info).toMatchObject({
        instanceId: spec.instanceId,
        functionName: "pooled",
        revisionId: spec.revisionId,
        state: "ready",
      });
      if (generic.pid !== undefined) expect(info.pid).toBe(generic.pid);
      expect((await invokeInstance(info.address)).text).toBe("hello from pooled");
      expect(driver.list().map((i) => i.instanceId)).toEqual([spec.instanceId]);
      // What the module printed while loading is the function's output, under its new identity.
      const loaded = await eventually(
        () => logs.find((l) => l.text === "module of pooled loading"),
        "the module's load-time line in the log sink",
      );
      expect(loaded).toMatchObject({ functionName: "pooled", instanceId: spec.instanceId });
      // Specialized once: the pool id is gone.
      await expect(
        specialize(poolId, await specFor("again", { "handler.js": HANDLERS.hello })),
      ).rejects.toThrow();

      // A function with another memory limit is refused, and the generic instance stays usable.
      const otherId = nextPoolId();
      await startGeneric(runtime, { poolId: otherId, memoryMb: 128 });
      const bigger = await specFor("bigger", { "handler.js": HANDLERS.hello }, { memoryMb: 256 });
      await expect(specialize(otherId, bigger)).rejects.toMatchObject({ extra: { refused: true } });
      const fitting = await specFor("fitting", { "handler.js": HANDLERS.hello });
      const second = await specialize(otherId, fitting);
      expect((await invokeInstance(second.address)).text).toBe("hello from fitting");

      await driver.stop(spec.instanceId);
      await driver.stop(fitting.instanceId);
      expect(driver.list()).toEqual([]);
      expect(events).toEqual([]);
    });

    poolTest("poolEnvAndLimits", async ({ driver, events, startGeneric, specialize, nextPoolId }) => {
      const fnEnv = { GREETING: "hi there", API_URL: "https://example.test" };
      const envId = nextPoolId();
      await startGeneric(runtime, { poolId: envId, memoryMb: 96 });
      const spec = await specFor(
        "envy-pooled",
        { "handler.js": HANDLERS.env },
        { env: fnEnv, memoryMb: 96, timeoutMs: 4_000 },
      );
      const info = await specialize(envId, spec);
      const env = JSON.parse((await invokeInstance(info.address)).text) as Record<string, string>;
      expect(env).toMatchObject({
        ...fnEnv,
        FUNCD_FUNCTION_NAME: "envy-pooled",
        FUNCD_REVISION: spec.revisionId,
        FUNCD_RUNTIME: runtime,
        FUNCD_HANDLER: "handler.main",
        FUNCD_TIMEOUT_MS: "4000",
        FUNCD_MEMORY_LIMIT_MB: "96",
      });
      expect(env).not.toHaveProperty("FUNCD_GENERIC");
      const unexpected = Object.keys(env).filter(
        (key) => !(key in fnEnv) && !key.startsWith("FUNCD_") && !ambientEnv.has(key),
      );
      expect(unexpected).toEqual([]);
      await driver.stop(spec.instanceId);

      // The memory limit the generic instance booted with is the function's: past it, OOMKilled.
      const hogId = nextPoolId();
      await startGeneric(runtime, { poolId: hogId, memoryMb: 64 });
      const hog = await specFor("hog-pooled", { "handler.js": HANDLERS.hog }, { memoryMb: 64 });
      const hogInfo = await specialize(hogId, hog);
      await invokeInstance(hogInfo.address).catch(() => undefined);
      const event = await eventually(
        () => events.find((e) => e.type === "exit" && e.instanceId === hog.instanceId),
        "the exit event of the specialized instance over its memory limit",
      );
      expect(event).toMatchObject({ functionName: "hog-pooled", exit: { reason: "OOMKilled" } });
      expect(driver.list()).toEqual([]);
    });

    poolTest("poolLoadFailure", async ({ driver, events, startGeneric, specialize, nextPoolId }) => {
      const poolId = nextPoolId();
      const generic = await startGeneric(runtime, { poolId, memoryMb: 128 });
      const spec = await specFor("broken-pooled", { "handler.js": HANDLERS.syntaxError });
      await expectSyntaxErrorFailure(specialize(poolId, spec));
      expect(driver.list()).toEqual([]);
      if (generic.pid !== undefined && process.platform === "linux") {
        expect(await stillRunning([generic.pid])).toEqual([]);
      }
      // A failed start is news to nobody: no exit event, for the function or the pool.
      expect(events).toEqual([]);
      await expect(
        specialize(poolId, await specFor("late", { "handler.js": HANDLERS.hello })),
      ).rejects.toThrow();
    });

    poolTest("poolIsolation", async ({ startGeneric, specialize, nextPoolId }) => {
      const [aliceId, bobId] = [nextPoolId(), nextPoolId()];
      await Promise.all([
        startGeneric(runtime, { poolId: aliceId, memoryMb: 128 }),
        startGeneric(runtime, { poolId: bobId, memoryMb: 128 }),
      ]);
      const aliceSpec = await specFor("alice-pooled", {
        "handler.js": HANDLERS.fsProbe,
        "private.txt": "alice's data",
      });
      // Readable only through the function's own permissions, not by everyone.
      await chmod(join(aliceSpec.artifactDir, "private.txt"), 0o600);
      const bobSpec = await specFor("bob-pooled", { "handler.js": HANDLERS.fsProbe });
      const [alice, bob] = await Promise.all([specialize(aliceId, aliceSpec), specialize(bobId, bobSpec)]);
      const probe = async (info: InstanceInfo, request: { op: string; path?: string }) => {
        const reply = await invokeInstance(info.address, {
          body: JSON.stringify(request),
          headers: { "content-type": "application/json" },
        });
        expect(reply.status).toBe(200);
        return JSON.parse(reply.text) as { ok: boolean; result?: unknown; code?: string };
      };
      type Who = { uid: number; gid: number; functionDir: string };
      const aliceWho = (await probe(alice, { op: "whoami" })).result as Who;
      const bobWho = (await probe(bob, { op: "whoami" })).result as Who;
      if (process.getuid?.() === 0) {
        // A root daemon runs every instance as an unprivileged uid; pool instances each get their own.
        expect(aliceWho.uid).not.toBe(0);
        expect(bobWho.uid).not.toBe(0);
        expect(aliceWho.uid).not.toBe(bobWho.uid);
        expect(aliceWho.gid).not.toBe(bobWho.gid);
      }
      expect(await probe(alice, { op: "read", path: `${aliceWho.functionDir}/private.txt` })).toEqual({
        ok: true,
        result: "alice's data",
      });
      if (process.getuid?.() === 0) {
        // Neither where alice sees it, nor where the daemon keeps it.
        for (const path of [
          `${aliceWho.functionDir}/private.txt`,
          join(aliceSpec.artifactDir, "private.txt"),
        ]) {
          expect(await probe(bob, { op: "read", path })).toMatchObject({ ok: false });
        }
      }
    });
  });
}
