/**
 * The Go runtime (templates/go1.x/): each fixture compiled by the template's build.sh, as a deploy does,
 * then the runtime contract's conformance suite against the binaries, then what only Go does. Each case
 * runs the real binary on a unix socket with a clean environment, as the process driver does.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileFixtures } from "../helpers/compile-fixtures.js";
import { CONFORMANCE_FIXTURES, runRuntimeConformance } from "../helpers/runtime-conformance.js";
import {
  expectAnswer,
  invoke,
  type RuntimeCommand,
  spawnForTest,
  startForTest,
  waitFor,
} from "../helpers/runtime-server.js";

const TEMPLATE = fileURLToPath(new URL("../../templates/go1.x/", import.meta.url));
const GO_ONLY = fileURLToPath(new URL("../fixtures/go1.x-only/", import.meta.url));

// The template's own command: the binary the build put into the function's folder.
const GO: RuntimeCommand = {
  runtime: "go1.x",
  command: ["/bin/sh", "-c", 'exec "$FUNCD_FUNCTION_DIR/.funcd-build/function"'],
};

// Filled before the first case runs; the suite reads fixtures by path only when a case runs.
const compiled = path.join(os.tmpdir(), `funcd-go-fixtures-${process.pid}`);
/** Fixtures of the cases below, which only Go has. */
const goOnly = path.join(os.tmpdir(), `funcd-go-only-fixtures-${process.pid}`);

beforeAll(async () => {
  const options = { template: TEMPLATE, extension: ".go", output: ".funcd-build" };
  fs.renameSync(await compileFixtures({ ...options, fixtures: CONFORMANCE_FIXTURES }), compiled);
  fs.renameSync(await compileFixtures({ ...options, fixtures: GO_ONLY }), goOnly);
}, 600_000);

afterAll(() => {
  fs.rmSync(compiled, { recursive: true, force: true });
  fs.rmSync(goOnly, { recursive: true, force: true });
});

const NO_DECODING =
  "a Go handler's Event.Data is the body as sent (Kubeless's string); only an invalid JSON body is refused";
const NO_LAMBDA = "the Go runtime serves Kubeless handlers only (FUNCD_HANDLER_STYLE=lambda exits with 1)";

runRuntimeConformance({
  ...GO,
  fixtures: compiled,
  source: {
    candidates: (file) => [`${file}.go`],
    brokenFunction: { "handler.go": "package kubeless\n\nfunc Main( {\n" },
    listedAs: "functions",
  },
  skip: {
    "data-json": NO_DECODING,
    "data-plus-json": NO_DECODING,
    "data-text": NO_DECODING,
    "data-form": NO_DECODING,
    "data-bytes": NO_DECODING,
    "data-empty": NO_DECODING,
    "status-object-base64": "a Go handler returns the bytes themselves; there is no isBase64Encoded",
    "unserializable-result": "a Go handler returns a string: there is nothing for the runtime to serialise",
    "syntax-error":
      "a Go function is compiled at deploy: a syntax error fails the build with file:line (runtime-go.test.ts), so no binary ever starts",
    "sub-folder-handler":
      "a Go function is the package at its folder's root; a sub-folder is another package (runtime-go.test.ts)",
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
    "style-auto-kubeless-handler": NO_DECODING,
    "style-auto-lambda-answers": NO_LAMBDA,
  },
});

describe("the go1.x runtime beyond the contract", () => {
  it("a returned error answers 500 with its message, labelled Error", async () => {
    const runtime = await startForTest(GO, { functionDir: path.join(compiled, "throwing") });
    const res = await invoke(runtime, "/returned", { headers: { "x-request-id": "rid-returned" } });
    expectAnswer(res, { status: 500, type: "application/problem+json" });
    expect(JSON.parse(res.text)).toMatchObject({
      code: "FUNCTION_ERROR",
      detail: "Error: returned, not thrown",
    });
    expect(await waitFor(runtime.stderr, "returned, not thrown")).toContain(
      '\x1erid-returned\x1ffuncd: function "throwing" failed: Error: returned, not thrown\n',
    );
  });

  it("a handler named as exported (helloget.Foo) is served too", async () => {
    const dir = path.join(compiled, "named-export");
    const runtime = await startForTest(GO, { functionDir: dir, handler: "helloget.Foo" });
    expect((await invoke(runtime, "/")).text).toBe("hello GET");
  });

  it("a function whose signature is not Kubeless's exits with code 3 and shows what it is", async () => {
    const runtime = spawnForTest(GO, { functionDir: path.join(goOnly, "bad-signature") });
    expect((await runtime.exit).code).toBe(3);
    expect(runtime.stderr()).toContain(
      'the function "Main" of ' +
        path.join(goOnly, "bad-signature", "handler.go") +
        " is a func(string) string, not a func(functions.Event, functions.Context) (string, error)",
    );
  });

  it("a handler in a sub-folder is refused with the reason", async () => {
    const dir = path.join(compiled, "named-export");
    fs.mkdirSync(path.join(dir, "lib"), { recursive: true });
    fs.writeFileSync(path.join(dir, "lib", "fn.go"), "package lib\n");
    const runtime = spawnForTest(GO, { functionDir: dir, handler: "lib/fn.main" });
    expect((await runtime.exit).code).toBe(3);
    expect(runtime.stderr()).toContain("a Go function is the package at the root of its folder");
  });
});
