/**
 * A runtime funcd does not ship, added by a user as a template folder (docs/templates.md): a daemon whose
 * templates folder holds the shipped templates plus test/fixtures/user-templates/shell deploys a shell
 * script as a function on it and serves it, with no change to funcd's code.
 */
import { cpSync, mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, ROOT, removeDir, startDaemon } from "../helpers/daemon.js";

describe("a template added by a user", () => {
  let daemon: Daemon;
  let templates: string;

  beforeAll(async () => {
    templates = mkdtempSync(path.join(os.tmpdir(), "funcd-user-templates-"));
    cpSync(path.join(ROOT, "templates"), templates, { recursive: true });
    cpSync(path.join(ROOT, "test", "fixtures", "user-templates", "shell"), path.join(templates, "shell"), {
      recursive: true,
    });
    daemon = await startDaemon({ env: { FUNCD_TEMPLATES_DIR: templates } });
  });
  afterAll(async () => {
    await daemon?.stop();
    if (daemon) removeDir(daemon.dataDir);
    if (templates) removeDir(templates);
  });

  it("deploys and serves a shell script on a shell runtime funcd does not ship", async () => {
    const out = await daemon.api("PUT", "/api/v1/functions/shout", {
      runtime: "sh",
      files: { "handler.sh": 'printf "%s!" "$(tr a-z A-Z)"\n' },
    });
    expect(out.status).toBeLessThan(300);
    const res = await daemon.call("POST", "/function/shout", "hello");
    expect(res.status).toBe(200);
    expect(res.text).toBe("HELLO!");
    expect((await daemon.api("GET", "/api/v1/functions/shout")).json().runtime).toBe("shell");
  });

  it("a failing script answers 500 with what it wrote to stderr", async () => {
    await daemon.api("PUT", "/api/v1/functions/fails", {
      runtime: "shell",
      files: { "handler.sh": 'echo "no such thing" >&2\nexit 2\n' },
    });
    const res = await daemon.call("POST", "/function/fails", "x");
    expect(res.status).toBe(500);
    expect(res.json()).toMatchObject({ code: "FUNCTION_ERROR", detail: "no such thing" });
  });
});
