/**
 * Build-time tests (`tests:` in a spec) through a real daemon with the process driver: a passing suite
 * deploys, a failing one fails the deploy with a diff and leaves the previous revision serving — through
 * the API and through the CLI. The docker driver runs the same path (test/integration/docker-daemon.test.ts).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, removeDir, startDaemon } from "../helpers/daemon.js";

const SUM = (offset: number) => `module.exports = {
  main: (event) => {
    const { a, b } = event.data ?? {};
    return { sum: a + b + ${offset}, inputs: [a, b] };
  },
};`;

const TESTS = [
  { name: "adds", request: { method: "POST", body: { a: 2, b: 3 } }, expect: { json: { sum: 5 } } },
  {
    name: "echoes inputs",
    request: { method: "POST", body: { a: 1, b: 1 } },
    expect: { status: 200, json: { inputs: [1, 1] }, headers: { "content-type": "application/json" } },
  },
];

let daemon: Daemon;

beforeAll(async () => {
  daemon = await startDaemon();
});

afterAll(async () => {
  await daemon?.stop();
  if (daemon) removeDir(daemon.dataDir);
});

const deploy = (name: string, code: string, spec: Record<string, unknown> = {}, ndjson = false) =>
  daemon.api(
    "PUT",
    `/api/v1/functions/${name}`,
    { runtime: "nodejs20", ...spec, files: { "handler.js": code } },
    ndjson ? { accept: "application/x-ndjson" } : {},
  );

const sum = async (name: string) =>
  (
    await daemon.call("POST", `/function/${name}`, '{"a":2,"b":3}', { "content-type": "application/json" })
  ).json<{ sum: number }>().sum;

describe("build-time tests", () => {
  it("a passing suite deploys, and each test is reported in the progress", async () => {
    const res = await deploy("adder", SUM(0), { tests: TESTS }, true);
    const events = res.text
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string; message?: string });
    const messages = events.filter((e) => e.type === "progress").map((e) => e.message ?? "");
    expect(messages).toContain("running 2 build-time tests");
    expect(messages.some((m) => /^test 'adds' passed \(\d+ ms\)$/.test(m))).toBe(true);
    expect(messages.some((m) => /^test 'echoes inputs' passed \(\d+ ms\)$/.test(m))).toBe(true);
    expect(events.at(-1)?.type).toBe("result");
    expect(await sum("adder")).toBe(5);
  });

  it("a failing test fails the deploy with the diff, and the previous revision keeps serving", async () => {
    await deploy("keeps", SUM(0), { tests: TESTS });
    const res = await deploy("keeps", SUM(1), { tests: TESTS });
    expect(res.status).toBe(422);
    const problem = res.json<{
      code: string;
      detail: string;
      failures: { name: string; diff: string[]; actual: { status: number } }[];
    }>();
    expect(problem.code).toBe("BUILD_TEST_FAILED");
    expect(problem.detail).toContain("1 of 2 build-time tests failed. The previous revision keeps serving.");
    expect(problem.detail).toContain("test 'adds' (POST /):\n    $.sum: expected 5, got 6");
    expect(problem.failures).toEqual([
      expect.objectContaining({
        name: "adds",
        diff: ["$.sum: expected 5, got 6"],
        actual: expect.anything(),
      }),
    ]);
    expect(await sum("keeps")).toBe(5);

    const revisions = await daemon.api("GET", "/api/v1/functions/keeps/revisions");
    const items = revisions.json<{ items: { number: number; status: string; active: boolean }[] }>().items;
    expect(items.map((r) => [r.number, r.status, r.active])).toEqual([
      [2, "failed", false],
      [1, "ready", true],
    ]);
  });

  it("new tests on unchanged code run before the spec holding them is kept", async () => {
    await deploy("same", SUM(0), { tests: TESTS });
    const wrong = [
      { name: "wrong", request: { method: "POST", body: { a: 1, b: 1 } }, expect: { body: "3" } },
    ];
    const res = await deploy("same", SUM(0), { tests: wrong });
    expect(res.status).toBe(422);
    expect(res.json<{ detail: string }>().detail).toContain(`body: expected "3", got "{\\"sum\\":2`);
    // The serving revision is not marked failed, and the function keeps its old tests.
    const view = await daemon.api("GET", "/api/v1/functions/same/revisions");
    expect(view.json<{ items: { status: string }[] }>().items.map((r) => r.status)).toEqual(["ready"]);
    expect((await daemon.api("GET", "/api/v1/functions/same")).json<{ tests: number }>().tests).toBe(2);
    expect(await sum("same")).toBe(5);
  });

  it("the CLI prints the diff of a failing test and exits 1", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "funcd-bt-"));
    try {
      writeFileSync(path.join(dir, "handler.js"), SUM(10));
      writeFileSync(
        path.join(dir, "funcd.yaml"),
        [
          "name: clisum",
          "tests:",
          "  - name: adds",
          "    request: { method: POST, body: { a: 2, b: 3 } }",
          "    expect: { json: { sum: 5 } }",
        ].join("\n"),
      );
      const result = await daemon.cli(["deploy", dir]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain("Error: A build-time test failed:");
      expect(result.stderr).toContain("test 'adds' (POST /):\n    $.sum: expected 5, got 15");
    } finally {
      removeDir(dir);
    }
  });
});
