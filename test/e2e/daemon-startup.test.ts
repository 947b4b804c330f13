import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, statSync } from "node:fs";
import { createServer, type Server } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { cleanEnv, type Daemon, ROOT, removeDir, runCli, startDaemon } from "../helpers/daemon.js";

/**
 * What `funcd server` does when it cannot or must not start: a second daemon on a data dir in use, a
 * busy port, a data dir sandboxed uids cannot reach, a bad setting — and what the CLI says when no
 * daemon answers. Each refusal exits non-zero at once, says what to do, and changes nothing.
 */
const BIN = path.join(ROOT, "bin", "funcd.js");
const isRoot = process.getuid?.() === 0;
const cleanup: Array<() => Promise<unknown> | unknown> = [];

afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** Runs `funcd server …` to its exit (a daemon that starts is a failure of these tests: it is stopped). */
function serverExit(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, "server", ...args], {
      cwd: ROOT,
      env: cleanEnv({ FUNCD_LOG_LEVEL: "warn", FUNCD_POOL_SIZE: "0", ...env }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    const onData = (d: Buffer) => {
      output += d.toString();
      if (/^funcd http/m.test(output)) child.kill("SIGTERM");
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    // Generous: a hang is what this guards against, not a slow start.
    const timer = setTimeout(() => child.kill("SIGKILL"), 45_000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** Every file under `dir` with its size and mtime: "changes nothing" made observable. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, entry.name);
      const st = statSync(full);
      out[path.relative(dir, full)] =
        `${st.mode.toString(8)} ${entry.isDirectory() ? "dir" : st.size} ${st.mtimeMs}`;
      if (entry.isDirectory()) walk(full);
    }
  };
  walk(dir);
  return out;
}

/** The data dir's snapshot once it has not changed for a second (bounded: 20 s). */
async function stillSnapshot(dir: string): Promise<Record<string, string>> {
  let last = snapshot(dir);
  for (let i = 0; i < 40; i++) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const next = snapshot(dir);
    if (JSON.stringify(next) === JSON.stringify(last)) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      const after = snapshot(dir);
      if (JSON.stringify(after) === JSON.stringify(next)) return after;
    }
    last = snapshot(dir);
  }
  return last;
}

async function deployed(daemon: Daemon, name: string) {
  const res = await daemon.api("POST", "/api/v1/functions", {
    name,
    files: { "handler.js": "module.exports = { main: () => 'still here' };" },
  });
  expect(res.status, res.text).toBe(201);
}

describe("one daemon per data dir", () => {
  it("a second daemon on the same data dir refuses at once, naming the first, and changes nothing", async () => {
    const first = await startDaemon({ env: { FUNCD_POOL_SIZE: "0" } });
    cleanup.push(
      () => removeDir(first.dataDir),
      () => first.stop("SIGKILL"),
    );
    await deployed(first, "kept");
    // The first daemon writes on its own for a moment after a deploy (batched logs and records): wait until its
    // data dir is still, so that any change seen afterwards is the second daemon's.
    const before = await stillSnapshot(first.dataDir);

    const second = await serverExit(["--port", "0", "--data-dir", first.dataDir]);
    expect(second.code).not.toBe(0);
    expect(second.code).not.toBeNull();
    expect(second.output).toContain(`pid ${first.process.pid}`);
    expect(second.output).toContain(first.url);
    expect(second.output).toContain(first.dataDir);
    expect(second.output).toContain("--data-dir");
    expect(second.output).toContain("FUNCD_DATA_DIR");
    expect(second.output).not.toContain("Unexpected error");

    expect(snapshot(first.dataDir)).toEqual(before);
    expect((await first.call("GET", "/function/kept")).text).toBe("still here");
  });

  it("a daemon killed with SIGKILL leaves no lock behind: the next one starts on its data dir", async () => {
    const first = await startDaemon({ env: { FUNCD_POOL_SIZE: "0" } });
    cleanup.push(() => removeDir(first.dataDir));
    await deployed(first, "survivor");
    await first.stop("SIGKILL");

    const next = await startDaemon({ dataDir: first.dataDir, env: { FUNCD_POOL_SIZE: "0" } });
    cleanup.push(() => next.stop());
    expect((await next.call("GET", "/function/survivor")).text).toBe("still here");
  });
});

describe("a busy port", () => {
  it("exits non-zero at once naming the port, another funcd, --port and FUNCD_PORT", async () => {
    const busy: Server = createServer();
    await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
    cleanup.push(() => new Promise((resolve) => busy.close(resolve)));
    const port = (busy.address() as { port: number }).port;
    const dataDir = mkdtempSync(path.join(os.tmpdir(), "funcd-port-"));
    cleanup.push(() => removeDir(dataDir));

    const result = await serverExit(["--port", String(port), "--data-dir", dataDir]);
    expect(result.code).toBe(1);
    expect(result.output).toContain(`127.0.0.1:${port}`);
    expect(result.output).toMatch(/another funcd/i);
    expect(result.output).toContain("--port");
    expect(result.output).toContain("FUNCD_PORT");
    expect(result.output).not.toContain("Unexpected error");
  });
});

describe("the data dir and sandboxed uids", () => {
  it("never changes the mode of a folder outside the data dir", async () => {
    const parent = mkdtempSync(path.join(os.tmpdir(), "funcd-private-"));
    cleanup.push(() => removeDir(parent));
    chmodSync(parent, 0o700);
    const dataDir = path.join(parent, "data");

    const result = await serverExit(["--port", "0", "--data-dir", dataDir]);
    expect(statSync(parent).mode & 0o777).toBe(0o700);
    if (isRoot) {
      // Instances run as their own uids, which could not reach the data dir: refused, with what to do.
      expect(result.code).toBe(1);
      expect(result.output).toContain(parent);
      expect(result.output).toContain("--data-dir");
      expect(result.output).toContain("FUNCD_DATA_DIR");
      expect(result.output).toContain(`chmod o+x ${parent}`);
    } else {
      // Instances run as the daemon's own uid: nothing to reach, the daemon starts.
      expect(result.output).toMatch(/^funcd http/m);
    }
  });

  it("a data dir inside a reachable folder starts and keeps that folder's mode", async () => {
    const parent = mkdtempSync(path.join(os.tmpdir(), "funcd-open-"));
    cleanup.push(() => removeDir(parent));
    chmodSync(parent, 0o755);
    mkdirSync(path.join(parent, "data"));
    const result = await serverExit(["--port", "0", "--data-dir", path.join(parent, "data")]);
    expect(result.output).toMatch(/^funcd http/m);
    expect(statSync(parent).mode & 0o777).toBe(0o755);
  });
});

describe("start-up and connection messages", () => {
  it("a bad setting is reported once, with the variable to fix", async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), "funcd-cfg-"));
    cleanup.push(() => removeDir(dataDir));
    const result = await serverExit(["--port", "http", "--data-dir", dataDir], { FUNCD_POOL_SIZE: "-1" });
    expect(result.code).toBe(1);
    expect(result.output.match(/Invalid configuration/g)).toHaveLength(1);
    expect(result.output.match(/port \(FUNCD_PORT\)/g)).toHaveLength(1);
    expect(result.output.match(/poolSize \(FUNCD_POOL_SIZE\)/g)).toHaveLength(1);
  });

  it("no daemon answering: the CLI names the URL and port it tried and --url / FUNCD_URL", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as { port: number }).port;
    await new Promise((resolve) => closed.close(resolve));
    const r = await runCli(["list"], { FUNCD_URL: `http://127.0.0.1:${port}`, FUNCD_TOKEN: "x".repeat(20) });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`http://127.0.0.1:${port}`);
    expect(r.stderr).toContain(`port ${port}`);
    expect(r.stderr).toContain("--url");
    expect(r.stderr).toContain("FUNCD_URL");
  });
});
