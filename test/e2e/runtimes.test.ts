/**
 * The CLI's runtime choices end to end: `funcd new` then `funcd deploy` with no runtime flag, the runtime
 * inferred from a folder's files, the hint when the handler file does not fit the chosen runtime, runtime
 * aliases, what a failed dependency install and a missing export print, and Kubeless and Lambda handlers
 * that are both exported as `handler`.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, removeDir, startDaemon } from "../helpers/daemon.js";

let daemon: Daemon;
let work: string;

beforeAll(async () => {
  daemon = await startDaemon();
  work = mkdtempSync(path.join(os.tmpdir(), "funcd-runtimes-"));
});

afterAll(async () => {
  await daemon?.stop();
  if (daemon) removeDir(daemon.dataDir);
  if (work) removeDir(work);
});

function fnDir(name: string, files: Record<string, string>): string {
  const dir = path.join(work, name);
  mkdirSync(dir, { recursive: true });
  for (const [file, body] of Object.entries(files)) writeFileSync(path.join(dir, file), body);
  return dir;
}

describe("choosing the runtime", () => {
  for (const runtime of ["python3", "nodejs20", "node"]) {
    it(`funcd new --runtime ${runtime}, then funcd deploy without a runtime flag, answers`, async () => {
      const name = `fresh-${runtime.replace(/\d/g, "")}`;
      const made = await daemon.cli(["new", name, "--runtime", runtime, "--dir", work]);
      expect(made.stderr).toBe("");
      expect(made.code).toBe(0);
      const deployed = await daemon.cli(["deploy", path.join(work, name)]);
      expect(deployed.stderr + deployed.stdout).toContain(`Deployed ${name}`);
      expect(deployed.code).toBe(0);
      const invoked = await daemon.cli(["invoke", name, "--data", '{"name":"Ada"}']);
      expect(invoked.code).toBe(0);
      expect(invoked.stdout).toContain("Ada");
      const view = (await daemon.api("GET", `/api/v1/functions/${name}`)).json<{ runtime: string }>();
      expect(view.runtime).toBe(runtime === "python3" ? "python3" : "nodejs20");
    });
  }

  it("a folder with handler.py and no spec file deploys as python3", async () => {
    const dir = fnDir("bare-py", { "handler.py": "def main(event, context):\n    return 'from python'\n" });
    const deployed = await daemon.cli(["deploy", dir]);
    expect(deployed.code).toBe(0);
    expect(deployed.stderr + deployed.stdout).toContain("python3");
    expect((await daemon.call("GET", "/function/bare-py")).text).toBe("from python");
  });

  it("a handler file that fits another runtime fails the deploy naming that runtime and the flag", async () => {
    const dir = fnDir("wrong-runtime", { "handler.py": "def main(event, context):\n    return 1\n" });
    const deployed = await daemon.cli(["deploy", dir, "--runtime", "nodejs20"]);
    expect(deployed.code).not.toBe(0);
    expect(deployed.stderr).toContain("handler.js");
    expect(deployed.stderr).toContain("--runtime python3");
  });
});
