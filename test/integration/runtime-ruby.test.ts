/**
 * The Ruby runtime server (templates/ruby/server.rb), run by Debian's /usr/bin/ruby: the runtime contract's
 * conformance suite with Kubeless's Ruby handlers (`def main(event, context)`, symbol keys), then what
 * only Ruby does. Each case spawns the real server on a unix socket with a clean environment, as the
 * process driver does.
 */
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { CONFORMANCE_FIXTURES, runRuntimeConformance } from "../helpers/runtime-conformance.js";
import { functionDirForTest, invoke, type RuntimeCommand, startForTest } from "../helpers/runtime-server.js";

const RUBY: RuntimeCommand = {
  runtime: "ruby",
  command: ["/usr/bin/ruby", fileURLToPath(new URL("../../templates/ruby/server.rb", import.meta.url))],
};

const NO_LAMBDA = "the Ruby runtime serves Kubeless handlers only (FUNCD_HANDLER_STYLE=lambda exits with 1)";

runRuntimeConformance({
  ...RUBY,
  fixtures: CONFORMANCE_FIXTURES,
  source: {
    candidates: (file) => [`${file}.rb`],
    brokenFunction: { "handler.rb": "def main(event, context)\n  { ok: true\n" },
    listedAs: "methods",
  },
  skip: {
    "lambda-event": NO_LAMBDA,
    "lambda-body": NO_LAMBDA,
    "lambda-invalid-json": NO_LAMBDA,
    "lambda-status": NO_LAMBDA,
    "lambda-base64": NO_LAMBDA,
    "lambda-object": NO_LAMBDA,
    "lambda-string": NO_LAMBDA,
    "lambda-none": NO_LAMBDA,
    "lambda-context": NO_LAMBDA,
    "lambda-throw": NO_LAMBDA,
    "lambda-timeout": NO_LAMBDA,
    "style-auto-lambda": NO_LAMBDA,
    "style-auto-also-main": NO_LAMBDA,
    "style-forced": NO_LAMBDA,
    "style-auto-lambda-answers": NO_LAMBDA,
  },
});

describe("the ruby runtime beyond the contract", () => {
  it("serves Kubeless's own Ruby example unchanged: symbol keys, def handler", async () => {
    const dir = functionDirForTest({
      "hello.rb": "def handler(event, context)\n  puts event\n  event[:data]\nend\n",
    });
    const runtime = await startForTest(RUBY, { functionDir: dir, handler: "hello.handler" });
    const res = await invoke(runtime, "/", { headers: { "content-type": "text/plain" }, body: "hi" });
    expect(res.status).toBe(200);
    expect(res.text).toBe("hi");
  });
});
