import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanEnv, type Daemon, ROOT, removeDir, runCli, startDaemon } from "../helpers/daemon.js";

let daemon: Daemon;
let work: string;

beforeAll(async () => {
  daemon = await startDaemon();
  work = mkdtempSync(path.join(os.tmpdir(), "funcd-cli-"));
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

describe("funcd CLI against a running daemon", () => {
  it("deploys a folder, lists, describes, invokes, shows logs and deletes it", async () => {
    const dir = fnDir("greeter", {
      "handler.js":
        "module.exports = { main: (e) => { console.log('greeting', e.data && e.data.name); return { hi: e.data && e.data.name }; } };",
      "package.json": '{"name":"greeter","type":"commonjs"}',
    });
    const deployed = await daemon.cli(["deploy", dir, "--route", "/greet"]);
    expect(deployed.stderr + deployed.stdout).toContain("greeter");
    expect(deployed.code).toBe(0);

    const list = await daemon.cli(["list"]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/greeter\s+nodejs20/);

    const invoked = await daemon.cli(["invoke", "greeter", "--data", '{"name":"Ada"}']);
    expect(invoked.code).toBe(0);
    expect(JSON.parse(invoked.stdout)).toEqual({ hi: "Ada" });

    const routed = await daemon.call("POST", "/greet", '{"name":"Bo"}', {
      "content-type": "application/json",
    });
    expect(routed.text).toBe('{"hi":"Bo"}');

    const described = await daemon.cli(["describe", "greeter"]);
    expect(described.code).toBe(0);
    expect(described.stdout).toContain("/greet");

    await new Promise((r) => setTimeout(r, 300));
    const logs = await daemon.cli(["logs", "greeter", "--tail", "20"]);
    expect(logs.code).toBe(0);
    expect(logs.stdout).toContain("greeting Ada");

    const json = await daemon.cli(["--json", "describe", "greeter"]);
    expect(JSON.parse(json.stdout)).toMatchObject({ function: { name: "greeter", routes: ["/greet"] } });

    const deleted = await daemon.cli(["delete", "greeter"]);
    expect(deleted.code).toBe(0);
    const after = await daemon.cli(["describe", "greeter"]);
    expect(after.code).not.toBe(0);
    expect(after.stderr).toContain("not found");
  });

  it("redeploying an unchanged folder says so; a broken one fails with the error and keeps the old revision", async () => {
    const dir = fnDir("steady", { "handler.js": "module.exports = { main: () => 'steady' };" });
    expect((await daemon.cli(["deploy", dir])).code).toBe(0);
    const again = await daemon.cli(["deploy", dir]);
    expect(again.code).toBe(0);
    expect(again.stdout + again.stderr).toMatch(/unchanged/i);

    writeFileSync(path.join(dir, "handler.js"), "module.exports = { main: () => 'oops' ;");
    const broken = await daemon.cli(["deploy", dir]);
    expect(broken.code).not.toBe(0);
    expect(broken.stderr).toContain("SyntaxError");
    expect((await daemon.call("GET", "/function/steady")).text).toBe("steady");
  });

  it("funcd up deploys a stack file and rollback returns to the previous revision", async () => {
    fnDir("stack/one", { "handler.js": "module.exports = { main: () => 'one-v1' };" });
    fnDir("stack/two", { "handler.mjs": "export const main = () => 'two';" });
    writeFileSync(
      path.join(work, "stack", "funcd.yaml"),
      "functions:\n  one:\n    runtime: nodejs20\n  two:\n    path: ./two\n    routes: [/two]\n",
    );
    const up = await daemon.cli(["up", "-f", path.join(work, "stack", "funcd.yaml")]);
    expect(up.code).toBe(0);
    expect((await daemon.call("GET", "/function/one")).text).toBe("one-v1");
    expect((await daemon.call("GET", "/two")).text).toBe("two");

    writeFileSync(
      path.join(work, "stack", "one", "handler.js"),
      "module.exports = { main: () => 'one-v2' };",
    );
    expect((await daemon.cli(["up", "-f", path.join(work, "stack", "funcd.yaml")])).code).toBe(0);
    expect((await daemon.call("GET", "/function/one")).text).toBe("one-v2");

    const back = await daemon.cli(["rollback", "one"]);
    expect(back.code).toBe(0);
    expect((await daemon.call("GET", "/function/one")).text).toBe("one-v1");
  });

  it("funcd new scaffolds a function that deploys and answers", async () => {
    const made = await daemon.cli(["new", "fresh", "--dir", work]);
    expect(made.code).toBe(0);
    expect(readFileSync(path.join(work, "fresh", "package.json"), "utf8")).toContain('"fresh"');
    expect((await daemon.cli(["deploy", path.join(work, "fresh")])).code).toBe(0);
    const res = await daemon.call("POST", "/function/fresh", '{"name":"Ada"}', {
      "content-type": "application/json",
    });
    expect(res.status).toBe(200);
  });

  it("plain-worded errors and a non-zero exit code when the daemon is down or the token is wrong", async () => {
    const down = await runCli(["list"], { FUNCD_URL: "http://127.0.0.1:9", FUNCD_TOKEN: "x".repeat(20) });
    expect(down.code).not.toBe(0);
    expect(down.stderr).toMatch(/Cannot reach the funcd daemon/);

    const wrong = await runCli(["list"], { FUNCD_URL: daemon.url, FUNCD_TOKEN: "wrong-token-wrong-token" });
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/token/i);
  });

  it("deploy --watch redeploys on every save and the new code answers", async () => {
    const dir = fnDir("watched", { "handler.js": "module.exports = { main: () => 'first' };" });
    const child = spawn(process.execPath, [path.join(ROOT, "bin", "funcd.js"), "deploy", dir, "--watch"], {
      env: cleanEnv({ FUNCD_URL: daemon.url, FUNCD_DATA_DIR: daemon.dataDir }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d: Buffer) => {
      output += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      output += d.toString();
    });
    try {
      await waitFor(() => output.includes("Watching"), 15_000);
      expect((await daemon.call("GET", "/function/watched")).text).toBe("first");
      const saved = Date.now();
      writeFileSync(path.join(dir, "handler.js"), "module.exports = { main: () => 'second' };");
      await waitFor(async () => (await daemon.call("GET", "/function/watched")).text === "second", 10_000);
      // The issue asks for a code-only change to be live within 1 s; the figure is reported, not asserted.
      process.stderr.write(`deploy --watch: change live after ${Date.now() - saved} ms\n`);
      writeFileSync(path.join(dir, "handler.js"), "module.exports = { main: () => 'broken' ;");
      await waitFor(() => output.includes("SyntaxError"), 10_000);
      expect((await daemon.call("GET", "/function/watched")).text).toBe("second");
    } finally {
      child.kill("SIGINT");
    }
  });
});

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`condition not met within ${timeoutMs} ms`);
}
