/**
 * Scaling: how the autoscaler and the gateway's queue behave under changing load, on a 50 ms handler with
 * `concurrency: 4`. Three phases on one daemon, one function:
 * 1. step load — 1 closed-loop client, then 32 at once: errors, time until the rolling p99 is back under
 *    2× the handler time, instances reached;
 * 2. scale-down — after the load, time until the function is back at `scale.min` (0) while a trickle of
 *    1 request/s continues for 10 s (none may fail);
 * 3. burst from zero — 200 requests at once to the function at zero: errors, time to the last response.
 * Baselines in the same run: the handler's own time, and single requests to a warm instance.
 * The API is polled every 250 ms throughout for the instances (and the autoscaler's desired count).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { Agent, request } from "undici";
import { startDaemon } from "./lib/daemon.mjs";
import { count, ms, ratio, seconds, summarize } from "./lib/stats.mjs";

export const name = "scaling";
export const title = "Scaling — step load 1 → 32 clients, scale-down to zero, burst of 200 from zero";

const FN = "scaling-sleep";
const HANDLER_MS = 50;
const P99_LIMIT_MS = 2 * HANDLER_MS;
const RECOVERY_TARGET_MS = 5_000;
const SPEC = {
  runtime: "nodejs20",
  files: {
    "handler.js": `module.exports = { main: () => new Promise((resolve) => setTimeout(() => resolve("ok"), ${HANDLER_MS})) };\n`,
  },
  concurrency: 4,
  scale: { max: 10, idleTimeout: "10s", stableWindow: "10s", panicWindow: "2s" },
};
const SCALE_MIN = 0;
const POLL_MS = 250;
const BURST = 200;
const TRICKLE_MS = 10_000;

/** One request through the gateway; never throws: a transport error is recorded as status 0. */
async function call(url, agent) {
  const start = performance.now();
  try {
    const res = await request(url, { dispatcher: agent, headersTimeout: 60_000, bodyTimeout: 60_000 });
    await res.body.text();
    return { start, latency: performance.now() - start, status: res.statusCode };
  } catch (err) {
    return { start, latency: performance.now() - start, status: 0, error: err.code ?? err.message };
  }
}

/** `clients` closed loops calling `url` until `until` (performance.now()); results pushed into `out`. */
async function closedLoop(url, agent, clients, until, out) {
  const loop = async () => {
    while (performance.now() < until) out.push(await call(url, agent));
  };
  await Promise.all(Array.from({ length: clients }, loop));
}

/** The autoscaler's desired count from /metrics (the function view does not carry it). */
async function desiredFromMetrics(daemon) {
  try {
    const res = await request(`${daemon.url}/metrics`, {
      headers: { authorization: `Bearer ${daemon.token}` },
    });
    const text = await res.body.text();
    const m = new RegExp(`^funcd_desired_instances\\{function="${FN}"\\} (\\d+)`, "m").exec(text);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Polls the function every 250 ms until stopped: `{ t, instances, ready, desired, waiting }` samples. */
function startPoller(daemon, t0) {
  const samples = [];
  let running = true;
  const done = (async () => {
    while (running) {
      const next = performance.now() + POLL_MS;
      try {
        const [view, metricDesired] = await Promise.all([daemon.describe(FN), desiredFromMetrics(daemon)]);
        samples.push({
          t: performance.now() - t0,
          instances: view.instances.length,
          ready: view.instances.filter((i) => i.state === "ready").length,
          desired: view.desired ?? metricDesired,
          waiting: view.waiting,
        });
      } catch (err) {
        samples.push({ t: performance.now() - t0, error: err.message });
      }
      await sleep(Math.max(0, next - performance.now()));
    }
  })();
  return {
    samples,
    stop: async () => {
      running = false;
      await done;
    },
  };
}

/** Max of a field over the samples taken in [from, to) (ms since t0). */
function maxIn(samples, field, from, to = Number.POSITIVE_INFINITY) {
  const values = samples
    .filter((s) => s.t >= from && s.t < to && Number.isFinite(s[field]))
    .map((s) => s[field]);
  return values.length > 0 ? Math.max(...values) : Number.NaN;
}

const failed = (r) => r.status !== 200;

/** Error counts by status (0 = transport error), e.g. `{ "503": 2 }`. */
function errorsByStatus(results) {
  const by = {};
  for (const r of results.filter(failed)) {
    const key = r.status === 0 ? `error ${r.error}` : String(r.status);
    by[key] = (by[key] ?? 0) + 1;
  }
  return by;
}

const describeErrors = (results) => {
  const by = errorsByStatus(results);
  const n = results.filter(failed).length;
  return n === 0
    ? "0"
    : `${n} (${Object.entries(by)
        .map(([k, v]) => `${k}: ${v}`)
        .join(", ")})`;
};

/**
 * Sliding 1 s windows (by request start, stepped by 100 ms) after the step: the recovery time is the start
 * of the first window from which every later window's p99 stays ≤ the limit. 0 when it never went over.
 */
function recovery(results, stepAt, endAt) {
  const windows = [];
  for (let from = stepAt; from + 1000 <= endAt; from += 100) {
    const lat = results.filter((r) => r.start >= from && r.start < from + 1000).map((r) => r.latency);
    if (lat.length === 0) continue;
    windows.push({ at: from - stepAt, n: lat.length, p99: summarize(lat).p99 });
  }
  let lastBad = -1;
  windows.forEach((w, i) => {
    if (w.p99 > P99_LIMIT_MS) lastBad = i;
  });
  if (lastBad === windows.length - 1) return { ms: Number.NaN, windows };
  return { ms: lastBad < 0 ? 0 : windows[lastBad + 1].at, windows };
}

export async function run({ quick, log }) {
  const lowMs = quick ? 2_000 : 5_000;
  const highMs = quick ? 6_000 : 15_000;
  const highClients = 32;
  const agent = new Agent({ connections: 256, pipelining: 1, keepAliveTimeout: 30_000 });
  const daemon = await startDaemon();
  const url = `${daemon.url}/function/${FN}`;
  const notes = [];
  const summary = [];
  try {
    log(`deploy ${FN} (concurrency 4, scale max 10, idle 10 s, stable 10 s, panic 2 s)`);
    await daemon.deploy(FN, SPEC);
    await daemon.settle(FN, { count: 1 });

    // Baselines: the handler's own time (its setTimeout, in this process) and warm single requests.
    const handlerOwn = [];
    for (let i = 0; i < 10; i++) {
      const s = performance.now();
      await sleep(HANDLER_MS);
      handlerOwn.push(performance.now() - s);
    }
    const warm = [];
    for (let i = 0; i < 20; i++) {
      const r = await call(url, agent);
      if (failed(r)) throw new Error(`warm request answered ${r.status} ${r.error ?? ""}`);
      warm.push(r.latency);
    }
    const handler = summarize(handlerOwn);
    const warmS = summarize(warm);
    log(`baseline: handler ${ms(handler.median)}, warm request ${ms(warmS.median)}`);

    const t0 = performance.now();
    const poller = startPoller(daemon, t0);
    try {
      // 1. Step load.
      log(`step load: 1 client for ${lowMs / 1000} s, then ${highClients} for ${highMs / 1000} s`);
      const step = [];
      const stepAt = t0 + lowMs;
      const loadEnd = stepAt + highMs;
      await Promise.all([
        closedLoop(url, agent, 1, loadEnd, step),
        sleep(lowMs).then(() => closedLoop(url, agent, highClients - 1, loadEnd, step)),
      ]);
      const loadEndedAt = performance.now();
      const low = step.filter((r) => r.start < stepAt);
      const high = step.filter((r) => r.start >= stepAt);
      const rec = recovery(high, stepAt, loadEnd);
      const lowS = summarize(low.map((r) => r.latency));
      const highS = summarize(high.map((r) => r.latency));
      const stepInstances = maxIn(poller.samples, "instances", stepAt - t0, loadEndedAt - t0);
      const stepDesired = maxIn(poller.samples, "desired", stepAt - t0, loadEndedAt - t0);
      log(
        `step: ${step.length} requests, errors ${describeErrors(step)}, recovered in ${seconds(rec.ms)}, ${stepInstances} instances`,
      );

      // 2. Scale-down: a trickle of 1 request/s for 10 s, then nothing; until the function runs 0 instances.
      log("scale-down: trickle 1 req/s for 10 s, waiting for 0 instances");
      const trickle = [];
      const trickleDone = (async () => {
        for (let i = 0; i < TRICKLE_MS / 1000; i++) {
          const next = performance.now() + 1000;
          trickle.push(await call(url, agent));
          await sleep(Math.max(0, next - performance.now()));
        }
      })();
      const downDeadline = performance.now() + 60_000;
      let downMs = Number.NaN;
      for (;;) {
        const view = await daemon.describe(FN);
        // While the trickle runs, 0 instances would only mean its next request cold-starts: keep going.
        if (view.instances.length === SCALE_MIN && performance.now() >= loadEndedAt + TRICKLE_MS) {
          downMs = performance.now() - loadEndedAt;
          break;
        }
        if (performance.now() > downDeadline) break;
        await sleep(POLL_MS);
      }
      await trickleDone;
      log(`scale-down: ${seconds(downMs)}, trickle errors ${describeErrors(trickle)}`);

      // 3. Burst from zero.
      await daemon.waitForZero(FN, 60_000);
      log(`burst: ${BURST} requests at once to the function at zero`);
      const burstAt = performance.now();
      const burst = await Promise.all(Array.from({ length: BURST }, () => call(url, agent)));
      const burstLast = Math.max(...burst.map((r) => r.start + r.latency)) - burstAt;
      const burstS = summarize(burst.map((r) => r.latency));
      await sleep(2 * POLL_MS);
      const burstInstances = maxIn(poller.samples, "instances", burstAt - t0);
      const burstDesired = maxIn(poller.samples, "desired", burstAt - t0);
      log(
        `burst: errors ${describeErrors(burst)}, last response ${ms(burstLast)}, ${burstInstances} instances`,
      );
      await poller.stop();

      const stepErrors = step.filter(failed).length;
      const trickleErrors = trickle.filter(failed).length;
      const burstErrors = burst.filter(failed).length;
      const instancesCell = (n, d) => `${n}${Number.isFinite(d) ? ` (desired ≤ ${d})` : ""}`;
      summary.push(
        {
          target: `step 1 → ${highClients} clients: errors (target 0)`,
          measured: `${describeErrors(step)} of ${count(step.length)}`,
          met: stepErrors === 0,
        },
        {
          target: `step: rolling p99 back under ${P99_LIMIT_MS} ms (2× handler) — target ≤ 5 s`,
          measured: Number.isFinite(rec.ms) ? seconds(rec.ms) : "never",
          met: Number.isFinite(rec.ms) && rec.ms <= RECOVERY_TARGET_MS,
        },
        {
          target: `burst of ${BURST} from zero: errors (target 0)`,
          measured: `${describeErrors(burst)}; last response ${ms(burstLast)} (warm single request ${ms(warmS.median)})`,
          met: burstErrors === 0,
        },
        {
          target: "scale-down: end of load → 0 instances, no failed request",
          measured: `${Number.isFinite(downMs) ? seconds(downMs) : "> 60 s"}, ${trickleErrors} failed`,
          met: Number.isFinite(downMs) ? trickleErrors === 0 : false,
        },
      );

      const rows = [
        ["baseline", "handler's own time (setTimeout 50 ms, median)", ms(handler.median), "–", "–", "–", "–"],
        [
          "baseline",
          "warm single request through the gateway, 20 sequential",
          ms(warmS.median),
          ms(warmS.p99),
          "0",
          "1",
          "1.00×",
        ],
        [
          "step",
          `1 client, ${lowMs / 1000} s (${count(low.length)} requests)`,
          ms(lowS.median),
          ms(lowS.p99),
          describeErrors(low),
          String(maxIn(poller.samples, "instances", 0, stepAt - t0)),
          ratio(lowS.median, warmS.median),
        ],
        [
          "step",
          `${highClients} clients, ${highMs / 1000} s (${count(high.length)} requests, ${count((high.length / highMs) * 1000)} req/s)`,
          ms(highS.median),
          ms(highS.p99),
          describeErrors(high),
          instancesCell(stepInstances, stepDesired),
          ratio(highS.median, warmS.median),
        ],
        [
          "step",
          `recovery: rolling p99 (1 s windows) ≤ ${P99_LIMIT_MS} ms from`,
          Number.isFinite(rec.ms) ? seconds(rec.ms) : "never",
          "–",
          "–",
          "–",
          "–",
        ],
        [
          "scale-down",
          `end of load → 0 instances (1 req/s for the first ${TRICKLE_MS / 1000} s)`,
          Number.isFinite(downMs) ? seconds(downMs) : "> 60 s",
          "–",
          describeErrors(trickle),
          "→ 0",
          "–",
        ],
        [
          "baseline",
          `burst floor: ${BURST} requests / (10 instances × 4) × ${HANDLER_MS} ms, no start cost`,
          "–",
          ms(Math.ceil(BURST / (SPEC.scale.max * SPEC.concurrency)) * HANDLER_MS),
          "–",
          String(SPEC.scale.max),
          "–",
        ],
        [
          "burst",
          `${BURST} requests at once at zero instances`,
          ms(burstS.median),
          `${ms(burstS.p99)} (last ${ms(burstLast)})`,
          describeErrors(burst),
          instancesCell(burstInstances, burstDesired),
          ratio(burstS.median, warmS.median),
        ],
      ];
      notes.push(
        `Function: Node, handler awaits \`setTimeout(${HANDLER_MS})\`, \`concurrency: 4\`, ` +
          "`scale: { max: 10, idleTimeout: 10s, stableWindow: 10s, panicWindow: 2s }` (min 0, targetUtilization 0.7 " +
          "→ 32 clients want ceil(32 / 2.8) = 12, capped at 10). Clients are closed loops in this process (undici, " +
          "256 connections); latency is request sent → body read.",
        `Recovery: sliding 1 s windows of the requests started after the step (stepped by 100 ms); the time is the ` +
          `start of the first window from which every later window's p99 is ≤ ${P99_LIMIT_MS} ms (0 = never above).`,
        "Instances: maximum of `instances.length` from `GET /api/v1/functions/<name>` polled every 250 ms; " +
          "`desired` is the autoscaler's `funcd_desired_instances` gauge from /metrics (the function view does not carry it).",
        `Scale-down is timed from the end of the step load; the trickle keeps the function in use for ${TRICKLE_MS / 1000} s, ` +
          "then the 10 s idle timeout and the 10 s stable window apply, so ~20 s is the floor these settings allow.",
        "The burst is sent after the scale-down (the function at 0 instances); its `p99` cell is the slowest request and " +
          "the time from sending all requests to the last response. Instances started on demand by the gateway (a " +
          "request finding no free slot) do not show in `desired`, which follows the autoscaler's own decisions.",
      );
      return {
        summary,
        sections: [
          {
            table: {
              header: ["phase", "case", "median", "p99", "errors", "instances", "median vs warm"],
              rows,
            },
            notes,
          },
        ],
        raw: {
          spec: SPEC.scale,
          concurrency: SPEC.concurrency,
          baseline: { handlerOwnMs: handlerOwn, warmMs: warm },
          step: {
            lowMs,
            highMs,
            clients: highClients,
            errors: errorsByStatus(step),
            recoveryMs: rec.ms,
            windows: rec.windows,
            instancesMax: stepInstances,
            desiredMax: stepDesired,
            requests: step.map((r) => [Math.round(r.start - t0), +r.latency.toFixed(2), r.status]),
          },
          scaleDown: { ms: downMs, trickle, errors: errorsByStatus(trickle) },
          burst: {
            n: BURST,
            lastResponseMs: burstLast,
            errors: errorsByStatus(burst),
            instancesMax: burstInstances,
            desiredMax: burstDesired,
            latencies: burst.map((r) => [+r.latency.toFixed(2), r.status]),
          },
          instances: poller.samples,
        },
      };
    } finally {
      await poller.stop();
    }
  } finally {
    await agent.close().catch(() => {});
    await daemon.stop();
  }
}
