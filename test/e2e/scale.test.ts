import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, removeDir, startDaemon } from "../helpers/daemon.js";

/**
 * `funcd scale` and `PATCH /api/v1/functions/{name}/scale` change one function's scale settings live.
 * The stored settings are milliseconds; what a user sends is a duration (`30s`, or a bare number of
 * seconds). Every field, alone and together, on a function deployed with defaults and one deployed with
 * explicit windows: what was not sent must stay as it was.
 */
let daemon: Daemon;
let work: string;

interface ScaleView {
  min: number;
  max: number;
  idleTimeoutMs: number;
  targetUtilization: number;
  stableWindowMs: number;
  panicWindowMs: number;
}

const DEFAULTS: ScaleView = {
  min: 0,
  max: 10,
  idleTimeoutMs: 300_000,
  targetUtilization: 0.7,
  stableWindowMs: 60_000,
  panicWindowMs: 6_000,
};
const EXPLICIT: ScaleView = {
  min: 0,
  max: 5,
  idleTimeoutMs: 90_000,
  targetUtilization: 0.5,
  stableWindowMs: 30_000,
  panicWindowMs: 3_000,
};

beforeAll(async () => {
  daemon = await startDaemon({ env: { FUNCD_POOL_SIZE: "0" } });
  work = mkdtempSync(path.join(os.tmpdir(), "funcd-scale-"));
});

afterAll(async () => {
  await daemon?.stop();
  if (daemon) removeDir(daemon.dataDir);
  if (work) removeDir(work);
});

const handler = "module.exports = { main: () => 'ok' };";

/** Deploys a fresh function (defaults, or explicit windows) and returns its name. */
async function deploy(name: string, explicit: boolean): Promise<string> {
  const scale = explicit
    ? {
        max: 5,
        idleTimeout: "90s",
        targetUtilization: 0.5,
        stableWindow: "30s",
        panicWindow: "3s",
      }
    : undefined;
  const res = await daemon.api("POST", "/api/v1/functions", {
    name,
    files: { "handler.js": handler },
    ...(scale ? { scale } : {}),
  });
  expect(res.status, res.text).toBe(201);
  return name;
}

async function scaleOf(name: string): Promise<ScaleView> {
  const res = await daemon.api("GET", `/api/v1/functions/${name}`);
  expect(res.status, res.text).toBe(200);
  return res.json<{ scale: ScaleView }>().scale;
}

/** Each case: CLI flags, the same change as a PATCH body, and the fields it changes (in the view). */
const CASES: Array<{
  name: string;
  flags: string[];
  body: Record<string, unknown>;
  changes: Partial<ScaleView>;
}> = [
  { name: "min", flags: ["--min", "1"], body: { min: 1 }, changes: { min: 1 } },
  { name: "max", flags: ["--max", "4"], body: { max: 4 }, changes: { max: 4 } },
  {
    name: "idle timeout",
    flags: ["--idle-timeout", "45s"],
    body: { idleTimeout: "45s" },
    changes: { idleTimeoutMs: 45_000 },
  },
  {
    name: "target utilization",
    flags: ["--target-utilization", "0.9"],
    body: { targetUtilization: 0.9 },
    changes: { targetUtilization: 0.9 },
  },
  {
    name: "stable window",
    flags: ["--stable-window", "2m"],
    body: { stableWindow: "2m" },
    changes: { stableWindowMs: 120_000 },
  },
  {
    name: "panic window",
    flags: ["--panic-window", "1500ms"],
    body: { panicWindow: 1.5 },
    changes: { panicWindowMs: 1_500 },
  },
  {
    name: "all together",
    flags: [
      "--min",
      "2",
      "--max",
      "3",
      "--idle-timeout",
      "10m",
      "--target-utilization",
      "0.6",
      "--stable-window",
      "40s",
      "--panic-window",
      "4s",
    ],
    body: {
      min: 2,
      max: 3,
      idleTimeout: "10m",
      targetUtilization: 0.6,
      stableWindow: "40s",
      panicWindow: 4,
    },
    changes: {
      min: 2,
      max: 3,
      idleTimeoutMs: 600_000,
      targetUtilization: 0.6,
      stableWindowMs: 40_000,
      panicWindowMs: 4_000,
    },
  },
];

describe.each([
  { deployed: "with defaults", explicit: false, before: DEFAULTS },
  { deployed: "with explicit windows", explicit: true, before: EXPLICIT },
])("scaling a function deployed $deployed", ({ explicit, before }) => {
  let n = 0;
  const fresh = () => `s${explicit ? "x" : "d"}${++n}`;

  it.each(CASES)("funcd scale changes $name and keeps every other setting", async ({ flags, changes }) => {
    const name = await deploy(fresh(), explicit);
    expect(await scaleOf(name)).toEqual(before);
    const result = await daemon.cli(["scale", name, ...flags]);
    expect(result.stderr, result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`Scaled ${name}`);
    expect(await scaleOf(name)).toEqual({ ...before, ...changes });
    // Scaling again with the settings now stored still works (nothing is read back as user input).
    const again = await daemon.cli(["scale", name, ...flags]);
    expect(again.code, again.stderr).toBe(0);
    expect(await scaleOf(name)).toEqual({ ...before, ...changes });
  });

  it.each(CASES)("PATCH …/scale changes $name and keeps every other setting", async ({ body, changes }) => {
    const name = await deploy(fresh(), explicit);
    const res = await daemon.api("PATCH", `/api/v1/functions/${name}/scale`, body);
    expect(res.status, res.text).toBe(200);
    expect(res.json<{ scale: ScaleView }>().scale).toEqual({ ...before, ...changes });
    expect(await scaleOf(name)).toEqual({ ...before, ...changes });
  });
});

describe("scale problems name only what the user sent", () => {
  it("a bad window is a 400 about that field alone", async () => {
    const name = await deploy("sbad", true);
    const res = await daemon.api("PATCH", `/api/v1/functions/${name}/scale`, { stableWindow: "2h" });
    expect(res.status).toBe(400);
    expect(res.headers["content-type"]).toContain("application/problem+json");
    expect(res.text).toContain("stableWindow");
    expect(res.text).not.toContain("panicWindow");
    expect(res.text).not.toContain("idleTimeout");
    expect(await scaleOf(name)).toEqual(EXPLICIT);
  });

  it("min above the stored max is refused and changes nothing", async () => {
    const name = await deploy("sminmax", true);
    const res = await daemon.api("PATCH", `/api/v1/functions/${name}/scale`, { min: 7 });
    expect(res.status).toBe(400);
    expect(res.text).toContain("scale.min (7) is larger than scale.max (5)");
    expect(await scaleOf(name)).toEqual(EXPLICIT);
    const cli = await daemon.cli(["scale", name, "--min", "7"]);
    expect(cli.code).not.toBe(0);
    expect(cli.stderr).toContain("scale.min (7) is larger than scale.max (5)");
  });

  it("funcd scale with no flag says which flags exist", async () => {
    const cli = await daemon.cli(["scale", "sd1"]);
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain("--stable-window");
  });
});
