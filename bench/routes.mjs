/**
 * The gateway under many functions: proxy throughput on a custom route, and route lookup alone (a path no
 * route matches, answered 404 by the gateway), with 1 function deployed (baseline) and with 1,000 — each
 * with its own custom route. Same daemon, same warm instance, measured before and after the 999 deploys.
 */
import { inBatches, startDaemon } from "./lib/daemon.mjs";
import { runLoad } from "./lib/load.mjs";
import { cleanupStack } from "./lib/procs.mjs";
import { RUNTIMES } from "./lib/runtimes.mjs";
import { count, ms, percent, seconds } from "./lib/stats.mjs";

export const name = "routes";
export const title = "Gateway under many functions — 1 vs 1,000 deployed, each with a custom route";

const TARGET_DEGRADATION = 5; // %
const PARALLEL = 8;
const CONNECTIONS = 64;

const route = (i) => `/bench/route-${String(i).padStart(4, "0")}`;

export async function run({ quick, log }) {
  const many = quick ? 50 : 1000;
  const duration = quick ? 3 : 10;
  const warmupSeconds = quick ? 1 : 2;
  const cleanup = cleanupStack();
  const raw = { functions: many, seconds: duration, connections: CONNECTIONS };
  try {
    const daemon = await startDaemon();
    cleanup.defer(daemon.stop);
    // The measured function: one instance taking every connection (as in the warm benchmark).
    await daemon.deploy("route-0000", {
      files: RUNTIMES.node.files(),
      routes: [route(0)],
      concurrency: 256,
      scale: { min: 1, max: 1 },
    });
    const target = `${daemon.url}${route(0)}`;
    const lookupOnly = `${daemon.url}/bench/no-such-route`;
    const first = await daemon.invoke(route(0));
    if (first.status !== 200) throw new Error(`${route(0)} answered ${first.status}: ${first.text}`);

    const measure = async (label) => {
      log(`${label}: proxy via custom route, ${warmupSeconds} s warm-up + ${duration} s`);
      await runLoad(target, { connections: CONNECTIONS, seconds: warmupSeconds });
      await daemon.settle("route-0000"); // see settle(): the end of a wrk run may replace the instance
      const proxy = await runLoad(target, { connections: CONNECTIONS, seconds: duration });
      await daemon.settle("route-0000");
      log(`${label}: route lookup only (404), ${warmupSeconds} s warm-up + ${duration} s`);
      await runLoad(lookupOnly, { connections: CONNECTIONS, seconds: warmupSeconds });
      const lookup = await runLoad(lookupOnly, { connections: CONNECTIONS, seconds: duration });
      if (proxy.non2xx + proxy.socketErrors > 0)
        throw new Error(`${label}: errors on ${route(0)}: ${JSON.stringify(proxy)}`);
      return { proxy, lookup };
    };
    raw.one = await measure("1 function");

    log(`deploying ${many - 1} more functions with custom routes, ${PARALLEL} at a time`);
    const started = performance.now();
    await inBatches(
      Array.from(
        { length: many - 1 },
        (_, k) => () =>
          daemon.deploy(`route-${String(k + 1).padStart(4, "0")}`, {
            files: RUNTIMES.node.files(` ${k + 1}`),
            routes: [route(k + 1)],
            // Scale to zero right after the deploy's proving instance, so 1,000 instances never pile up.
            scale: { idleTimeout: "1s" },
          }),
      ),
      PARALLEL,
    );
    raw.deployMs = performance.now() - started;
    log(`deployed in ${seconds(raw.deployMs)}; waiting for them to scale to zero`);
    await daemon.waitForInstances((n) => n === 1, 180_000);
    const last = await daemon.invoke(route(many - 1));
    if (last.status !== 200) throw new Error(`${route(many - 1)} answered ${last.status}`);
    await daemon.waitForInstances((n) => n === 1, 60_000);

    raw.many = await measure(`${many} functions`);
  } finally {
    await cleanup.run();
  }
  return report(raw);
}

function report(raw) {
  const degradation = (a, b) => ((a - b) / a) * 100;
  const rows = [];
  for (const [key, label] of [
    ["proxy", `proxy through custom route ${route(0)}`],
    ["lookup", "route lookup only (unmatched path → 404)"],
  ]) {
    const one = raw.one[key];
    const many = raw.many[key];
    rows.push([label, "1 (baseline)", count(one.rps), ms(one.p50), ms(one.p99), "–"]);
    rows.push([
      label,
      count(raw.functions),
      count(many.rps),
      ms(many.p50),
      ms(many.p99),
      percent(degradation(one.rps, many.rps), 1),
    ]);
  }
  const proxyDrop = degradation(raw.one.proxy.rps, raw.many.proxy.rps);
  return {
    summary: [
      {
        target: `≤ ${TARGET_DEGRADATION} % throughput loss with ${count(raw.functions)} functions vs 1`,
        measured: `${percent(proxyDrop, 1)} (${count(raw.many.proxy.rps)} vs ${count(raw.one.proxy.rps)} req/s)`,
        met: proxyDrop <= TARGET_DEGRADATION,
      },
    ],
    sections: [
      {
        text:
          `wrk, ${raw.connections} connections, ${raw.seconds} s per row after a warm-up. Deploying the other ` +
          `${count(raw.functions - 1)} functions (each proves its handler loads in an instance, then scales to ` +
          `zero after 1 s idle) took ${seconds(raw.deployMs)}, ${PARALLEL} deploys in parallel.`,
        table: { header: ["path", "functions deployed", "req/s", "p50", "p99", "throughput loss"], rows },
        notes: [
          "Both measurements hit the same warm instance of the same daemon, before and after the deploys; a " +
            "negative loss means the second run was faster (run-to-run noise on this machine is a few percent).",
        ],
      },
    ],
    raw,
  };
}
