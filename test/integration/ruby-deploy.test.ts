/**
 * Ruby functions through a real daemon on the process driver: `funcd new --runtime ruby`, a deploy, an
 * invocation served by Debian's Ruby inside the sandbox, and a Kubeless Ruby function deployed unchanged.
 */
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, removeDir, startDaemon } from "../helpers/daemon.js";

describe("a daemon serving Ruby functions on the process driver", () => {
  let daemon: Daemon;
  let work: string;

  beforeAll(async () => {
    daemon = await startDaemon();
    work = mkdtempSync(path.join(os.tmpdir(), "funcd-ruby-"));
  });
  afterAll(async () => {
    await daemon?.stop();
    if (daemon) removeDir(daemon.dataDir);
    if (work) removeDir(work);
  });

  it("funcd new --runtime ruby scaffolds a function that deploys and answers", async () => {
    const made = await daemon.cli(["new", "greet-rb", "--runtime", "ruby", "--dir", work]);
    expect(made.stderr).toBe("");
    const deployed = await daemon.cli(["deploy", path.join(work, "greet-rb")]);
    expect(deployed.stderr + deployed.stdout).toContain("Deployed greet-rb");
    const res = await daemon.call("POST", "/function/greet-rb", '{"name":"Ada"}', {
      "content-type": "application/json",
    });
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({ message: "Hello, Ada!", from: "greet-rb" });
  });

  it("serves Kubeless's Ruby hello-with-data unchanged, its output in the logs tagged", async () => {
    const out = await daemon.api("PUT", "/api/v1/functions/hellowithdata", {
      runtime: "ruby",
      handler: "helloget.handler",
      files: { "helloget.rb": "def handler(event, context)\n  puts event[:data]\n  event[:data]\nend\n" },
    });
    expect(out.status).toBeLessThan(300);
    const res = await daemon.call("POST", "/function/hellowithdata", "hi ruby", {
      "content-type": "text/plain",
    });
    expect(res.text).toBe("hi ruby");
    const id = String(res.headers["x-request-id"]);
    let logs = "";
    for (let i = 0; i < 50 && !logs.includes("hi ruby"); i++) {
      logs = (await daemon.api("GET", "/api/v1/functions/hellowithdata/logs")).text;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(logs).toContain("hi ruby");
    expect(logs).toContain(id);
  });
});
