/**
 * Cold start: a request to a function with no instance running → the first byte of its answer, for Node
 * and (when its runtime is in the checkout) Python. Baseline: spawning the bare runtime server until it
 * first answers — what any process-per-function platform pays at least.
 */
import { spawnSync } from "node:child_process";
import { startDaemon } from "./lib/daemon.mjs";
import { bareStartTimes, RUNTIMES, runtimeAvailable } from "./lib/runtimes.mjs";
import { ms, plusMs, ratio, summarize } from "./lib/stats.mjs";

export const name = "coldstart";
export const title = "Cold start — request at zero instances → first byte";

/** Short enough that the fleet's reaper (every second) stops the instance right after each request. */
const IDLE_TIMEOUT = "200ms";

/** The daemon's configurations compared: the warm pool as shipped, and switched off. */
const VARIANTS = [
  { key: "pool", label: "warm pool on (default)", short: "warm pool on", env: {} },
  {
    key: "noPool",
    label: "warm pool off (FUNCD_POOL_SIZE=0)",
    short: "warm pool off",
    env: { FUNCD_POOL_SIZE: "0" },
  },
  // The Docker driver with buildless functions (the kind its pool serves): only when an engine answers.
  {
    key: "dockerPool",
    label: "docker driver, buildless, warm pool on",
    short: "docker + warm pool",
    env: { FUNCD_DRIVER: "docker" },
    spec: { build: "none" },
    docker: true,
  },
  {
    key: "dockerNoPool",
    label: "docker driver, buildless, warm pool off",
    short: "docker, no pool",
    env: { FUNCD_DRIVER: "docker", FUNCD_POOL_SIZE: "0" },
    spec: { build: "none" },
    docker: true,
  },
];

/** Whether a Docker engine answers here (the docker variants are skipped, with a note, when none does). */
function dockerAvailable() {
  return spawnSync("docker", ["info"], { stdio: "ignore", timeout: 10_000 }).status === 0;
}

/** `runs` cold starts of a hello function of runtime `key`; undefined (with a note) when it cannot deploy. */
async function coldStarts(daemon, key, runs, log, variant, notes) {
  const rt = RUNTIMES[key];
  const fnName = `cold-${key}`;
  try {
    await daemon.deploy(fnName, {
      runtime: rt.runtime,
      files: rt.files(),
      scale: { idleTimeout: IDLE_TIMEOUT },
      ...variant.spec,
    });
  } catch (err) {
    notes.push(`${rt.label}, ${variant.label}: deploy failed — ${err.message}`);
    return undefined;
  }
  log(`${key}, ${variant.label}: ${runs} cold starts through funcd`);
  const cold = [];
  for (let i = 0; i < runs; i++) {
    await daemon.waitForZero(fnName);
    const res = await daemon.invoke(`/function/${fnName}`);
    if (res.status !== 200) throw new Error(`/function/${fnName} answered ${res.status}: ${res.text}`);
    cold.push(res.firstByteMs);
  }
  return cold;
}

export async function run({ quick, log }) {
  const runs = quick ? 5 : 30;
  const raw = { runs };
  const rows = [];
  const notes = [];
  const summary = [];
  const runtimes = ["node", "python"].filter((key) => {
    const available = runtimeAvailable(key);
    if (!available.ok) notes.push(`${RUNTIMES[key].label} skipped: ${available.why}.`);
    return available.ok;
  });

  const baselines = {};
  for (const key of runtimes) {
    log(`${key}: bare runtime, ${runs} starts`);
    baselines[key] = await bareStartTimes(key, runs);
  }

  for (const key of runtimes) {
    const bare = summarize(baselines[key]);
    raw[key] = { bare: baselines[key] };
    rows.push([
      RUNTIMES[key].label,
      "bare runtime: spawn → first answer (baseline)",
      ms(bare.median),
      ms(bare.p99),
      ms(bare.min),
      "1.00×",
      "–",
    ]);
  }
  const docker = dockerAvailable();
  if (!docker) notes.push("No Docker engine answers (`docker info`): the docker rows are missing.");
  for (const variant of VARIANTS.filter((v) => docker || !v.docker)) {
    const daemon = await startDaemon({ env: variant.env, startTimeoutMs: 120_000 });
    try {
      for (const key of runtimes) {
        const cold = await coldStarts(daemon, key, runs, log, variant, notes);
        const bare = summarize(baselines[key]);
        const label = RUNTIMES[key].label;
        if (!cold) {
          rows.push([label, `funcd, ${variant.label}`, "failed", "–", "–", "–", "–"]);
          continue;
        }
        raw[key][variant.key] = cold;
        const c = summarize(cold);
        rows.push([
          label,
          `funcd, ${variant.label}`,
          ms(c.median),
          ms(c.p99),
          ms(c.min),
          ratio(c.median, bare.median),
          plusMs(c.median - bare.median),
        ]);
        summary.push({
          target: `${label} cold start, ${variant.short}, median (vs bare runtime)`,
          measured: `${ms(c.median)} vs ${ms(bare.median)} (${ratio(c.median, bare.median)})`,
          met: undefined,
        });
      }
    } finally {
      await daemon.stop();
    }
  }
  notes.push(
    `${runs} runs each; p99 of ${runs} samples is the slowest one. Before each request the function's ` +
      `\`scale.idleTimeout\` (${IDLE_TIMEOUT}) lets the fleet stop the instance, and the API is polled until it ` +
      "lists none.",
    "funcd's cold start includes what a process driver instance needs: the sandbox (bwrap namespaces, " +
      "per-function uid, memory cgroup when writable), the runtime start, the `/healthz` readiness poll " +
      "and the proxy hop. With the warm pool, an instance booted ahead of need (generic, sandboxed) is " +
      "specialized into the function instead: its files are linked into the slot and the handler loaded. " +
      "Docker rows: a buildless function; a cold start is a container create + start (hardened, port published " +
      "on 127.0.0.1), or with the pool a generic container specialized the same way.",
  );
  return {
    summary,
    sections: [
      {
        table: { header: ["runtime", "case", "median", "p99", "min", "vs baseline", "added (median)"], rows },
        notes,
      },
    ],
    raw,
  };
}
