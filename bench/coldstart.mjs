/**
 * Cold start: a request to a function with no instance running → the first byte of its answer, for Node
 * and (when its runtime is in the checkout) Python. Baseline: spawning the bare runtime server until it
 * first answers — what any process-per-function platform pays at least.
 */
import { startDaemon } from "./lib/daemon.mjs";
import { cleanupStack } from "./lib/procs.mjs";
import { bareStartTimes, RUNTIMES, runtimeAvailable } from "./lib/runtimes.mjs";
import { ms, plusMs, ratio, summarize } from "./lib/stats.mjs";

export const name = "coldstart";
export const title = "Cold start — request at zero instances → first byte";

/** Short enough that the fleet's reaper (every second) stops the instance right after each request. */
const IDLE_TIMEOUT = "200ms";

export async function run({ quick, log }) {
  const runs = quick ? 5 : 30;
  const raw = { runs };
  const rows = [];
  const notes = [];
  const summary = [];
  const cleanup = cleanupStack();
  try {
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

    const daemon = await startDaemon();
    cleanup.defer(daemon.stop);
    for (const key of runtimes) {
      const rt = RUNTIMES[key];
      const fnName = `cold-${key}`;
      const bare = summarize(baselines[key]);
      rows.push([
        rt.label,
        "bare runtime: spawn → first answer (baseline)",
        ms(bare.median),
        ms(bare.p99),
        ms(bare.min),
        "1.00×",
        "–",
      ]);
      raw[key] = { bare: baselines[key] };
      try {
        await daemon.deploy(fnName, {
          runtime: rt.runtime,
          files: rt.files(),
          scale: { idleTimeout: IDLE_TIMEOUT },
        });
      } catch (err) {
        // The Python runtime is being added while this is written: report what the daemon said.
        notes.push(`${rt.label} through funcd: deploy failed — ${err.message}`);
        rows.push([rt.label, "funcd: request at zero → first byte", "failed", "–", "–", "–", "–"]);
        continue;
      }
      log(`${key}: ${runs} cold starts through funcd`);
      const cold = [];
      for (let i = 0; i < runs; i++) {
        await daemon.waitForZero(fnName);
        const res = await daemon.invoke(`/function/${fnName}`);
        if (res.status !== 200) throw new Error(`/function/${fnName} answered ${res.status}: ${res.text}`);
        cold.push(res.firstByteMs);
      }
      raw[key].funcd = cold;
      const c = summarize(cold);
      rows.push([
        rt.label,
        "funcd: request at zero → first byte",
        ms(c.median),
        ms(c.p99),
        ms(c.min),
        ratio(c.median, bare.median),
        plusMs(c.median - bare.median),
      ]);
      summary.push({
        target: `${rt.label} cold start, median (vs bare runtime)`,
        measured: `${ms(c.median)} vs ${ms(bare.median)} (${ratio(c.median, bare.median)})`,
        met: undefined,
      });
    }
  } finally {
    await cleanup.run();
  }
  notes.push(
    `${runs} runs each; p99 of ${runs} samples is the slowest one. Before each request the function's ` +
      `\`scale.idleTimeout\` (${IDLE_TIMEOUT}) lets the fleet stop the instance, and the API is polled until it ` +
      "lists none.",
    "funcd's cold start includes what a process driver instance needs: the sandbox (bwrap namespaces, " +
      "per-function uid, memory cgroup when writable), the runtime start, the `/healthz` readiness poll " +
      "and the proxy hop. Only the process driver exists so far; no pre-warmed pool yet.",
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
