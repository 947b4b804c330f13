/**
 * The Node.js runtime server (templates/nodejs20/server.mjs): the runtime contract's conformance suite, then
 * what only Node does. Each case spawns the real server on a unix socket with a clean environment, as the
 * process driver does.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { request } from "undici";
import { describe, expect, it } from "vitest";
import { CONFORMANCE_FIXTURES, runRuntimeConformance } from "../helpers/runtime-conformance.js";
import { invoke, type RuntimeCommand, startForTest } from "../helpers/runtime-server.js";

const NODE: RuntimeCommand = {
  runtime: "nodejs20",
  command: [process.execPath, fileURLToPath(new URL("../../templates/nodejs20/server.mjs", import.meta.url))],
};
/** Fixtures of the cases below, which only Node has. */
const NODE_ONLY = fileURLToPath(new URL("../fixtures/nodejs20-only/", import.meta.url));

runRuntimeConformance({
  ...NODE,
  fixtures: CONFORMANCE_FIXTURES,
  source: {
    candidates: (file) => [".js", ".mjs", ".cjs"].map((ext) => file + ext),
    brokenFunction: {
      "package.json": '{ "type": "commonjs" }\n',
      "handler.js": "exports.main = (event) => {\n  return { ok: true\n};\n",
    },
    listedAs: "exports",
  },
});

describe("the nodejs20 runtime beyond the contract", () => {
  it("serves an ESM handler exported as a member of the default export", async () => {
    // The contract's fixtures are CommonJS (their package.json says so); this one is an .mjs file.
    const runtime = await startForTest(NODE, { functionDir: path.join(NODE_ONLY, "esm") });
    const res = await invoke(runtime, "/", {
      headers: { "content-type": "application/json" },
      body: '{"name":"Grace"}',
    });
    expect(res.text).toBe("hello Grace from ESM");
  });

  it("a handler piping into extensions.response and returning nothing streams the answer in chunks", async () => {
    const runtime = await startForTest(NODE, { functionDir: path.join(NODE_ONLY, "streaming") });
    const res = await request("http://localhost/", {
      dispatcher: runtime.dispatcher,
      headers: { "x-funcd-invoke": "1", "x-request-id": "rid-stream" },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers["transfer-encoding"]).toBe("chunked");
    expect(res.headers["x-request-id"]).toBe("rid-stream");
    const arrivals: number[] = [];
    let text = "";
    for await (const chunk of res.body) {
      arrivals.push(Date.now());
      text += chunk.toString();
    }
    expect(text).toBe("chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n");
    expect(arrivals.length).toBeGreaterThanOrEqual(3);
    expect((arrivals.at(-1) ?? 0) - (arrivals[0] ?? 0)).toBeGreaterThanOrEqual(150);
  });

  it("an exception escaping the handler exits with code 1", async () => {
    const runtime = await startForTest(NODE, { functionDir: path.join(CONFORMANCE_FIXTURES, "throwing") });
    expect((await invoke(runtime, "/crash")).text).toBe("crashing soon");
    expect((await runtime.exit).code).toBe(1);
    expect(runtime.stderr()).toContain("escaped the handler");
  });

  it("a callback-style Lambda handler answers through the callback, context.succeed and context.fail", async () => {
    const runtime = await startForTest(NODE, {
      functionDir: path.join(NODE_ONLY, "lambda-callback"),
      handler: "handler.handler",
    });
    const res = await invoke(runtime, "/");
    expect(res.status).toBe(202);
    expect(res.text).toBe("called back for lambda-callback");
    const succeeded = await invoke(runtime, "/succeed");
    expect(succeeded.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(succeeded.text)).toEqual({ via: "context.succeed" });
    const failed = await invoke(runtime, "/fail");
    expect(failed.status).toBe(500);
    expect(JSON.parse(failed.text)).toMatchObject({ detail: "RangeError: callback failure" });
  });

  it("the Lambda context's callbackWaitsForEmptyEventLoop is true", async () => {
    const runtime = await startForTest(NODE, {
      functionDir: path.join(NODE_ONLY, "lambda-callback"),
      handler: "handler.handler",
    });
    expect(JSON.parse((await invoke(runtime, "/waits")).text)).toEqual({
      callbackWaitsForEmptyEventLoop: true,
    });
  });
});
