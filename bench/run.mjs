#!/usr/bin/env node
// funcd benchmarks. Each figure is measured next to a baseline taken in the same run, because absolute
// numbers on a shared 2-core machine drift. Writes bench/results/<date>-<names>.md and .json.
//
//   npm run bench                      # all benchmarks, in the order below
//   npm run bench -- warm              # one (or several) of: warm, coldstart, deploy, density, routes
//   npm run bench -- --quick density   # shortened runs, to check the suite works (not for quoting)
//   npm run bench -- soak              # opt-in (not in a plain run): 5 min of mixed load; --duration 60 shortens
//   npm run bench -- swarm             # opt-in: the swarm driver on the lab (sudo scripts/swarm-lab.sh up) vs docker
//
// Needs the build (npm install does it) and wrk + nginx (bash scripts/bench-deps.sh). See bench/README.md.
import * as coldstart from "./coldstart.mjs";
import * as density from "./density.mjs";
import * as deploy from "./deploy.mjs";
import * as docker from "./docker.mjs";
import * as gitDeploy from "./git-deploy.mjs";
import { killDaemonLeftovers, sandboxMode } from "./lib/daemon.mjs";
import { loadGenerator } from "./lib/load.mjs";
import { findNginx } from "./lib/nginx.mjs";
import { killAllGroups } from "./lib/procs.mjs";
import { describeMachine, renderMarkdown, writeReport } from "./lib/report.mjs";
import * as recording from "./recording.mjs";
import * as routes from "./routes.mjs";
import * as scaling from "./scaling.mjs";
import * as soak from "./soak.mjs";
import * as swarm from "./swarm.mjs";
import * as warm from "./warm.mjs";

const BENCHMARKS = [
  warm,
  coldstart,
  deploy,
  gitDeploy,
  density,
  routes,
  scaling,
  recording,
  docker,
  soak,
  swarm,
];
/** What a plain `npm run bench` runs: all but the opt-in ones (the soak takes 5 minutes by default). */
const DEFAULT_SET = BENCHMARKS.filter((b) => !b.optIn);

function interrupted(signal) {
  process.stderr.write(`\n${signal}: stopping everything the benchmarks started\n`);
  killAllGroups();
  killDaemonLeftovers();
  process.exit(130);
}
process.on("SIGINT", interrupted);
process.on("SIGTERM", interrupted);
process.on("exit", killAllGroups);

// --duration <seconds> (or --duration=<seconds>): how long the soak runs.
let durationSeconds;
const args = [];
for (let i = 2; i < process.argv.length; i++) {
  const arg = process.argv[i];
  if (arg === "--duration") durationSeconds = process.argv[++i];
  else if (arg.startsWith("--duration=")) durationSeconds = arg.slice("--duration=".length);
  else args.push(arg);
}
const quick = args.includes("--quick");
const unknownFlags = args.filter((a) => a.startsWith("-") && a !== "--quick");
const wanted = args.filter((a) => !a.startsWith("-"));
const known = BENCHMARKS.map((b) => b.name);
const bad = [...unknownFlags, ...wanted.filter((w) => !known.includes(w))];
if (bad.length > 0) {
  process.stderr.write(
    `Unknown argument(s) ${bad.join(", ")}; benchmarks: ${known.join(", ")}; flags: --quick, --duration <s>\n`,
  );
  process.exit(2);
}
const selected = wanted.length > 0 ? BENCHMARKS.filter((b) => wanted.includes(b.name)) : DEFAULT_SET;

const nginx = findNginx();
let loadgen = "none";
try {
  const gen = loadGenerator();
  loadgen = `${gen.name} ${gen.version}`;
} catch (err) {
  process.stderr.write(`${err.message}\n`);
}
const machine = describeMachine({
  loadGenerator: loadgen,
  nginx: nginx ? nginx.version : "not installed",
  sandbox: sandboxMode(),
});
const startedAt = new Date();
const log = (message) => process.stderr.write(`  ${message}\n`);
const results = [];
for (const bench of selected) {
  process.stderr.write(`\n▶ ${bench.name}: ${bench.title}\n`);
  const started = performance.now();
  try {
    const result = await bench.run({ quick, log, nginx, durationSeconds });
    results.push({
      name: bench.name,
      title: bench.title,
      ...result,
      durationMs: performance.now() - started,
    });
  } catch (err) {
    process.stderr.write(`  ${bench.name} failed: ${err.stack ?? err}\n`);
    results.push({
      name: bench.name,
      title: bench.title,
      error: err.message ?? String(err),
      durationMs: performance.now() - started,
    });
  }
  process.stderr.write(`  done in ${((performance.now() - started) / 1000).toFixed(0)} s\n`);
}

const markdown = renderMarkdown({ startedAt, machine, results, quick });
const label = `${selected === DEFAULT_SET ? "all" : selected.map((b) => b.name).join("-")}${quick ? "-quick" : ""}`;
const json = {
  startedAt: startedAt.toISOString(),
  quick,
  machine,
  results: Object.fromEntries(
    results.map((r) => [
      r.name,
      { title: r.title, durationMs: r.durationMs, error: r.error, summary: r.summary, raw: r.raw },
    ]),
  ),
};
const written = writeReport({ startedAt, label, markdown, json });
process.stdout.write(`\n${markdown}`);
process.stderr.write(`\nwritten: ${written.markdown}\n         ${written.json}\n`);
process.exitCode = results.some((r) => r.error) ? 1 : 0;
