/**
 * Load generation in a separate process: wrk when it is installed, else autocannon (when installed into
 * bench/node_modules or on PATH: `npm install --prefix bench autocannon`). `BENCH_LOADGEN=wrk|autocannon`
 * forces one. Both are closed-loop: each connection sends its next request when the last answer arrived.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { ROOT } from "./daemon.mjs";
import { spawnGroup, stopGroup } from "./procs.mjs";

const LOCAL_AUTOCANNON = path.join(ROOT, "bench", "node_modules", ".bin", "autocannon");

let detected;

/** The load generator to use: `{ name, version, command }`, or throws with how to install one. */
export function loadGenerator() {
  if (detected) return detected;
  const forced = process.env.BENCH_LOADGEN;
  const wrk = spawnSync("wrk", ["-v"], { encoding: "utf8" });
  if ((!forced || forced === "wrk") && !wrk.error) {
    const version = /wrk (\S+)/.exec(wrk.stdout + wrk.stderr)?.[1] ?? "?";
    detected = { name: "wrk", version, command: "wrk", latencyResolutionMs: 0.001 };
    return detected;
  }
  if (!forced || forced === "autocannon") {
    const command = existsSync(LOCAL_AUTOCANNON) ? LOCAL_AUTOCANNON : "autocannon";
    const probe = spawnSync(command, ["--version"], { encoding: "utf8" });
    if (!probe.error) {
      // autocannon reports latencies in whole milliseconds: too coarse for the 1-connection latency rows.
      const version = (probe.stdout || probe.stderr).trim().split("\n")[0];
      detected = { name: "autocannon", version, command, latencyResolutionMs: 1 };
      return detected;
    }
  }
  throw new Error(
    "No load generator: install wrk (bash scripts/bench-deps.sh) or autocannon (npm install --prefix bench autocannon)",
  );
}

/** Milliseconds from a wrk duration such as `812.00us`, `1.35ms`, `2.01s`, `1.00m`. */
function wrkMs(value, unit) {
  const scale = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit];
  return Number(value) * scale;
}

export function parseWrk(text) {
  const quantile = (q) => {
    const m = new RegExp(`^\\s+${q}%\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, "m").exec(text);
    return m ? wrkMs(m[1], m[2]) : Number.NaN;
  };
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1] ?? Number.NaN),
    requests: Number(/(\d+) requests in/.exec(text)?.[1] ?? 0),
    p50: quantile(50),
    p90: quantile(90),
    p99: quantile(99),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0),
    socketErrors: socket ? socket.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
  };
}

function parseAutocannon(text) {
  const r = JSON.parse(text);
  return {
    rps: r.requests.average,
    requests: r.requests.total,
    p50: r.latency.p50,
    p90: r.latency.p90,
    p99: r.latency.p99,
    non2xx: r.non2xx,
    socketErrors: r.errors + r.timeouts,
  };
}

/**
 * One load run: `connections` keep-alive connections for `seconds`. wrk gets one thread per connection
 * up to 2 (this is a 2-core machine; more threads only steal CPU from the server being measured).
 */
export async function runLoad(url, { connections, seconds }) {
  const gen = loadGenerator();
  const args =
    gen.name === "wrk"
      ? [
          "-t",
          String(Math.min(2, connections)),
          "-c",
          String(connections),
          "-d",
          `${seconds}s`,
          "--timeout",
          "10s",
        ]
      : ["-c", String(connections), "-d", String(seconds), "--json"];
  if (gen.name === "wrk") args.push("--latency");
  const child = spawnGroup(gen.command, [...args, url], {});
  const killer = setTimeout(() => void stopGroup(child, { signal: "SIGKILL" }), (seconds + 30) * 1000);
  const code = await child.exited;
  clearTimeout(killer);
  const out = child.output();
  if (code !== 0) throw new Error(`${gen.name} exited with ${code}: ${out}`);
  const result = gen.name === "wrk" ? parseWrk(out) : parseAutocannon(out.slice(out.indexOf("{")));
  if (!Number.isFinite(result.rps)) throw new Error(`cannot read ${gen.name}'s output: ${out}`);
  return { ...result, connections, seconds };
}

/** A warm-up run (results dropped) and then the measured run on the same URL. */
export async function warmThenMeasure(url, { connections, seconds, warmupSeconds }) {
  await runLoad(url, { connections, seconds: warmupSeconds });
  return runLoad(url, { connections, seconds });
}
