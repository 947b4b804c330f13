/**
 * Summarises a V8 `.cpuprofile` (what `node --cpu-prof` writes): self time per function and per module,
 * optionally only for the samples inside a time window — so a profile of a whole daemon run can be cut
 * down to the seconds the load generator ran.
 *
 * Format: `nodes` (id, callFrame {functionName, url, lineNumber}, children), `samples` (a node id per
 * sample), `timeDeltas` (µs before each sample), `startTime`/`endTime` (µs, monotonic clock).
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { ROOT } from "./daemon.mjs";

/** The single .cpuprofile file written into `dir` (the daemon is one process). */
export function readProfile(dir) {
  const files = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"));
  if (files.length === 0) throw new Error(`no .cpuprofile in ${dir}: did the daemon exit cleanly?`);
  return JSON.parse(readFileSync(path.join(dir, files[0]), "utf8"));
}

/** Where a function lives, shortened: `dist/gateway/gateway.js:120`, `undici/lib/…`, `node:internal/…`. */
function location(callFrame) {
  const { url, lineNumber } = callFrame;
  if (!url) return "";
  let file = url.replace(/^file:\/\//, "");
  if (file.startsWith(`${ROOT}/`)) file = file.slice(ROOT.length + 1);
  file = file.replace(/^.*node_modules\//, "");
  return `${file}:${lineNumber + 1}`;
}

/**
 * Which part of the program a frame belongs to: funcd's own code (`funcd dist/gateway`), a package
 * (`undici`), a Node subsystem (`node:internal/http`), or a V8 pseudo-frame (`(garbage collector)`).
 */
function moduleOf(callFrame) {
  const { url, functionName } = callFrame;
  if (!url) return functionName.startsWith("(") ? functionName : "(native/V8 builtins)";
  const file = url.replace(/^file:\/\//, "");
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file);
  if (pkg) return pkg[1];
  if (file.startsWith("node:")) return file.split("/").slice(0, 2).join("/").replace(/\.js$/, "");
  if (file.startsWith(`${ROOT}/`)) {
    const rel = file.slice(ROOT.length + 1).split("/");
    return `funcd ${rel.slice(0, Math.min(rel.length - 1, 2)).join("/")}`;
  }
  return file;
}

/**
 * Self time per function and module. `window` = `{ fromUs, toUs }` measured back from the profile's end
 * (e.g. the load ran from 12 s to 2 s before the daemon exited).
 */
export function summarizeProfile(profile, { window, top = 15 } = {}) {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const from = window ? profile.endTime - window.fromUs : Number.NEGATIVE_INFINITY;
  const to = window ? profile.endTime - window.toUs : Number.POSITIVE_INFINITY;
  const byFunction = new Map();
  const byModule = new Map();
  let t = profile.startTime;
  let total = 0;
  let idle = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    if (t < from || t > to) continue;
    // A sample stands for the time until the next one (as Chrome DevTools counts it).
    const dt = profile.timeDeltas[i + 1] ?? 0;
    const frame = nodes.get(profile.samples[i])?.callFrame;
    if (!frame) continue;
    total += dt;
    if (frame.functionName === "(idle)") {
      idle += dt;
      continue;
    }
    const key = `${frame.functionName || "(anonymous)"}\u0000${location(frame)}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + dt);
    const mod = moduleOf(frame);
    byModule.set(mod, (byModule.get(mod) ?? 0) + dt);
  }
  const busy = total - idle;
  const rank = (map, n) =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([key, us]) => ({ key, ms: us / 1000, share: busy > 0 ? (us / busy) * 100 : 0 }));
  return {
    windowMs: total / 1000,
    busyMs: busy / 1000,
    idleMs: idle / 1000,
    functions: rank(byFunction, top).map(({ key, ...rest }) => {
      const [name, where] = key.split("\u0000");
      return { name, where, ...rest };
    }),
    modules: rank(byModule, 12).map(({ key, ...rest }) => ({ module: key, ...rest })),
  };
}
