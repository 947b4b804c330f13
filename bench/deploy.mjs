/**
 * Deploy to first response: from sending `PUT /api/v1/functions/<name>` with the code until the function
 * first answers 200 — for a Node function without dependencies, one with `lodash` (funcd's dependency
 * cache missed, then hit) and a Python function. Baseline: the bare runtime's spawn → first answer.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { startDaemon } from "./lib/daemon.mjs";
import { cleanupStack } from "./lib/procs.mjs";
import { bareStartTimes, RUNTIMES, runtimeAvailable } from "./lib/runtimes.mjs";
import { ms, ratio, summarize } from "./lib/stats.mjs";

export const name = "deploy";
export const title = "Deploy to first response";

const LODASH_VERSION = "4.17.21";

const lodashHandler = (i) =>
  `const _ = require("lodash");\nmodule.exports = { main: () => _.join(["hello", "lodash", ${i}], " ") };\n`;

/** A package.json; `id` changes the file (so the dependency cache key) without changing what is installed. */
const packageJson = (id) =>
  `${JSON.stringify({ name: `bench-${id}`, version: "1.0.0", private: true, dependencies: { lodash: LODASH_VERSION } }, null, 2)}\n`;

/** Deploys and then calls until 200; returns the two durations (ms) and the deploy's answer. */
async function deployToFirstResponse(daemon, fnName, spec) {
  const started = performance.now();
  const answer = await daemon.deploy(fnName, spec);
  const deployedMs = performance.now() - started;
  for (let tries = 0; ; tries++) {
    const res = await daemon.invoke(`/function/${fnName}`);
    if (res.status === 200) break;
    if (tries > 200)
      throw new Error(`/function/${fnName} answered ${res.status} after deploying: ${res.text}`);
    await sleep(10);
  }
  return { totalMs: performance.now() - started, deployedMs, dependencies: answer.dependencies };
}

export async function run({ quick, log }) {
  const runs = quick ? 2 : 5;
  const raw = { runs, cases: {} };
  const notes = [];
  const summary = [];
  const rows = [];
  const cleanup = cleanupStack();
  const python = runtimeAvailable("python");
  try {
    log(`bare Node runtime, ${runs} starts`);
    const bareNode = summarize(await bareStartTimes("node", runs));
    raw.bareNode = bareNode;
    rows.push([
      "Node: bare runtime spawn → first answer (baseline)",
      ms(bareNode.median),
      ms(bareNode.max),
      "–",
      "1.00×",
      "–",
    ]);
    let barePython;
    if (python.ok) {
      log(`bare Python runtime, ${runs} starts`);
      barePython = summarize(await bareStartTimes("python", runs));
      raw.barePython = barePython;
      rows.push([
        "Python: bare runtime spawn → first answer (baseline)",
        ms(barePython.median),
        ms(barePython.max),
        "–",
        "1.00×",
        "–",
      ]);
    } else {
      notes.push(`Python skipped: ${python.why}.`);
    }

    const daemon = await startDaemon({ env: { FUNCD_LOG_LEVEL: "error" } });
    cleanup.defer(daemon.stop);
    const cases = [
      {
        key: "node",
        label: "Node, no dependencies",
        baseline: bareNode,
        spec: (i) => ({ files: RUNTIMES.node.files(` ${i}`) }),
      },
      {
        key: "lodash-miss",
        label: "Node + lodash, dependency cache miss",
        baseline: bareNode,
        // Each run's package.json differs (its name), so each is a new cache key and a real `npm` install.
        spec: (i) => ({
          files: { "handler.js": lodashHandler(i), "package.json": packageJson(`miss-${i}`) },
        }),
        expectCached: false,
      },
      {
        key: "lodash-hit",
        label: "Node + lodash, dependency cache hit",
        baseline: bareNode,
        // The package.json of the first miss: same key, installed already; only the handler is new.
        spec: (i) => ({
          files: { "handler.js": lodashHandler(100 + i), "package.json": packageJson("miss-0") },
        }),
        expectCached: true,
      },
    ];
    if (python.ok) {
      cases.push({
        key: "python",
        label: "Python, no dependencies",
        baseline: barePython,
        spec: (i) => ({ runtime: RUNTIMES.python.runtime, files: RUNTIMES.python.files(` ${i}`) }),
      });
    }
    for (const c of cases) {
      log(`${c.label}: ${runs} deploys`);
      const samples = [];
      try {
        for (let i = 0; i < runs; i++) {
          const s = await deployToFirstResponse(daemon, `${c.key}-${i}`, c.spec(i));
          if (c.expectCached !== undefined && s.dependencies?.cached !== c.expectCached) {
            notes.push(
              `${c.label}, run ${i + 1}: the daemon reported dependencies ${JSON.stringify(s.dependencies)} ` +
                `(expected cached: ${c.expectCached}).`,
            );
          }
          samples.push(s);
        }
      } catch (err) {
        raw.cases[c.key] = { error: err.message, samples };
        notes.push(`${c.label}: failed — ${err.message}`);
        rows.push([c.label, "failed", "–", "–", "–", "–"]);
        continue;
      }
      raw.cases[c.key] = { samples };
      const total = summarize(samples.map((s) => s.totalMs));
      const put = summarize(samples.map((s) => s.deployedMs));
      rows.push([
        c.label,
        ms(total.median),
        ms(total.max),
        ms(put.median),
        ratio(total.median, c.baseline.median),
        ms(c.baseline.median),
      ]);
      summary.push({
        target: `deploy → first response, ${c.label}, median (vs bare runtime start)`,
        measured: `${ms(total.median)} (${ratio(total.median, c.baseline.median)})`,
        met: undefined,
      });
      if (c.key === "lodash-miss" && samples.length > 0) {
        notes.push(
          `The first lodash miss (${ms(samples[0].totalMs)}) also filled npm's download cache in the data dir; ` +
            "the later misses reinstall from it (npm still runs, the registry is only asked for metadata).",
        );
      }
    }
  } finally {
    await cleanup.run();
  }
  notes.push(
    `${runs} deploys per case, each a new function (one daemon, one data dir); "max" is the slowest of them. ` +
      "A deploy answers once one instance of the new revision is up (funcd proves the handler loads), so the " +
      "first call after it finds a warm instance.",
    "Baseline: the bare runtime server spawned by hand until it answers (Node, or Python for the Python row).",
    "The daemon runs with its defaults, warm pool included: a deploy's first instance may be a pooled runtime " +
      "specialized into the new revision rather than a fresh start (see the coldstart benchmark for the difference).",
  );
  return {
    summary,
    sections: [
      {
        table: {
          header: ["case", "median", "max", "PUT answered (median)", "vs baseline", "baseline median"],
          rows,
        },
        notes,
      },
    ],
    raw,
  };
}
