/**
 * Density: 200 functions deployed, 50 of them warm (each called once, kept by a long idle timeout), the
 * rest scaled to zero. Reports the daemon's memory, each warm instance's, and the total. Baselines: the
 * bare runtime process after one request, and the same daemon before anything was deployed.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { inBatches, startDaemon } from "./lib/daemon.mjs";
import { instanceMemory, unclaimedChildren } from "./lib/instances.mjs";
import { cleanupStack, memoryOf, processTable } from "./lib/procs.mjs";
import { functionDir, RUNTIMES, startBareRuntime } from "./lib/runtimes.mjs";
import { mib, ratio, seconds, summarize } from "./lib/stats.mjs";

export const name = "density";
export const title = "Density — 200 functions deployed, 50 warm";

const MiB = 2 ** 20;
const TARGET_INSTANCE = 40 * MiB;
const TARGET_DAEMON = 150 * MiB;
/** Parallel deploys: each one starts an instance, and there are two cores. */
const PARALLEL = 8;

/** The bare runtime after one request: the memory floor of a Node instance. */
async function bareRuntimeMemory() {
  const fn = functionDir(RUNTIMES.node.files());
  try {
    const bare = await startBareRuntime("node", fn.dir);
    try {
      await sleep(500);
      return memoryOf(bare.child.pid);
    } finally {
      await bare.stop();
    }
  } finally {
    fn.cleanup();
  }
}

export async function run({ quick, log }) {
  const total = quick ? 40 : 200;
  const warm = quick ? 10 : 50;
  const cleanup = cleanupStack();
  const raw = { functions: total, warm };
  try {
    raw.bare = await bareRuntimeMemory();

    const daemon = await startDaemon();
    cleanup.defer(daemon.stop);
    await sleep(1000);
    raw.daemonIdle = daemon.memory();

    const names = Array.from({ length: total }, (_, i) => `dense-${String(i).padStart(3, "0")}`);
    log(`deploying ${total} functions, ${PARALLEL} at a time`);
    const deployStart = performance.now();
    await inBatches(
      names.map(
        (fnName, i) => () =>
          daemon.deploy(fnName, {
            files: RUNTIMES.node.files(` ${i}`),
            // The first `warm` keep their instance for an hour; the rest stop a second after their deploy.
            scale: { idleTimeout: i < warm ? "1h" : "1s" },
          }),
      ),
      PARALLEL,
    );
    raw.deployMs = performance.now() - deployStart;
    raw.daemonAfterDeploy = daemon.memory();

    log(`calling ${warm} functions once, waiting for the other ${total - warm} to scale to zero`);
    for (const fnName of names.slice(0, warm)) {
      const res = await daemon.invoke(`/function/${fnName}`);
      if (res.status !== 200) throw new Error(`/function/${fnName} answered ${res.status}: ${res.text}`);
    }
    const items = await daemon.waitForInstances((n) => n === warm, 120_000);
    await sleep(2000); // let the instances and the daemon settle after the calls

    const table = processTable();
    const instances = items.flatMap((f) => f.instances);
    raw.instances = instances.map((instance) => instanceMemory(instance, table, daemon.pid));
    raw.daemon = daemon.memory();
    raw.others = unclaimedChildren(
      daemon.pid,
      raw.instances.flatMap((i) => i.pids),
      table,
    );
  } finally {
    await cleanup.run();
  }
  return report(raw);
}

function report(raw) {
  // An instance whose processes were not found (it stopped meanwhile) would count as 0 bytes: left out.
  const found = raw.instances.filter((i) => i.pids.length > 0);
  const missing = raw.instances.length - found.length;
  const tree = summarize(found.map((i) => i.rss));
  const runtimeOnly = summarize(found.map((i) => i.runtimeRss));
  const wrappers = summarize(found.map((i) => i.wrapperRss));
  const pss = summarize(found.map((i) => i.pss));
  const sum = (key) => found.reduce((n, i) => n + i[key], 0);
  const hows = new Map();
  for (const i of raw.instances) hows.set(i.how, (hows.get(i.how) ?? 0) + 1);
  const how = [...hows].map(([k, n]) => `${n} × ${k}`).join(", ");
  const pool = raw.others.filter((o) => o.pooled);
  const otherRss = raw.others.reduce((n, o) => n + o.rss, 0);
  const otherPss = raw.others.reduce((n, o) => n + o.pss, 0);
  const rows = [
    ["bare Node runtime after one request (baseline)", mib(raw.bare.rss), "–", mib(raw.bare.pss), "1.00×"],
    [
      "funcd instance, whole process tree",
      mib(tree.median),
      mib(tree.p99),
      mib(pss.median),
      ratio(tree.median, raw.bare.rss),
    ],
    [
      "… its runtime process alone",
      mib(runtimeOnly.median),
      mib(runtimeOnly.p99),
      "–",
      ratio(runtimeOnly.median, raw.bare.rss),
    ],
    ["… its sandbox helpers (bwrap)", mib(wrappers.median), mib(wrappers.p99), "–", "–"],
    ["daemon, nothing deployed (baseline)", mib(raw.daemonIdle.rss), "–", mib(raw.daemonIdle.pss), "1.00×"],
    [
      `daemon, ${raw.functions} deployed / ${raw.warm} warm`,
      mib(raw.daemon.rss),
      "–",
      mib(raw.daemon.pss),
      ratio(raw.daemon.rss, raw.daemonIdle.rss),
    ],
    ["daemon peak (VmHWM) over the run", mib(raw.daemon.hwm), "–", "–", "–"],
    [
      `other process trees of the daemon: ${raw.others.length} (${pool.length} warm-pool slots), together`,
      mib(otherRss),
      "–",
      mib(otherPss),
      "–",
    ],
    [
      `total: daemon + ${found.length} instances + the others (RSS counts shared pages in every process)`,
      mib(raw.daemon.rss + sum("rss") + otherRss),
      "–",
      mib(raw.daemon.pss + sum("pss") + otherPss),
      "–",
    ],
  ];
  const summary = [
    {
      target: "≤ 40 MiB per idle Node instance (median RSS, whole tree)",
      measured: `${mib(tree.median)} (runtime process alone ${mib(runtimeOnly.median)}, PSS ${mib(pss.median)})`,
      met: tree.median <= TARGET_INSTANCE,
    },
    {
      target: `daemon < 150 MiB RSS with ${raw.functions} functions / ${raw.warm} warm`,
      measured: `${mib(raw.daemon.rss)} (peak ${mib(raw.daemon.hwm)})`,
      met: raw.daemon.rss < TARGET_DAEMON,
    },
  ];
  return {
    summary,
    sections: [
      {
        text:
          `${raw.functions} hello functions deployed through the API (\`files\`), ${PARALLEL} at a time, in ` +
          `${seconds(raw.deployMs)}; ${raw.warm} of them called once and kept warm, the others scaled to zero.`,
        table: { header: ["what", "RSS (median)", "RSS p99", "PSS (median)", "vs baseline"], rows },
        notes: [
          "How instances were measured: the API's `instances[].pid` is the host pid of the instance's outermost " +
            "process (bwrap); it was used when that process's command line, cgroup or environment names the " +
            "instance id, or when it descends from the daemon (an instance the warm pool booted generically: its " +
            "command line names the pool slot), else the processes were found by scanning /proc for the id " +
            `(this run: ${how}${missing > 0 ? `; ${missing} instance(s) not found, left out` : ""}). RSS is ` +
            "VmRSS from /proc/<pid>/status summed over the process tree (bwrap, its pid-namespace init, the " +
            "runtime); PSS is from /proc/<pid>/smaps_rollup and shares libnode's pages between the instances, so " +
            "the PSS total is the better estimate of what the instances cost together.",
          "The daemon's figures are its own process only (VmRSS, VmHWM, PSS), read from /proc/<daemon pid>.",
          `p99 of ${found.length} instances is the largest one. "Other process trees" are the daemon's children ` +
            "that are no listed instance: the warm pool's generic instances (FUNCD_POOL_SIZE per runtime in use).",
        ],
      },
    ],
    raw,
  };
}
