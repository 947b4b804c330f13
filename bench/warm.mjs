/**
 * Warm invoke overhead: the same Node hello handler answered (a) by its runtime server directly, (b)
 * through the funcd gateway, (c) through nginx as a plain reverse proxy to the runtime of (a). Then the
 * gateway case once more under `node --cpu-prof`, summarised, so the report says where the daemon's
 * time goes.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { readProfile, summarizeProfile } from "./lib/cpuprofile.mjs";
import { startDaemon } from "./lib/daemon.mjs";
import { instancePids } from "./lib/instances.mjs";
import { loadGenerator, runLoad } from "./lib/load.mjs";
import { startNginx } from "./lib/nginx.mjs";
import { cleanupStack, measureCpu, processTree } from "./lib/procs.mjs";
import { functionDir, RUNTIMES, startBareRuntime } from "./lib/runtimes.mjs";
import { count, ms, percent, plusMs, ratio } from "./lib/stats.mjs";

export const name = "warm";
export const title = "Warm invoke overhead — Node hello direct, through the funcd gateway, through nginx";

/** Throughput through the gateway relative to nginx's, and the p50 the gateway may add at 1 connection. */
const TARGET_VS_NGINX = 0.9;
const TARGET_ADDED_P50_MS = 0.3;

/**
 * One instance that takes every connection, like the runtime behind nginx: with the default concurrency
 * (50) 64 connections would make the fleet start a second instance and the comparison would be unfair
 * in the gateway's favour.
 */
const HELLO_SPEC = {
  files: RUNTIMES.node.files(),
  concurrency: 256,
  scale: { min: 1, max: 1 },
};

async function deployHello(daemon) {
  await daemon.deploy("hello", HELLO_SPEC);
  const first = await daemon.invoke("/function/hello");
  if (first.status !== 200) throw new Error(`/function/hello answered ${first.status}: ${first.text}`);
  const [instance] = (await daemon.describe("hello")).instances;
  return instance;
}

export async function run({ quick, log, nginx }) {
  const seconds = quick ? 3 : 10;
  const warmupSeconds = quick ? 1 : 2;
  const cleanup = cleanupStack();
  const raw = { seconds, warmupSeconds, runs: {} };
  const notes = [];
  try {
    const fn = functionDir(RUNTIMES.node.files());
    cleanup.defer(fn.cleanup);
    const bare = await startBareRuntime("node", fn.dir);
    cleanup.defer(bare.stop);
    const cases = [
      {
        key: "direct",
        label: "runtime direct (baseline)",
        url: bare.url,
        cpu: async () => ({ server: [bare.child.pid] }),
      },
    ];

    const daemon = await startDaemon();
    cleanup.defer(daemon.stop);
    const instance = await deployHello(daemon);
    const replaced = new Set();
    cases.push({
      key: "gateway",
      label: "funcd gateway",
      url: `${daemon.url}/function/hello`,
      // After each run the instance may have been replaced (see settle()): look its processes up anew.
      cpu: async () => {
        const [current] = await daemon.settle("hello");
        if (current.instanceId !== instance.instanceId) replaced.add(current.instanceId);
        return { proxy: [daemon.pid], server: instancePids(current, undefined, daemon.pid) };
      },
    });

    if (nginx) {
      const proxy = await startNginx(nginx, bare.port);
      cleanup.defer(proxy.stop);
      cases.push({
        key: "nginx",
        label: "nginx (1 worker, keep-alive upstream)",
        url: proxy.url,
        cpu: async () => ({ proxy: processTree(proxy.pid), server: [bare.child.pid] }),
      });
    } else {
      notes.push(
        "nginx is not installed (bash scripts/bench-deps.sh installs it): the nginx rows are missing.",
      );
    }

    for (const connections of [1, 64]) {
      for (const c of cases) {
        log(`${c.key}, ${connections} connection(s): ${warmupSeconds} s warm-up + ${seconds} s`);
        await runLoad(c.url, { connections, seconds: warmupSeconds });
        const groups = await c.cpu();
        const { result, cpu } = await measureCpu(groups, () => runLoad(c.url, { connections, seconds }));
        raw.runs[`${c.key}-${connections}`] = { ...result, cpu };
      }
    }
    const crashed = await crashedExecutions(daemon);
    raw.gatewayInstancesReplaced = replaced.size;
    raw.crashedExecutions = crashed;
    if (replaced.size > 0 || crashed?.count > 0) {
      // wrk ends each run by closing its connections, some mid-request; when the gateway takes that for a
      // broken instance it records the requests as crashed and retires the instance.
      const cause =
        crashed?.count > 0
          ? `; ${crashed.count} execution(s) were recorded as crashed${crashed.error ? ` ("${crashed.error}")` : ""}: ` +
            "wrk closes its connections mid-request at the end of a run, and the gateway takes that for a broken instance"
          : "";
      notes.push(
        `The gateway's instance was replaced ${replaced.size} time(s) between runs${cause}. Each measured run ` +
          "started after the fleet had settled to one ready, idle instance, whose processes the CPU table follows.",
      );
    }
    await cleanup.run();

    const profile = await profiledGatewayRun({ seconds, warmupSeconds, log });
    raw.profile = profile;
    return report(cases, raw, notes, profile);
  } finally {
    await cleanup.run();
  }
}

/**
 * Executions of `hello` recorded as crashed (a client abort mistaken for a broken instance shows up
 * here). The records are written in batches, so wait a moment; undefined when the API does not say.
 */
async function crashedExecutions(daemon) {
  await sleep(1500);
  try {
    const page = await daemon.api("GET", "/api/v1/executions?function=hello&status=crashed&limit=1000");
    return { count: page.items.length, error: page.items[0]?.error ?? null };
  } catch {
    return undefined;
  }
}

/** The gateway case at 64 connections once more, with the daemon under the V8 sampling profiler. */
async function profiledGatewayRun({ seconds, warmupSeconds, log }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "funcd-bench-prof-"));
  try {
    const daemon = await startDaemon({
      nodeArgs: ["--cpu-prof", `--cpu-prof-dir=${dir}`, "--cpu-prof-interval=250"],
    });
    const exitedAt = daemon.exited.then(() => performance.now());
    let load;
    let loadStart;
    let loadEnd;
    try {
      await deployHello(daemon);
      log(`gateway under --cpu-prof, 64 connections: ${warmupSeconds} s warm-up + ${seconds} s`);
      const url = `${daemon.url}/function/hello`;
      await runLoad(url, { connections: 64, seconds: warmupSeconds });
      await daemon.settle("hello");
      loadStart = performance.now();
      load = await runLoad(url, { connections: 64, seconds });
      loadEnd = performance.now();
    } finally {
      await daemon.stop();
    }
    // The profile ends when the daemon exits; the load ran from (exit - loadStart) to (exit - loadEnd)
    // before that. wrk's own start-up is inside the window, a few milliseconds of an idle daemon.
    const exit = await exitedAt;
    const summary = summarizeProfile(readProfile(dir), {
      window: { fromUs: (exit - loadStart) * 1000, toUs: (exit - loadEnd) * 1000 },
      top: 15,
    });
    return { load, ...summary, cpuUsPerRequest: (summary.busyMs * 1000) / Math.max(1, load.requests) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function report(cases, raw, notes, profile) {
  const get = (key, connections) => raw.runs[`${key}-${connections}`];
  const rows = [];
  for (const connections of [1, 64]) {
    const direct = get("direct", connections);
    const viaNginx = get("nginx", connections);
    for (const c of cases) {
      const r = get(c.key, connections);
      rows.push([
        connections,
        c.label,
        count(r.rps),
        ratio(r.rps, direct.rps),
        viaNginx ? ratio(r.rps, viaNginx.rps) : "–",
        ms(r.p50),
        c.key === "direct" ? "–" : plusMs(r.p50 - direct.p50),
        ms(r.p99),
        r.non2xx + r.socketErrors,
      ]);
    }
  }
  const gw64 = get("gateway", 64);
  const ng64 = get("nginx", 64);
  const gw1 = get("gateway", 1);
  const di1 = get("direct", 1);
  const addedP50 = gw1.p50 - di1.p50;
  const summary = [
    {
      target: `gateway throughput ≥ ${TARGET_VS_NGINX * 100} % of nginx's (64 connections)`,
      measured: ng64
        ? `${percent((gw64.rps / ng64.rps) * 100)} (${count(gw64.rps)} vs ${count(ng64.rps)} req/s)`
        : "no nginx",
      met: ng64 ? gw64.rps >= TARGET_VS_NGINX * ng64.rps : undefined,
    },
    {
      target: `gateway adds ≤ ${TARGET_ADDED_P50_MS} ms p50 over direct (1 connection)`,
      measured: `${plusMs(addedP50)} (${ms(gw1.p50)} vs ${ms(di1.p50)})`,
      // With whole-millisecond latencies (autocannon) a 0.3 ms difference cannot be judged.
      met: loadGenerator().latencyResolutionMs < 0.1 ? addedP50 <= TARGET_ADDED_P50_MS : undefined,
    },
  ];

  const cpuRows = cases.map((c) => {
    const cpu = get(c.key, 64).cpu;
    return [
      c.label,
      c.key === "direct" ? "–" : percent(cpu.proxy),
      percent(cpu.server),
      percent(cpu.machine),
    ];
  });

  const sections = [
    {
      text:
        `${loadGenerator().name}, ${raw.seconds} s per row after a ${raw.warmupSeconds} s warm-up. "direct" is the Node runtime server ` +
        "(templates/nodejs20/server.mjs) started by hand on a TCP port, no sandbox; nginx proxies to that same " +
        "process; the gateway proxies to a funcd instance of the same handler (sandboxed, on its unix socket), " +
        "held to one instance (`scale.max: 1`, `concurrency: 256`) like the runtime behind nginx.",
      table: {
        header: ["conns", "case", "req/s", "vs direct", "vs nginx", "p50", "added p50", "p99", "errors"],
        rows,
      },
      notes,
    },
    {
      heading: "CPU during the 64-connection runs",
      text:
        "Percent of one core used by the proxy (daemon or nginx master+worker) and by the server answering " +
        "(runtime process, or the instance's process tree); machine = all cores busy (100 % = both), wrk included.",
      table: { header: ["case", "proxy", "runtime", "machine"], rows: cpuRows },
    },
    profileSection(profile),
  ];
  return { summary, sections, raw };
}

function profileSection(p) {
  const busyShare = (p.busyMs / Math.max(1, p.windowMs)) * 100;
  return {
    heading: "Where the gateway's time goes (daemon under --cpu-prof, 64 connections)",
    text:
      `Profiled run: ${count(p.load.rps)} req/s (profiler overhead included). Over the ${(p.windowMs / 1000).toFixed(1)} s ` +
      `load window the daemon's main thread was busy ${percent(busyShare)} of the time, ` +
      `${p.cpuUsPerRequest.toFixed(0)} µs of JavaScript-thread CPU per request. Top 15 functions by self time ` +
      "(share of the busy time):",
    table: {
      header: ["#", "function", "where", "self", "share"],
      rows: p.functions.map((f, i) => [
        i + 1,
        `\`${f.name}\``,
        f.where || "–",
        ms(f.ms),
        percent(f.share, 1),
      ]),
    },
    notes: [`By module: ${p.modules.map((m) => `${m.module} ${percent(m.share, 0)}`).join(", ")}.`],
  };
}
