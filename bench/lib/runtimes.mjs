/**
 * The runtimes the benchmarks deploy, and their bare servers as baselines: the runtime's own server,
 * started by hand without funcd (no sandbox, no daemon, TCP instead of a unix socket).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { request } from "undici";
import { ROOT } from "./daemon.mjs";
import { spawnGroup, stopGroup } from "./procs.mjs";

/** The hello functions, per runtime; `variant` makes the code (and so the revision) unique. */
export const RUNTIMES = {
  node: {
    label: "Node",
    runtime: "nodejs20",
    server: path.join(ROOT, "templates", "nodejs20", "server.mjs"),
    command: (server) => [process.execPath, server],
    files: (variant = "") => ({ "handler.js": `module.exports = { main: () => "hello${variant}" };\n` }),
  },
  python: {
    label: "Python",
    runtime: "python3",
    server: path.join(ROOT, "templates", "python3", "server.py"),
    command: (server) => ["/usr/bin/python3", server],
    files: (variant = "") => ({ "handler.py": `def main(event, context):\n    return "hello${variant}"\n` }),
  },
};

/**
 * Whether the runtime's template is in this checkout. A colleague is adding Python: until its folder is
 * there the Python rows are skipped with a note (the daemon may still refuse it — that is reported).
 */
export function runtimeAvailable(key) {
  const rt = RUNTIMES[key];
  if (!existsSync(rt.server)) return { ok: false, why: `${path.relative(ROOT, rt.server)} does not exist` };
  if (key === "python" && !existsSync("/usr/bin/python3"))
    return { ok: false, why: "/usr/bin/python3 is missing" };
  return { ok: true };
}

/** A loopback TCP port nobody listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** A temp folder holding the function's files; `cleanup()` removes it. */
export function functionDir(files) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "funcd-bench-fn-"));
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Starts the bare runtime server on `port` and resolves once it has answered a request with 200: the
 * floor funcd's cold start is compared to. The environment is explicit (the same few variables funcd's
 * driver sets), never the caller's, so NODE_EXTRA_CA_CERTS and friends cost nothing here either.
 */
export async function startBareRuntime(key, dir, { port, timeoutMs = 15_000 } = {}) {
  const rt = RUNTIMES[key];
  const listenPort = port ?? (await freePort());
  const [command, ...args] = rt.command(rt.server);
  const started = performance.now();
  const child = spawnGroup(command, args, {
    cwd: dir,
    env: {
      PATH: "/usr/local/bin:/usr/bin:/bin",
      HOME: "/tmp",
      NODE_ENV: "production",
      FUNCD_LISTEN: `127.0.0.1:${listenPort}`,
      FUNCD_FUNCTION_DIR: dir,
      FUNCD_RUNTIME: rt.runtime,
    },
  });
  const url = `http://127.0.0.1:${listenPort}/`;
  const stop = () => stopGroup(child, { signal: "SIGKILL", graceMs: 2_000 });
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${rt.label} runtime exited: ${child.output()}`);
      if (performance.now() - started > timeoutMs) throw new Error(`${rt.label} runtime did not answer`);
      let res;
      try {
        // A new connection per attempt: a refused connect fails in microseconds, so polling every
        // millisecond measures the start-up to within about that.
        res = await request(url, { reset: true });
      } catch {
        await sleep(1);
        continue;
      }
      await res.body.text();
      if (res.statusCode !== 200) throw new Error(`${rt.label} runtime answered ${res.statusCode}`);
      break;
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { child, url, port: listenPort, startMs: performance.now() - started, stop };
}

/** Spawn-to-first-answer times of the bare runtime, `runs` times (after one unmeasured start). */
export async function bareStartTimes(key, runs) {
  const fn = functionDir(RUNTIMES[key].files());
  const times = [];
  try {
    for (let i = 0; i <= runs; i++) {
      const bare = await startBareRuntime(key, fn.dir);
      await bare.stop();
      if (i > 0) times.push(bare.startMs); // the first start warms the page cache
    }
  } finally {
    fn.cleanup();
  }
  return times;
}
