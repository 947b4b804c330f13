/**
 * A real `funcd server` for one benchmark: a free loopback port, its own temp data dir, the control API
 * with its token, and a stop() that leaves no process behind.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { request } from "undici";
import { memoryOf, processesMentioning, spawnGroup, stopGroup } from "./procs.mjs";

export const ROOT = path.resolve(import.meta.dirname, "..", "..");
const BIN = path.join(ROOT, "bin", "funcd.js");

/** Data dirs of daemons not yet stopped, for `killDaemonLeftovers()` on an interrupt. */
const activeDataDirs = new Set();

/**
 * The environment a clean machine would give: nothing of the caller's FUNCD_*, no NODE_OPTIONS, and no
 * NODE_EXTRA_CA_CERTS (which this machine sets and which costs every Node start several milliseconds).
 */
export function cleanEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith("FUNCD_") || k === "NODE_EXTRA_CA_CERTS" || k === "NODE_OPTIONS") continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

/**
 * What the daemon's `sandbox: auto` will pick here, for the report: bubblewrap when it is on PATH (the
 * daemon checks it works; it logs a warning when it falls back), else the unprivileged-uid fallback.
 */
export function sandboxMode() {
  const bwrap = ["/usr/bin/bwrap", "/usr/local/bin/bwrap", "/bin/bwrap"].find((p) => existsSync(p));
  const uid = process.getuid?.() === 0 ? ", per-function uid" : "";
  return bwrap
    ? `bwrap (${bwrap})${uid}`
    : `none (bwrap not installed: own process group + RSS watchdog${uid})`;
}

/** A failed API call, with the daemon's problem+json detail in the message. */
export class ApiError extends Error {
  constructor(method, apiPath, status, body) {
    let detail = body;
    try {
      const problem = JSON.parse(body);
      detail = [problem.title, problem.detail].filter(Boolean).join(": ") || body;
    } catch {
      // Not JSON: keep the text.
    }
    super(`${method} ${apiPath} answered ${status}: ${detail.slice(0, 2000)}`);
    this.status = status;
  }
}

/**
 * Starts a daemon. `nodeArgs` go before the script (e.g. `--cpu-prof`), `env` adds FUNCD_* settings,
 * `onStdout` gets every chunk of its stdout (the pino log). Always pair with `stop()` in a finally block.
 */
export async function startDaemon({ nodeArgs = [], env = {}, startTimeoutMs = 30_000, onStdout } = {}) {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "funcd-bench-"));
  activeDataDirs.add(dataDir);
  let stdout = "";
  let listening = false;
  let announced;
  const url = new Promise((resolve) => {
    announced = resolve;
  });
  const child = spawnGroup(
    process.execPath,
    [...nodeArgs, BIN, "server", "--host", "127.0.0.1", "--port", "0", "--data-dir", dataDir],
    {
      cwd: ROOT,
      env: cleanEnv({ FUNCD_LOG_LEVEL: "warn", ...env }),
      onStdout: (d) => {
        onStdout?.(d);
        if (listening) return; // the rest is the log: `onStdout` may want it, the search for the URL not
        stdout += d;
        const m = /^funcd (http:\/\/\S+)$/m.exec(stdout);
        const admin = /^ {2}admin +(http:\/\/\S+)/m.exec(stdout);
        if (m && admin) {
          listening = true;
          announced([m[1], admin[1]]);
        }
      },
    },
  );
  const daemon = {
    pid: child.pid,
    dataDir,
    url: "",
    /** The admin listener (console, API, docs); the API answers Bearer clients on `url` too. */
    adminUrl: "",
    token: "",
    output: () => child.output(),
    /** Resolves when the daemon process has exited. */
    exited: child.exited,
    stop: () => stopDaemon(child, dataDir),
  };
  try {
    const started = await Promise.race([
      url,
      child.exited.then((code) => {
        throw new Error(`funcd server exited (${code}) before listening:\n${child.output()}`);
      }),
      sleep(startTimeoutMs).then(() => {
        throw new Error(`funcd server did not listen within ${startTimeoutMs} ms:\n${child.output()}`);
      }),
    ]);
    [daemon.url, daemon.adminUrl] = started;
    daemon.token = readFileSync(path.join(dataDir, "token"), "utf8").trim();
  } catch (err) {
    await daemon.stop();
    throw err;
  }
  return Object.assign(daemon, apiOf(daemon));
}

/**
 * SIGTERM lets the daemon stop its instances itself; whatever still mentions the data dir afterwards (an
 * instance of a daemon that had to be SIGKILLed) is killed here, and reported so a leak gets noticed.
 */
async function stopDaemon(child, dataDir) {
  await stopGroup(child, { signal: "SIGTERM", graceMs: 15_000 });
  const leftovers = killMentioning(dataDir);
  if (leftovers.length > 0) {
    process.stderr.write(`  warning: killed ${leftovers.length} process(es) the daemon left running\n`);
  }
  rmSync(dataDir, { recursive: true, force: true, maxRetries: 3 });
  activeDataDirs.delete(dataDir);
  return { leftovers: leftovers.length };
}

/** SIGKILLs every process whose command line mentions `needle`; returns their pids. */
function killMentioning(needle) {
  const pids = processesMentioning(needle);
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

/**
 * For an interrupted run: kills the instances of daemons that were not stopped (instances run in their
 * own sessions, so killing the daemon's process group does not reach them) and removes their data dirs.
 */
export function killDaemonLeftovers() {
  for (const dir of activeDataDirs) {
    killMentioning(dir);
    rmSync(dir, { recursive: true, force: true });
  }
  activeDataDirs.clear();
}

function apiOf(daemon) {
  const api = async (method, apiPath, body, { timeoutMs = 600_000 } = {}) => {
    const res = await request(daemon.url + apiPath, {
      method,
      headers: {
        authorization: `Bearer ${daemon.token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? null : JSON.stringify(body),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    const text = await res.body.text();
    if (res.statusCode >= 400) throw new ApiError(method, apiPath, res.statusCode, text);
    return text ? JSON.parse(text) : undefined;
  };
  return {
    api,
    /** PUT /api/v1/functions/<name>: create or update, resolves when the new revision serves. */
    deploy: (name, spec) => api("PUT", `/api/v1/functions/${name}`, spec),
    describe: (name) => api("GET", `/api/v1/functions/${name}`),
    list: async () => (await api("GET", "/api/v1/functions")).items,
    /** Calls an invocation path; resolves with the status and the time to the response head (ms). */
    async invoke(urlPath) {
      const started = performance.now();
      const res = await request(daemon.url + urlPath);
      const firstByteMs = performance.now() - started;
      const text = await res.body.text();
      return { status: res.statusCode, text, firstByteMs };
    },
    /** Polls the function until it runs no instance (so the next request is a cold start). */
    async waitForZero(name, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const view = await api("GET", `/api/v1/functions/${name}`);
        if (view.instances.length === 0) return;
        if (Date.now() > deadline) {
          throw new Error(
            `function "${name}" still runs ${view.instances.length} instance(s) after ${timeoutMs} ms`,
          );
        }
        await sleep(50);
      }
    },
    /**
     * Polls until the function runs exactly `count` instances, all ready and idle, and returns them. Used
     * after each load run: wrk ends a run by closing connections mid-request, which the gateway currently
     * takes for a broken instance and replaces — measuring before the replacement is up would time it.
     */
    async settle(name, { count = 1, timeoutMs = 20_000 } = {}) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const { instances } = await api("GET", `/api/v1/functions/${name}`);
        if (instances.length === count && instances.every((i) => i.state === "ready" && i.inFlight === 0)) {
          return instances;
        }
        if (Date.now() > deadline) {
          throw new Error(
            `function "${name}" did not settle to ${count} idle instance(s): ${JSON.stringify(instances)}`,
          );
        }
        await sleep(50);
      }
    },
    /** Polls the function list until `count(instances of all functions)` satisfies `test`. */
    async waitForInstances(test, timeoutMs = 120_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const items = (await api("GET", "/api/v1/functions")).items;
        const total = items.reduce((n, f) => n + f.instances.length, 0);
        if (test(total)) return items;
        if (Date.now() > deadline)
          throw new Error(`instances did not settle in ${timeoutMs} ms (now ${total})`);
        await sleep(500);
      }
    },
    /** The daemon's own memory (not its instances'). */
    memory: () => memoryOf(daemon.pid),
  };
}

/**
 * Runs `work(daemon)` against a fresh daemon and always stops it, also when `work` throws.
 */
export async function withDaemon(options, work) {
  const daemon = await startDaemon(options);
  try {
    return await work(daemon);
  } finally {
    await daemon.stop();
  }
}

/** Runs `tasks` (functions returning promises) with at most `parallel` in flight; results in order. */
export async function inBatches(tasks, parallel) {
  const results = new Array(tasks.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (next < tasks.length && !failed) {
      const i = next++;
      try {
        results[i] = await tasks[i]();
      } catch (err) {
        failed = true; // the other workers stop taking tasks
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, tasks.length) }, worker));
  return results;
}
