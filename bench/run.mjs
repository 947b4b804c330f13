#!/usr/bin/env node
// funcd benchmarks: each figure is measured next to a baseline taken in the same run, because absolute
// numbers on a shared 2-core machine drift. Writes bench/results/<date>-<name>.md and .json.
//
//   npm run bench                 # all benchmarks
//   npm run bench -- coldstart    # one of: coldstart, warm
//
// Needs the build (npm install does it) and, for `warm`, wrk (scripts/bench-deps.sh installs it).
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { request } from "undici";

const ROOT = path.resolve(import.meta.dirname, "..");
const RESULTS = path.join(ROOT, "bench", "results");
const HELLO = "module.exports = { main: () => 'hello' };";

/** The environment a clean machine would give: no NODE_EXTRA_CA_CERTS, nothing of the caller's FUNCD_*. */
function cleanEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith("FUNCD_") || k === "NODE_EXTRA_CA_CERTS" || k === "NODE_OPTIONS") continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

function stats(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { n: sorted.length, median: at(0.5), p99: at(0.99), min: sorted[0], max: sorted.at(-1) };
}

const ms = (v) => `${v.toFixed(1)} ms`;

async function startDaemon() {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "funcd-bench-"));
  const child = spawn(
    process.execPath,
    [path.join(ROOT, "bin", "funcd.js"), "server", "--port", "0", "--data-dir", dataDir],
    {
      env: cleanEnv({ FUNCD_LOG_LEVEL: "warn" }),
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  let out = "";
  const url = await new Promise((resolve, reject) => {
    child.stdout.on("data", (d) => {
      out += d;
      const m = /^funcd (http:\/\/\S+)$/m.exec(out);
      if (m) resolve(m[1]);
    });
    child.once("exit", (code) => reject(new Error(`daemon exited ${code}: ${out}`)));
  });
  const token = readFileSync(path.join(dataDir, "token"), "utf8").trim();
  const api = async (method, p, body) => {
    const res = await request(url + p, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: body === undefined ? null : JSON.stringify(body),
    });
    const text = await res.body.text();
    if (res.statusCode >= 400) throw new Error(`${method} ${p}: ${res.statusCode} ${text}`);
    return text ? JSON.parse(text) : undefined;
  };
  return {
    url,
    api,
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Starts the bare runtime server (no funcd) on a TCP port and resolves when it answers. */
async function startBareRuntime(dir, port) {
  const started = performance.now();
  const child = spawn(process.execPath, [path.join(ROOT, "templates", "nodejs20", "server.mjs")], {
    env: { PATH: "/usr/bin:/bin", HOME: "/tmp", FUNCD_LISTEN: `127.0.0.1:${port}`, FUNCD_FUNCTION_DIR: dir },
    stdio: "ignore",
  });
  for (;;) {
    try {
      const res = await request(`http://127.0.0.1:${port}/`);
      await res.body.text();
      return { child, ms: performance.now() - started };
    } catch {
      await sleep(2);
    }
  }
}

async function firstByte(url) {
  const started = performance.now();
  const res = await request(url);
  const elapsed = performance.now() - started;
  await res.body.text();
  if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode}`);
  return elapsed;
}

async function coldstart(runs = 20) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "funcd-bench-fn-"));
  writeFileSync(path.join(dir, "handler.js"), HELLO);
  const bare = [];
  for (let i = 0; i < runs; i++) {
    const { child, ms: t } = await startBareRuntime(dir, 19300 + (i % 50));
    bare.push(t);
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
  }
  const daemon = await startDaemon();
  const cold = [];
  try {
    await daemon.api("PUT", "/api/v1/functions/hello", {
      files: { "handler.js": HELLO },
      scale: { idleTimeout: "200ms" },
    });
    for (let i = 0; i < runs; i++) {
      // Wait until the fleet has scaled the function to zero, so the next request is a cold start.
      for (;;) {
        const view = await daemon.api("GET", "/api/v1/functions/hello");
        if (view.instances.length === 0) break;
        await sleep(100);
      }
      cold.push(await firstByte(`${daemon.url}/function/hello`));
    }
  } finally {
    await daemon.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const b = stats(bare);
  const c = stats(cold);
  return {
    name: "coldstart",
    title: "Cold start of a Node hello function (request at zero instances → first byte)",
    rows: [
      ["bare runtime: spawn until first answer (baseline)", ms(b.median), ms(b.p99), "1.00×"],
      [
        "funcd process driver (bwrap sandbox + cgroup when available)",
        ms(c.median),
        ms(c.p99),
        `${(c.median / b.median).toFixed(2)}×`,
      ],
    ],
    header: ["case", "median", "p99", "vs baseline"],
    raw: { bare, cold },
  };
}

function wrk(url, connections, seconds) {
  const threads = Math.min(2, connections);
  const run = spawnSync(
    "wrk",
    ["-t", String(threads), "-c", String(connections), "-d", `${seconds}s`, "--latency", url],
    {
      encoding: "utf8",
    },
  );
  if (run.error) throw run.error;
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(run.stdout)?.[1] ?? 0);
  const unit = (v, u) => Number(v) * (u === "us" ? 0.001 : u === "s" ? 1000 : 1);
  const p50 = /50%\s+([\d.]+)(us|ms|s)/.exec(run.stdout);
  const p99 = /99%\s+([\d.]+)(us|ms|s)/.exec(run.stdout);
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(run.stdout)?.[1] ?? "0";
  return {
    rps,
    p50: p50 ? unit(p50[1], p50[2]) : Number.NaN,
    p99: p99 ? unit(p99[1], p99[2]) : Number.NaN,
    errors: Number(errors),
  };
}

async function warm(seconds = 10) {
  if (spawnSync("wrk", ["--version"]).error)
    throw new Error("wrk is not installed: run scripts/bench-deps.sh");
  const dir = mkdtempSync(path.join(os.tmpdir(), "funcd-bench-fn-"));
  writeFileSync(path.join(dir, "handler.js"), HELLO);
  const { child } = await startBareRuntime(dir, 19290);
  const daemon = await startDaemon();
  const rows = [];
  const raw = {};
  try {
    await daemon.api("PUT", "/api/v1/functions/hello", { files: { "handler.js": HELLO }, scale: { min: 1 } });
    await firstByte(`${daemon.url}/function/hello`);
    for (const connections of [1, 64]) {
      wrk("http://127.0.0.1:19290/", connections, 2); // warm-up
      const direct = wrk("http://127.0.0.1:19290/", connections, seconds);
      wrk(`${daemon.url}/function/hello`, connections, 2);
      const gateway = wrk(`${daemon.url}/function/hello`, connections, seconds);
      raw[connections] = { direct, gateway };
      rows.push([
        `${connections} conn: runtime direct (baseline)`,
        direct.rps.toFixed(0),
        `${direct.p50.toFixed(2)} ms`,
        `${direct.p99.toFixed(2)} ms`,
        "1.00×",
      ]);
      rows.push([
        `${connections} conn: through the funcd gateway`,
        gateway.rps.toFixed(0),
        `${gateway.p50.toFixed(2)} ms`,
        `${gateway.p99.toFixed(2)} ms`,
        `${(gateway.rps / direct.rps).toFixed(2)}×`,
      ]);
    }
  } finally {
    child.kill("SIGKILL");
    await daemon.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return {
    name: "warm",
    title: `Warm invocations of a Node hello function (wrk, ${seconds} s per row)`,
    header: ["case", "req/s", "p50", "p99", "throughput vs baseline"],
    rows,
    raw,
  };
}

const BENCHMARKS = { coldstart, warm };

const wanted = process.argv.slice(2).filter((a) => !a.startsWith("-"));
const names = wanted.length ? wanted : Object.keys(BENCHMARKS);
mkdirSync(RESULTS, { recursive: true });
const stamp = new Date().toISOString().slice(0, 16).replace(":", "");
const sections = [];
const all = {};
for (const name of names) {
  const bench = BENCHMARKS[name];
  if (!bench) throw new Error(`unknown benchmark "${name}"; known: ${Object.keys(BENCHMARKS).join(", ")}`);
  process.stderr.write(`running ${name}…\n`);
  const result = await bench();
  all[name] = result.raw;
  const table = [
    `| ${result.header.join(" | ")} |`,
    `|${result.header.map(() => "---").join("|")}|`,
    ...result.rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
  sections.push(`## ${result.title}\n\n${table}\n`);
  process.stdout.write(`\n${result.title}\n${table}\n`);
}
const machine = `${os.cpus().length} cores (${os.cpus()[0]?.model ?? "?"}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
const md = `# funcd benchmarks — ${new Date().toISOString()}\n\nMachine: ${machine}\n\n${sections.join("\n")}`;
writeFileSync(path.join(RESULTS, `${stamp}-${names.join("-")}.md`), md);
writeFileSync(
  path.join(RESULTS, `${stamp}-${names.join("-")}.json`),
  JSON.stringify({ machine, results: all }, null, 2),
);
process.stderr.write(`\nwritten to bench/results/${stamp}-${names.join("-")}.md\n`);
