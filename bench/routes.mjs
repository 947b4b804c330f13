/**
 * The gateway under many functions: proxy throughput on a custom route, and route lookup alone (a path no
 * route matches, answered 404 by the gateway), on a daemon with 1 function (baseline) and on one with
 * 1,000 — each function with its own custom route. Both daemons run side by side and are measured in
 * alternating rounds, so a slow moment of this shared machine hits both alike; the medians are compared.
 */
import { inBatches, startDaemon } from "./lib/daemon.mjs";
import { loadGenerator, runLoad } from "./lib/load.mjs";
import { cleanupStack } from "./lib/procs.mjs";
import { RUNTIMES } from "./lib/runtimes.mjs";
import { count, ms, percent, seconds, summarize } from "./lib/stats.mjs";

export const name = "routes";
export const title = "Gateway under many functions — 1 vs 1,000 deployed, each with a custom route";

const TARGET_DEGRADATION = 5; // %
const PARALLEL = 8;
const CONNECTIONS = 64;
const MEASURED = "route-0000";

const route = (i) => `/bench/route-${String(i).padStart(4, "0")}`;
const fnName = (i) => `route-${String(i).padStart(4, "0")}`;

/** The measured function: one instance that takes every connection (as in the warm benchmark). */
async function deployMeasured(daemon) {
  await daemon.deploy(MEASURED, {
    files: RUNTIMES.node.files(),
    routes: [route(0)],
    concurrency: 256,
    scale: { min: 1, max: 1 },
  });
  const first = await daemon.invoke(route(0));
  if (first.status !== 200) throw new Error(`${route(0)} answered ${first.status}: ${first.text}`);
}

/** Deploys functions 1 … count-1, each with its own route; they scale to zero a second after their deploy. */
async function deployMany(daemon, total) {
  await inBatches(
    Array.from(
      { length: total - 1 },
      (_, k) => () =>
        daemon.deploy(fnName(k + 1), {
          files: RUNTIMES.node.files(` ${k + 1}`),
          routes: [route(k + 1)],
          // Each deploy proves its handler in an instance; stopping it a second later keeps 1,000 instances
          // from piling up (they would only measure memory pressure, not the route table).
          scale: { idleTimeout: "1s" },
        }),
    ),
    PARALLEL,
  );
  const last = await daemon.invoke(route(total - 1));
  if (last.status !== 200) throw new Error(`${route(total - 1)} answered ${last.status}: ${last.text}`);
  await daemon.waitForInstances((n) => n === 1, 180_000);
}

export async function run({ quick, log }) {
  const many = quick ? 50 : 1000;
  const rounds = quick ? 2 : 5;
  const proxySeconds = quick ? 3 : 10;
  const lookupSeconds = quick ? 2 : 5;
  const warmupSeconds = quick ? 1 : 2;
  const cleanup = cleanupStack();
  const raw = { functions: many, rounds, proxySeconds, lookupSeconds, connections: CONNECTIONS };
  try {
    const one = await startDaemon();
    cleanup.defer(one.stop);
    await deployMeasured(one);
    const full = await startDaemon();
    cleanup.defer(full.stop);
    await deployMeasured(full);
    log(
      `deploying ${many - 1} more functions with custom routes into the second daemon, ${PARALLEL} at a time`,
    );
    const started = performance.now();
    await deployMany(full, many);
    raw.deployMs = performance.now() - started;
    log(`deployed and scaled to zero in ${seconds(raw.deployMs)}`);

    const measure = async (daemon) => {
      const target = `${daemon.url}${route(0)}`;
      await runLoad(target, { connections: CONNECTIONS, seconds: warmupSeconds });
      await daemon.settle(MEASURED); // see settle(): the end of a wrk run may replace the instance
      const proxy = await runLoad(target, { connections: CONNECTIONS, seconds: proxySeconds });
      if (proxy.non2xx + proxy.socketErrors > 0)
        throw new Error(`errors on ${route(0)}: ${JSON.stringify(proxy)}`);
      await daemon.settle(MEASURED);
      const lookup = await runLoad(`${daemon.url}/bench/no-such-route`, {
        connections: CONNECTIONS,
        seconds: lookupSeconds,
      });
      return { proxy, lookup };
    };
    raw.one = [];
    raw.many = [];
    for (let r = 1; r <= rounds; r++) {
      // Alternate which daemon goes first, so a drift during the round (or going second) favours neither.
      const order = r % 2 === 1 ? ["one", "many"] : ["many", "one"];
      log(
        `round ${r}/${rounds}: ${order.map((k) => (k === "one" ? "1 function" : `${many} functions`)).join(", then ")}`,
      );
      for (const key of order) raw[key].push(await measure(key === "one" ? one : full));
    }
  } finally {
    await cleanup.run();
  }
  return report(raw);
}

function report(raw) {
  const loss = (a, b) => ((a - b) / a) * 100;
  const median = (runs, key, field) => summarize(runs.map((r) => r[key][field])).median;
  const spread = (runs, key) => {
    const s = summarize(runs.map((r) => r[key].rps));
    return runs.length > 1 ? `${count(s.min)}–${count(s.max)}` : "–";
  };
  const rows = [];
  for (const [key, label] of [
    ["proxy", `proxy through custom route ${route(0)}`],
    ["lookup", "route lookup only (unmatched path → 404)"],
  ]) {
    for (const [runs, functions] of [
      [raw.one, "1 (baseline)"],
      [raw.many, count(raw.functions)],
    ]) {
      rows.push([
        label,
        functions,
        count(median(runs, key, "rps")),
        spread(runs, key),
        ms(median(runs, key, "p50")),
        ms(median(runs, key, "p99")),
        runs === raw.one ? "–" : percent(loss(median(raw.one, key, "rps"), median(runs, key, "rps")), 1),
      ]);
    }
  }
  const oneRps = median(raw.one, "proxy", "rps");
  const manyRps = median(raw.many, "proxy", "rps");
  const proxyLoss = loss(oneRps, manyRps);
  const range = (runs) => summarize(runs.map((r) => r.proxy.rps));
  // When the rounds of the two daemons overlap, the difference is within this machine's run-to-run noise.
  const overlap = range(raw.one).min <= range(raw.many).max && range(raw.many).min <= range(raw.one).max;
  return {
    summary: [
      {
        target: `≤ ${TARGET_DEGRADATION} % proxy throughput loss with ${count(raw.functions)} functions vs 1`,
        measured:
          `${percent(proxyLoss, 1)} (${count(manyRps)} vs ${count(oneRps)} req/s, medians of ${raw.rounds} rounds` +
          `${overlap && raw.rounds > 1 ? "; the rounds' ranges overlap" : ""})`,
        met: proxyLoss <= TARGET_DEGRADATION,
      },
    ],
    sections: [
      {
        text:
          `${loadGenerator().name}, ${raw.connections} connections, after a warm-up; ${raw.rounds} alternating round(s) of ` +
          `${raw.proxySeconds} s (proxy) and ${raw.lookupSeconds} s (lookup) per daemon; medians of the rounds. ` +
          `Deploying the ${count(raw.functions - 1)} extra functions into the second daemon (each proves its ` +
          `handler in an instance, then scales to zero after 1 s idle) took ${seconds(raw.deployMs)}, ` +
          `${PARALLEL} deploys in parallel.`,
        table: {
          header: [
            "path",
            "functions deployed",
            "req/s (median)",
            "req/s range",
            "p50",
            "p99",
            "throughput loss",
          ],
          rows,
        },
        notes: [
          "The two daemons run side by side; the one not being measured is idle (its other functions run no " +
            "instance), so the comparison includes what 1,000 functions cost in the background (reaper, health " +
            "checks) as well as in the route table. A negative loss means the 1,000-function daemon was faster.",
        ],
      },
    ],
    raw,
  };
}
