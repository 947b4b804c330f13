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

const occurrences = (text: string, needle: string) => text.split(needle).length - 1;

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

describe("what a failed deploy prints", () => {
  it("a failing requirements.txt prints pip's error once", async () => {
    const dir = fnDir("bad-reqs", {
      "handler.py": "def main(event, context):\n    return 1\n",
      "requirements.txt": "this is not a requirement ===\n",
    });
    const deployed = await daemon.cli(["deploy", dir, "--runtime", "python3"]);
    expect(deployed.code).not.toBe(0);
    const printed = deployed.stdout + deployed.stderr;
    expect(printed).toContain("ERROR: Invalid requirement");
    expect(occurrences(printed, "ERROR: Invalid requirement")).toBe(1);
  });

  for (const [runtime, file, body] of [
    ["nodejs20", "handler.js", "exports.hello = () => 'hi';\nexports.other = () => 'other';\n"],
    ["python3", "handler.py", "def hello(event, context):\n    return 'hi'\n"],
  ] as const) {
    it(`a missing handler export (${runtime}) lists the exports found and suggests --handler`, async () => {
      const dir = fnDir(`no-main-${runtime.replace(/\d/g, "")}`, { [file]: body });
      const deployed = await daemon.cli(["deploy", dir, "--runtime", runtime]);
      expect(deployed.code).not.toBe(0);
      expect(deployed.stderr).toMatch(/are: hello/);
      expect(deployed.stderr).toContain("--handler handler.hello");
    });
  }
});

describe("Kubeless and Lambda handlers both exported as handler", () => {
  const cases = [
    ["kl-node", "nodejs20", "handler.js", "module.exports = { handler: (event, context) => event.data };\n"],
    ["kl-python", "python3", "handler.py", "def handler(event, context):\n    return event['data']\n"],
  ] as const;
  for (const [name, runtime, file, body] of cases) {
    it(`Kubeless's hellowithdata (${file}) answers its data through --handler handler.handler`, async () => {
      const dir = fnDir(name, { [file]: body });
      const deployed = await daemon.cli([
        "deploy",
        dir,
        "--runtime",
        runtime,
        "--handler",
        "handler.handler",
      ]);
      expect(deployed.code).toBe(0);
      const res = await daemon.call("POST", `/function/${name}`, '{"hello":"world"}', {
        "content-type": "application/json",
      });
      expect(res.status).toBe(200);
      expect(res.json()).toEqual({ hello: "world" });
    });
  }

  const lambdas = [
    [
      "lb-node",
      "nodejs20",
      "handler.js",
      "exports.handler = async (event) => ({ statusCode: 200, headers: { 'content-type': 'application/json' }," +
        " body: JSON.stringify({ got: JSON.parse(event.body), q: event.queryStringParameters.q," +
        " method: event.requestContext.http.method }) });\n",
    ],
    [
      "lb-python",
      "python3",
      "handler.py",
      "import json\n\ndef handler(event, context):\n    return {'statusCode': 200, 'headers':" +
        " {'content-type': 'application/json'}, 'body': json.dumps({'got': json.loads(event['body'])," +
        " 'q': event['queryStringParameters']['q'], 'method': event['requestContext']['http']['method']})}\n",
    ],
  ] as const;
  for (const [name, runtime, file, body] of lambdas) {
    it(`a Lambda handler (${file}) still answers with statusCode/body through --handler handler.handler`, async () => {
      const dir = fnDir(name, { [file]: body });
      const deployed = await daemon.cli([
        "deploy",
        dir,
        "--runtime",
        runtime,
        "--handler",
        "handler.handler",
      ]);
      expect(deployed.code).toBe(0);
      const res = await daemon.call("POST", `/function/${name}?q=x`, '{"a":1}', {
        "content-type": "application/json",
      });
      expect(res.status).toBe(200);
      expect(res.json()).toEqual({ got: { a: 1 }, q: "x", method: "POST" });
    });
  }
});
