/**
 * The report: one markdown file for humans and one JSON file with every raw number, both named after
 * the run's start time and the benchmarks in it.
 *
 * A benchmark returns `{ title, summary, sections, raw }`:
 * - `summary`: `[{ target, measured, met }]` rows for the targets table at the top (`met` undefined = n/a),
 * - `sections`: `[{ heading, text?, table?: { header, rows }, notes?: [] }]`,
 * - `raw`: anything JSON-serialisable.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ROOT } from "./daemon.mjs";
import { verdict } from "./stats.mjs";

export const RESULTS_DIR = path.join(ROOT, "bench", "results");

/** A markdown table; `|` inside cells is escaped. */
export function table({ header, rows }) {
  const cell = (c) => String(c).replaceAll("|", "\\|");
  return [
    `| ${header.map(cell).join(" | ")} |`,
    `| ${header.map(() => "---").join(" | ")} |`,
    ...rows.map((r) => `| ${r.map(cell).join(" | ")} |`),
  ].join("\n");
}

function git(args) {
  try {
    return execFileSync("git", args, {
      cwd: ROOT,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
  } catch {
    return "";
  }
}

/** What the numbers depend on: the machine, its load when the run started, the tools and the code. */
export function describeMachine(tools) {
  const cpus = os.cpus();
  const [load1, load5] = os.loadavg();
  const commit = git(["rev-parse", "--short", "HEAD"]);
  const dirty = git(["status", "--porcelain", "--", "src", "templates"]) !== "";
  let kernel = os.release();
  try {
    kernel = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
  } catch {
    // Not Linux: os.release() will do.
  }
  let built = "?";
  try {
    built = statSync(path.join(ROOT, "dist", "app.js"))
      .mtime.toISOString()
      .slice(0, 16)
      .replace("T", " ");
  } catch {
    // Not built: the daemon will not start either, and say so.
  }
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? "?",
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    kernel,
    loadAverage: { "1m": load1, "5m": load5 },
    commit: commit ? `${commit}${dirty ? " + uncommitted changes in src/ or templates/" : ""}` : "?",
    built,
    ...tools,
  };
}

/** The markdown report of a run. */
export function renderMarkdown({ startedAt, machine, results, quick }) {
  const lines = [`# funcd benchmarks — ${startedAt.toISOString().slice(0, 16).replace("T", " ")} UTC`, ""];
  if (quick)
    lines.push("**Quick mode** (`--quick`): shortened runs for checking the suite, not for quoting.", "");
  lines.push(
    `Machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, Linux ${machine.kernel}, Node ${machine.node}; ` +
      `load average at start ${machine.loadAverage["1m"].toFixed(2)} (1 min) — load generator, proxies, daemon and ` +
      "instances all share these cores, and so does anything else running.",
    `Tools: ${machine.loadGenerator}, nginx ${machine.nginx}, sandbox ${machine.sandbox}. Code: ${machine.commit} (dist/ built ${machine.built} UTC).`,
    "",
    "Every figure is compared with a baseline measured in the same run (see bench/README.md for how to read them).",
    "",
  );
  const summary = results.flatMap((r) =>
    (r.summary ?? []).map((s) => [r.name, s.target, s.measured, verdict(s.met)]),
  );
  if (summary.length > 0) {
    lines.push(
      "## Summary",
      "",
      "The issue's targets (met / not met), and each benchmark's headline figure where it sets none (n/a).",
      "",
      table({ header: ["benchmark", "target or figure", "measured", "verdict"], rows: summary }),
      "",
    );
  }
  for (const r of results) {
    lines.push(`## ${r.name}: ${r.title}`, "");
    if (r.error) {
      lines.push(`**Failed** after ${(r.durationMs / 1000).toFixed(0)} s: ${r.error}`, "");
      continue;
    }
    for (const s of r.sections ?? []) {
      if (s.heading) lines.push(`### ${s.heading}`, "");
      if (s.text) lines.push(s.text, "");
      if (s.table) lines.push(table(s.table), "");
      for (const n of s.notes ?? []) lines.push(`- ${n}`);
      if (s.notes?.length) lines.push("");
    }
    lines.push(`_${r.name} took ${(r.durationMs / 1000).toFixed(0)} s._`, "");
  }
  return `${lines.join("\n").trimEnd()}\n`;
}

/** Writes `<stamp>-<label>.md` and `.json` into bench/results; returns their paths. */
export function writeReport({ startedAt, label, markdown, json }) {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = startedAt.toISOString().slice(0, 16).replace(":", "");
  const base = path.join(RESULTS_DIR, `${stamp}-${label}`);
  writeFileSync(`${base}.md`, markdown);
  writeFileSync(`${base}.json`, `${JSON.stringify(json, null, 2)}\n`);
  return { markdown: `${base}.md`, json: `${base}.json` };
}
