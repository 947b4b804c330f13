/**
 * Go functions through a real daemon on the process driver: compiled once at deploy through the
 * dependency cache (a redeploy of the same files compiles nothing), served by the binary inside the
 * sandbox, a compile error failing the deploy with file:line while the previous revision keeps serving,
 * and go.mod dependencies fetched through GOPROXY — here a file-based proxy the test builds, the same
 * path a user's registry setting takes.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INSTALL_UID } from "../../src/builder/dependencies.js";
import { isRoot } from "../../src/drivers/process/sandbox.js";
import { type Daemon, ROOT, removeDir, startDaemon } from "../helpers/daemon.js";

const HELLO = `package kubeless

import "github.com/kubeless/kubeless/pkg/functions"

func Handler(event functions.Event, context functions.Context) (string, error) {
	return "Hello " + event.Data + " from " + context.FunctionName, nil
}
`;

/** The same function with a type error on line 6. */
const BROKEN = HELLO.replace('return "Hello "', 'return "Hello " +');

interface DeployOutcome {
  progress: string[];
  result?: { revision: { number: number }; dependencies: { key: string; cached: boolean } | null };
  problem?: { code: string; detail: string; logs?: string[] };
}

async function deploy(daemon: Daemon, name: string, body: Record<string, unknown>): Promise<DeployOutcome> {
  const res = await daemon.api("PUT", `/api/v1/functions/${name}`, body, { accept: "application/x-ndjson" });
  const outcome: DeployOutcome = { progress: [] };
  for (const line of res.text.split("\n").filter((l) => l.trim() !== "")) {
    const item = JSON.parse(line);
    if (item.type === "progress") outcome.progress.push(String(item.message));
    else if (item.type === "result") outcome.result = item;
    else if (item.type === "error") outcome.problem = item.problem;
  }
  return outcome;
}

/**
 * A GOPROXY directory serving one module, example.com/greet v1.0.0, in the layout the Go toolchain reads
 * (`<module>/@v/list`, `.info`, `.mod`, `.zip`).
 */
function buildGoProxy(): string {
  const proxy = mkdtempSync(path.join(os.tmpdir(), "funcd-goproxy-"));
  const dir = path.join(proxy, "example.com", "greet", "@v");
  mkdirSync(dir, { recursive: true });
  const mod = "module example.com/greet\n\ngo 1.19\n";
  const source =
    'package greet\n\n// Hello greets.\nfunc Hello(name string) string { return "Hello, " + name + " (greet v1.0.0)" }\n';
  writeFileSync(path.join(dir, "list"), "v1.0.0\n");
  writeFileSync(path.join(dir, "v1.0.0.info"), '{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}\n');
  writeFileSync(path.join(dir, "v1.0.0.mod"), mod);
  // A module zip: every file under "<module>@<version>/".
  execFileSync("/usr/bin/python3", [
    "-c",
    "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w') as z:\n  z.writestr('example.com/greet@v1.0.0/go.mod', sys.argv[2])\n  z.writestr('example.com/greet@v1.0.0/greet.go', sys.argv[3])",
    path.join(dir, "v1.0.0.zip"),
    mod,
    source,
  ]);
  // Installs run as an unprivileged uid when the daemon is root: the proxy must be readable by it.
  chmodSync(proxy, 0o755);
  return proxy;
}

/**
 * A Go build cache kept across runs (compiling the standard library for a fresh data dir takes a minute
 * on two busy cores), owned by the uid installs run as, as a host sharing its cache would set it up.
 */
function sharedGoCache(): string {
  const dir = path.join(os.tmpdir(), "funcd-test-gocache-installs");
  mkdirSync(dir, { recursive: true });
  if (isRoot()) execFileSync("chown", ["-R", `${INSTALL_UID}:${INSTALL_UID}`, dir]);
  return dir;
}

describe("a daemon serving Go functions on the process driver", () => {
  let daemon: Daemon;
  let proxy: string;

  beforeAll(async () => {
    proxy = buildGoProxy();
    daemon = await startDaemon({
      env: { GOPROXY: `file://${proxy}`, GOSUMDB: "off", GOFLAGS: "-mod=mod", GOCACHE: sharedGoCache() },
    });
  });
  afterAll(async () => {
    await daemon?.stop();
    if (daemon) removeDir(daemon.dataDir);
    if (proxy) removeDir(proxy);
  });

  it("compiles a Kubeless Go function at deploy and serves it", { timeout: 300_000 }, async () => {
    const out = await deploy(daemon, "hello-go", { runtime: "go", files: { "handler.go": HELLO } });
    expect(out.problem).toBeUndefined();
    expect(out.progress).toContain("installing dependencies (go build)");
    expect(out.result?.dependencies?.cached).toBe(false);
    const res = await daemon.call("POST", "/function/hello-go", "Ada", { "content-type": "text/plain" });
    expect(res.status).toBe(200);
    expect(res.text).toBe("Hello Ada from hello-go");
    // `go` is an alias: the function is recorded under the runtime's name.
    expect((await daemon.api("GET", "/api/v1/functions/hello-go")).json().runtime).toBe("go1.x");
  });

  it("compiles nothing when the same files are deployed again", async () => {
    const out = await deploy(daemon, "hello-go-2", { runtime: "go1.x", files: { "handler.go": HELLO } });
    expect(out.result?.dependencies?.cached).toBe(true);
    expect((await daemon.call("POST", "/function/hello-go-2", "Bob")).text).toBe("Hello Bob from hello-go-2");
  });

  it("fails a deploy that does not compile with the compiler's file:line, and the previous revision keeps serving", async () => {
    const out = await deploy(daemon, "hello-go", { runtime: "go", files: { "handler.go": BROKEN } });
    expect(out.result).toBeUndefined();
    expect(out.problem?.code).toBe("DEPLOY_FAILED");
    expect(out.problem?.detail).toContain('Compiling "hello-go" failed (go exited with');
    expect(out.problem?.logs?.join("\n")).toMatch(/^handler\.go:6:\d+: invalid operation/m);
    expect(out.problem?.detail).toContain("previous revision keeps serving");
    expect((await daemon.call("POST", "/function/hello-go", "Cy")).text).toBe("Hello Cy from hello-go");
  });

  it("fetches go.mod dependencies through GOPROXY", async () => {
    const dir = path.join(ROOT, "test", "fixtures", "deps", "go-greeter");
    const files = Object.fromEntries(
      readdirSync(dir).map((f) => [f, readFileSync(path.join(dir, f), "utf8")]),
    );
    const out = await deploy(daemon, "greeter", { runtime: "go", files });
    expect(out.problem).toBeUndefined();
    expect((await daemon.call("POST", "/function/greeter", "Dee")).text).toBe("Hello, Dee (greet v1.0.0)");
  });

  it("funcd new --runtime go scaffolds a function that deploys and answers", async () => {
    const work = mkdtempSync(path.join(os.tmpdir(), "funcd-go-new-"));
    try {
      const made = await daemon.cli(["new", "greet-go", "--runtime", "go", "--dir", work]);
      expect(made.stderr).toBe("");
      expect(made.code).toBe(0);
      const deployed = await daemon.cli(["deploy", path.join(work, "greet-go")]);
      expect(deployed.stderr + deployed.stdout).toContain("Deployed greet-go");
      const invoked = await daemon.cli(["invoke", "greet-go", "--data", '{"name":"Ada"}']);
      expect(invoked.stdout).toContain("Hello, Ada! (from greet-go)");
    } finally {
      removeDir(work);
    }
  });
});
