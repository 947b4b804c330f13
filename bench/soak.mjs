/**
 * Sustained mixed load on the example stack (issue 21): one wrk thread, 8 connections, for 5 minutes
 * (`--duration <s>` or BENCH_SOAK_SECONDS shortens it), each connection rotating through
 * `GET /function/hello`, `POST /sum` (JSON), `GET /function/echo/x?y=1` and `POST /async-function/recorder`.
 * `recorder` reports every delivery's execution id to a probe server in this process, so async
 * invocations are counted accepted (202) vs delivered vs delivered more than once. The report adds
 * non-2xx answers, the daemon's log lines by level (its pino output, at `warn`), the store's lock
 * metrics, and the daemon's RSS and open fds at start, after warm-up and at the end.
 *
 * The baseline is the same daemon's own state before the load: RSS and fds at start, and zero
 * duplicates / zero store errors, which is what a healthy daemon should show after any amount of load.
 */
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import { request } from "undici";
import YAML from "yaml";
import { ROOT, startDaemon } from "./lib/daemon.mjs";
import { loadGenerator, parseWrk } from "./lib/load.mjs";
import { cleanupStack, memoryOf, spawnGroup, stopGroup } from "./lib/procs.mjs";
import { count, mib, seconds } from "./lib/stats.mjs";

export const name = "soak";
export const title = "Soak: sustained mixed sync + async load on the example stack";
/** Not part of a plain `npm run bench`: five minutes is too long to run by default. */
export const optIn = true;

const DEFAULT_SECONDS = 300;
const CONNECTIONS = 8;

/** Reports its execution id and attempt to the probe, then answers: a delivery counted by execution id. */
const RECORDER = `module.exports = { main: async (event) => {
  const res = await fetch(process.env.PROBE + "/seen", {
    method: "POST",
    body: event.headers["x-funcd-execution-id"] + " " + event.headers["x-funcd-attempt"],
  });
  if (!res.ok) throw new Error("probe answered " + res.status);
  return "recorded";
} };
`;

/**
 * The rotation, and what wrk's own summary lacks: answers by status class, and the execution id of every
 * 202 (async accepted), one a line into the file named after \`--\`.
 */
const SCRIPT = `
local reqs = {}
local i = 0
local ids
s2xx, s202, s4xx, s5xx, other = 0, 0, 0, 0, 0
init = function(args)
  ids = io.open(args[1], "w")
  ids:setvbuf("line")
  reqs[1] = wrk.format("GET", "/function/hello")
  reqs[2] = wrk.format("POST", "/sum", { ["content-type"] = "application/json" }, '{"a":2,"b":3}')
  reqs[3] = wrk.format("GET", "/function/echo/x?y=1")
  reqs[4] = wrk.format("POST", "/async-function/recorder", { ["content-type"] = "application/json" }, '{"n":1}')
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
response = function(status, headers, body)
  if status == 202 then
    s202 = s202 + 1
    local id = body:match('"executionId":"([^"]+)"')
    if id then ids:write(id, "\\n") end
  end
  if status >= 200 and status < 300 then s2xx = s2xx + 1
  elseif status >= 400 and status < 500 then s4xx = s4xx + 1
  elseif status >= 500 then s5xx = s5xx + 1
  else other = other + 1 end
end
local threads = {}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local t = { s2xx = 0, s202 = 0, s4xx = 0, s5xx = 0, other = 0 }
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + thread:get(k) end
  end
  io.write(string.format("SOAK s2xx=%d s202=%d s4xx=%d s5xx=%d other=%d\\n", t.s2xx, t.s202, t.s4xx, t.s5xx, t.other))
end
`;

/** The execution ids the recorder reported, with how many times each. */
function startProbe() {
  const seen = new Map();
  let retried = 0;
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d) => {
      body += d;
    });
    req.on("end", () => {
      const [id, attempt] = body.split(" ");
      seen.set(id, (seen.get(id) ?? 0) + 1);
      if (Number(attempt) > 1) retried++;
      res.writeHead(200).end("ok");
    });
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        url: `http://127.0.0.1:${server.address().port}`,
        seen,
        retried: () => retried,
        close: () =>
          new Promise((done) => {
            server.closeAllConnections();
            server.close(() => done());
          }),
      }),
    ),
  );
}

/** The example stack's functions (funcd.yaml), each with its folder's files, as API specs. */
function exampleStack() {
  const stack = YAML.parse(readFileSync(path.join(ROOT, "funcd.yaml"), "utf8"));
  return Object.entries(stack.functions).map(([fn, { path: dir, ...spec }]) => {
    const folder = path.join(ROOT, dir);
    const files = {};
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      if (entry.isFile()) files[entry.name] = readFileSync(path.join(folder, entry.name), "utf8");
    }
    return [fn, { ...spec, files }];
  });
}

/** Open file descriptors of a process (0 when it is gone). */
function fdCount(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

/** Log lines by level, and warn/error lines grouped by message (with the first error text seen). */
function logCounter() {
  const byLevel = { trace: 0, debug: 0, info: 0, warn: 0, error: 0, fatal: 0, unparsed: 0 };
  const messages = new Map();
  const names = { 10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal" };
  let partial = "";
  const unparsed = [];
  return {
    byLevel,
    unparsed,
    messages,
    feed(chunk) {
      const lines = (partial + chunk).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) {
        if (!line.trim()) continue;
        let entry;
        try {
          entry = JSON.parse(line);
        } catch {
          // The "funcd http://…" announcement and anything else that is not pino's.
          if (!/^funcd http/.test(line)) {
            byLevel.unparsed++;
            if (unparsed.length < 20) unparsed.push(line.slice(0, 200));
          }
          continue;
        }
        const level = names[entry.level] ?? "unparsed";
        byLevel[level]++;
        if (entry.level >= 40) {
          const key = `${level}: ${entry.msg}`;
          const m = messages.get(key) ?? { count: 0, example: entry.err?.message ?? entry.err ?? "" };
          m.count++;
          messages.set(key, m);
        }
      }
    },
  };
}

/** The store's lock metrics from /metrics: busy retries and failures by operation, lock waits. */
async function storeMetrics(url) {
  const res = await request(`${url}/metrics`);
  const text = await res.body.text();
  const pick = (metric) => {
    const out = {};
    for (const m of text.matchAll(new RegExp(`^${metric}\\{operation="([^"]+)"\\} (\\S+)$`, "gm"))) {
      out[m[1]] = Number(m[2]);
    }
    return out;
  };
  const present = text.includes("funcd_store_lock_wait_seconds");
  const slow = {};
  for (const m of text.matchAll(
    /^funcd_store_lock_wait_seconds_bucket\{le="([^"]+)",operation="([^"]+)"\} (\S+)$/gm,
  )) {
    if (m[1] === "0.1") slow[m[2]] = { under100ms: Number(m[3]) };
  }
  const counts = pick("funcd_store_lock_wait_seconds_count");
  const sums = pick("funcd_store_lock_wait_seconds_sum");
  const waits = Object.fromEntries(
    Object.entries(counts).map(([op, n]) => [
      op,
      { transactions: n, waitedSeconds: sums[op] ?? 0, over100ms: n - (slow[op]?.under100ms ?? n) },
    ]),
  );
  return {
    present,
    busyRetries: pick("funcd_store_busy_retries_total"),
    busyFailures: pick("funcd_store_busy_failures_total"),
    waits,
  };
}

/** Async invocations of `recorder` in the store by state, read from the SQLite file (read-only). */
function queueState(daemon) {
  const db = new Database(path.join(daemon.dataDir, "funcd.db"), { readonly: true, fileMustExist: true });
  try {
    const states = Object.fromEntries(
      db
        .prepare(
          "SELECT state, count(*) AS n FROM executions WHERE function_name = 'recorder' AND trigger = 'async' GROUP BY state",
        )
        .all()
        .map((r) => [r.state, r.n]),
    );
    const queue = Object.fromEntries(
      db
        .prepare("SELECT state, count(*) AS n FROM queue GROUP BY state")
        .all()
        .map((r) => [r.state, r.n]),
    );
    return { records: states, queue };
  } finally {
    db.close();
  }
}

function sample(daemon, label, startedAt) {
  const mem = memoryOf(daemon.pid);
  return {
    label,
    atSeconds: (performance.now() - startedAt) / 1000,
    rss: mem.rss,
    fds: fdCount(daemon.pid),
    load1m: os.loadavg()[0],
  };
}

/** Seconds from `--duration <s>` / `--duration=<s>`, BENCH_SOAK_SECONDS, or the default. */
function durationSeconds(options) {
  const value = options.durationSeconds ?? process.env.BENCH_SOAK_SECONDS;
  if (value === undefined) return options.quick ? 30 : DEFAULT_SECONDS;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 10)
    throw new Error(`soak duration must be at least 10 seconds, not "${value}"`);
  return Math.round(n);
}

export async function run(options) {
  const { log } = options;
  const total = durationSeconds(options);
  const warmup = Math.min(30, Math.round(total / 10));
  const gen = loadGenerator();
  if (gen.name !== "wrk") throw new Error("the soak benchmark needs wrk (bash scripts/bench-deps.sh)");
  const cleanup = cleanupStack();
  const raw = { seconds: total, warmupSeconds: warmup, connections: CONNECTIONS, threads: 1, samples: [] };
  try {
    const probe = await startProbe();
    cleanup.defer(probe.close);
    const logs = logCounter();
    const daemon = await startDaemon({ onStdout: (d) => logs.feed(d) });
    cleanup.defer(daemon.stop);
    raw.daemonPid = daemon.pid;
    for (const [fn, spec] of exampleStack()) await daemon.deploy(fn, spec);
    await daemon.deploy("recorder", {
      runtime: "nodejs20",
      files: { "handler.js": RECORDER },
      env: { PROBE: probe.url },
    });
    const t0 = performance.now();
    raw.samples.push(sample(daemon, "start", t0));
    const scriptFile = path.join(daemon.dataDir, "..", `funcd-soak-${process.pid}.lua`);
    const idsFile = path.join(daemon.dataDir, "..", `funcd-soak-${process.pid}.ids`);
    writeFileSync(scriptFile, SCRIPT);
    cleanup.defer(() => rmSync(scriptFile, { force: true }));
    cleanup.defer(() => rmSync(idsFile, { force: true }));

    log(`wrk: 1 thread, ${CONNECTIONS} connections, ${total} s (warm-up sample at ${warmup} s)`);
    const wrk = spawnGroup(
      gen.command,
      [
        "-t",
        "1",
        "-c",
        String(CONNECTIONS),
        "-d",
        `${total}s`,
        "--timeout",
        "10s",
        "--latency",
        "-s",
        scriptFile,
        daemon.url,
        "--",
        idsFile,
      ],
      {},
    );
    cleanup.defer(() => stopGroup(wrk, { signal: "SIGKILL" }));
    const loadStarted = performance.now();
    let warmedUp = false;
    while (wrk.exitCode === null && wrk.signalCode === null) {
      await Promise.race([wrk.exited, sleep(5000)]);
      const elapsed = (performance.now() - loadStarted) / 1000;
      if (wrk.exitCode !== null) break;
      if (!warmedUp && elapsed >= warmup) {
        warmedUp = true;
        raw.samples.push(sample(daemon, "after warm-up", t0));
      } else raw.samples.push(sample(daemon, "during load", t0));
      if (Math.round(elapsed) % 60 < 5)
        log(`${Math.round(elapsed)} s: ${probe.seen.size} async deliveries so far`);
    }
    const code = await wrk.exited;
    const out = wrk.output();
    if (code !== 0) throw new Error(`wrk exited with ${code}: ${out}`);
    const load = parseWrk(out);
    const counters = Object.fromEntries(
      [...(/SOAK (.*)$/m.exec(out)?.[1] ?? "").matchAll(/(\w+)=(\d+)/g)].map((m) => [m[1], Number(m[2])]),
    );
    raw.wrk = { ...load, counters, output: out };
    raw.samples.push(sample(daemon, "load ended", t0));
    const afterLoad = queueState(daemon);
    raw.queueAtLoadEnd = afterLoad;
    log(`load ended: ${load.requests} requests; queue ${JSON.stringify(afterLoad.queue)}; draining`);

    // Drain: the queue empty (or 180 s: an invocation whose completion was lost waits out its lease).
    const drainStarted = performance.now();
    let state = afterLoad;
    while (performance.now() - drainStarted < 180_000) {
      state = queueState(daemon);
      const left = (state.queue.queued ?? 0) + (state.queue.running ?? 0);
      if (left === 0) break;
      await sleep(500);
    }
    raw.drainSeconds = (performance.now() - drainStarted) / 1000;
    await sleep(1000); // the last deliveries' probe calls
    raw.queueAtEnd = queueState(daemon);
    raw.samples.push(sample(daemon, "end (drained)", t0));
    raw.metrics = await storeMetrics(daemon.url);
    raw.logs = {
      byLevel: logs.byLevel,
      messages: Object.fromEntries(logs.messages),
      otherLines: logs.unparsed,
    };
    const counts = [...probe.seen.values()];
    const acceptedIds = readFileSync(idsFile, "utf8").split("\n").filter(Boolean);
    raw.async = {
      accepted: counters.s202 ?? 0,
      acceptedIds: acceptedIds.length,
      acceptedNotDelivered: acceptedIds.filter((id) => !probe.seen.has(id)).length,
      delivered: probe.seen.size,
      deliveries: counts.reduce((a, b) => a + b, 0),
      deliveredMoreThanOnce: counts.filter((n) => n > 1).length,
      attemptsAfterTheFirst: probe.retried(),
      recordStates: raw.queueAtEnd.records,
      queueLeft: raw.queueAtEnd.queue,
    };
    raw.loadAverageAtEnd = os.loadavg();
    return report(raw);
  } finally {
    await cleanup.run();
  }
}

function report(raw) {
  const a = raw.async;
  const storeErrors = Object.entries(raw.logs.messages)
    .filter(([key, m]) => /database is locked|SQLITE_BUSY/i.test(`${key} ${m.example}`))
    .reduce((n, [, m]) => n + m.count, 0);
  const start = raw.samples[0];
  const warm = raw.samples.find((s) => s.label === "after warm-up") ?? start;
  const end = raw.samples.at(-1);
  const maxRss = Math.max(...raw.samples.map((s) => s.rss));
  const maxFds = Math.max(...raw.samples.map((s) => s.fds));
  const w = raw.wrk;
  const summary = [
    {
      target: "async invocations delivered more than once",
      measured: count(a.deliveredMoreThanOnce),
      met: a.deliveredMoreThanOnce === 0,
    },
    {
      target: "store errors logged (database is locked)",
      measured: count(storeErrors),
      met: storeErrors === 0,
    },
    {
      target: "async accepted (202) but not delivered",
      measured: count(a.acceptedNotDelivered),
      met: a.acceptedNotDelivered === 0 && a.acceptedIds === a.accepted,
    },
    {
      target: "non-2xx answers",
      measured: count(w.non2xx + w.socketErrors),
      met: w.non2xx + w.socketErrors === 0,
    },
  ];
  const m = raw.metrics;
  const ops = [
    ...new Set([...Object.keys(m.waits), ...Object.keys(m.busyRetries), ...Object.keys(m.busyFailures)]),
  ].sort();
  return {
    summary,
    sections: [
      {
        heading: "Load",
        text:
          `wrk, 1 thread, ${raw.connections} connections, ${raw.seconds} s, rotating GET /function/hello, ` +
          "POST /sum (JSON), GET /function/echo/x?y=1, POST /async-function/recorder.",
        table: {
          header: [
            "requests",
            "req/s",
            "p50",
            "p99",
            "2xx",
            "of which 202 (async accepted)",
            "4xx",
            "5xx",
            "socket errors",
          ],
          rows: [
            [
              count(w.requests),
              count(Math.round(w.rps)),
              `${w.p50.toFixed(2)} ms`,
              `${w.p99.toFixed(2)} ms`,
              count(w.counters.s2xx ?? 0),
              count(w.counters.s202 ?? 0),
              count(w.counters.s4xx ?? 0),
              count(w.counters.s5xx ?? 0),
              count(w.socketErrors),
            ],
          ],
        },
      },
      {
        heading: "Async invocations",
        table: {
          header: [
            "accepted (202)",
            "accepted, not delivered",
            "delivered (distinct ids)",
            "deliveries",
            "delivered more than once",
            "attempts > 1 seen",
            "queue at load end",
            "drain",
            "queue left",
          ],
          rows: [
            [
              count(a.accepted),
              count(a.acceptedNotDelivered),
              count(a.delivered),
              count(a.deliveries),
              count(a.deliveredMoreThanOnce),
              count(a.attemptsAfterTheFirst),
              JSON.stringify(raw.queueAtLoadEnd.queue),
              seconds(raw.drainSeconds * 1000),
              JSON.stringify(a.queueLeft),
            ],
          ],
        },
        notes: [
          "Accepted: the execution ids of the 202s wrk read. The daemon may also have accepted a few whose " +
            "202 was on its way when wrk stopped (it closes its connections mid-request): delivered can exceed " +
            "accepted by up to the 8 connections.",
          `Async records left in the store at the end, by state: ${JSON.stringify(a.recordStates)} (finished ` +
            "records are pruned by count per function, `executionsPerFunction`, so this is not a total).",
        ],
      },
      {
        heading: "Daemon log (pino, level warn and up)",
        table: {
          header: ["level", "lines"],
          rows: ["warn", "error", "fatal"].map((level) => [level, count(raw.logs.byLevel[level])]),
        },
        notes: Object.entries(raw.logs.messages)
          .sort((x, y) => y[1].count - x[1].count)
          .slice(0, 12)
          .map(
            ([key, msg]) =>
              `${count(msg.count)} × ${key}${msg.example ? ` — ${String(msg.example).slice(0, 160)}` : ""}`,
          ),
      },
      {
        heading: "Store lock metrics (/metrics at the end)",
        ...(m.present
          ? {
              table: {
                header: [
                  "operation",
                  "write transactions",
                  "waited in all",
                  "waits > 100 ms",
                  "busy retries",
                  "given up",
                ],
                rows: ops.map((op) => [
                  op,
                  count(m.waits[op]?.transactions ?? 0),
                  seconds((m.waits[op]?.waitedSeconds ?? 0) * 1000),
                  count(m.waits[op]?.over100ms ?? 0),
                  count(m.busyRetries[op] ?? 0),
                  count(m.busyFailures[op] ?? 0),
                ]),
              },
            }
          : {
              text: "This build has no store lock metrics (funcd_store_lock_wait_seconds is added by the fix for issue 21).",
            }),
      },
      {
        heading: "Daemon process",
        table: {
          header: ["when", "at", "RSS", "open fds", "load average (1 min)"],
          rows: [start, warm, ...raw.samples.filter((s) => s.label === "load ended"), end].map((s) => [
            s.label,
            `${s.atSeconds.toFixed(0)} s`,
            mib(s.rss),
            count(s.fds),
            s.load1m.toFixed(2),
          ]),
        },
        notes: [
          `Highest of ${raw.samples.length} samples (every 5 s): RSS ${mib(maxRss)}, ${count(maxFds)} fds.`,
          `Load average at the end: ${raw.loadAverageAtEnd.map((l) => l.toFixed(2)).join(" / ")} (1/5/15 min). ` +
            "wrk, the daemon, its instances and this process share the machine with whatever else runs on it.",
        ],
      },
    ],
    raw: { ...raw, wrk: { ...raw.wrk, output: raw.wrk.output.slice(-4000) } },
  };
}
