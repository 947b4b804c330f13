import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanEnv, ROOT, removeDir, send } from "../helpers/daemon.js";

/**
 * Every shell block of README.md, run as written, in order, against the daemon `npm start` brings up (the
 * README's first block) — so an example that fails when pasted fails here. Stack-file YAML blocks
 * (`functions:`) are deployed with `funcd up -f`.
 *
 * What differs from a person's terminal, and why:
 * - the daemon listens on a free port, not 8080 (other daemons may run on this machine): `localhost:8080`
 *   and `127.0.0.1:8080` in a block are rewritten to it, and FUNCD_URL points the CLI there;
 * - blocks run in a scratch folder (with `examples/` linked from the clone) so `funcd new` writes there, and
 *   `npx funcd` / `funcd` are the clone's `bin/funcd.js` (what `npm link`, which the README suggests, gives);
 * - `curl` fails on an HTTP error status (`--fail-with-body`): an example answering 400 is a broken example.
 *
 * A block can carry an HTML comment just above it, visible in the README's source, that this test honours:
 * `<!-- readme-test: skip REASON -->` (not run; the reason says why and where it is covered),
 * `<!-- readme-test: stop-after N -->` (its last command follows output forever: stopped after N seconds),
 * `<!-- readme-test: stdin TEXT -->` (TEXT is the block's standard input). A `# → VALUE` comment after a
 * command is checked against the block's output unless VALUE is a description ("the …").
 */
interface Block {
  line: number;
  lang: string;
  code: string;
  skip?: string;
  stopAfterS?: number;
  stdin?: string;
}

const README = readFileSync(path.join(ROOT, "README.md"), "utf8");

function readmeBlocks(): Block[] {
  const lines = README.split("\n");
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w+)\s*$/.exec(lines[i] ?? "");
    if (!open?.[1]) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i] ?? ""); i++) body.push(lines[i] ?? "");
    const block: Block = { line: start + 1, lang: open[1], code: body.join("\n") };
    // Annotations: the comment lines right above the fence.
    for (let j = start - 1; j >= 0 && /^<!--.*-->\s*$/.test(lines[j] ?? ""); j--) {
      const note = /^<!--\s*readme-test:\s*(skip|stop-after|stdin)\s*(.*?)\s*-->\s*$/.exec(lines[j] ?? "");
      if (!note) continue;
      if (note[1] === "skip") block.skip = note[2] || "(no reason given)";
      if (note[1] === "stop-after") block.stopAfterS = Number(note[2]);
      if (note[1] === "stdin") block.stdin = note[2] ?? "";
    }
    blocks.push(block);
  }
  return blocks;
}

const blocks = readmeBlocks();
const shellBlocks = blocks.filter((b) => b.lang === "sh" || b.lang === "bash");
const stackBlocks = blocks.filter((b) => b.lang === "yaml" && /^functions:/m.test(b.code));

let daemon: ChildProcess | undefined;
let url = "";
let token = "";
let dataDir = "";
let work = "";
let output = "";

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

beforeAll(async () => {
  // The README's first block is `npm install && npm start`: the daemon every later block talks to.
  expect(shellBlocks[0]?.code).toMatch(/npm start/);
  dataDir = mkdtempSync(path.join(os.tmpdir(), "funcd-readme-data-"));
  work = mkdtempSync(path.join(os.tmpdir(), "funcd-readme-"));
  symlinkSync(path.join(ROOT, "examples"), path.join(work, "examples"));
  const port = await freePort();
  daemon = spawn("npm", ["start"], {
    cwd: ROOT,
    env: cleanEnv({ FUNCD_PORT: String(port), FUNCD_DATA_DIR: dataDir, FUNCD_LOG_LEVEL: "warn" }),
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  daemon.stdout?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  daemon.stderr?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`npm start did not deploy its stack in 60 s:\n${output}`)),
      60_000,
    );
    const check = () => {
      const match = /^funcd (http:\/\/\S+)$/m.exec(output);
      if (match?.[1] && /Deploying[\s\S]*\n\n/.test(output)) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    daemon?.stdout?.on("data", check);
    daemon?.once("exit", (code) => reject(new Error(`npm start exited with ${code}:\n${output}`)));
  });
  expect(output).not.toContain("✗");
  token = readFileSync(path.join(dataDir, "token"), "utf8").trim();
}, 90_000);

afterAll(async () => {
  if (daemon?.pid !== undefined && daemon.exitCode === null) {
    const exited = new Promise((resolve) => daemon?.once("exit", resolve));
    // npm runs the daemon as its child: signal the whole group it leads.
    process.kill(-daemon.pid, "SIGTERM");
    await exited;
  }
  if (dataDir) removeDir(dataDir);
  if (work) removeDir(work);
});

/** The block as the test runs it: the daemon's port for 8080, `npx funcd`/`funcd` the clone's, curl strict. */
function script(code: string): string {
  const port = new URL(url).port;
  const body = code
    .replaceAll("localhost:8080", `localhost:${port}`)
    .replaceAll("127.0.0.1:8080", `127.0.0.1:${port}`);
  return [
    "set -euo pipefail",
    `funcd() { node ${JSON.stringify(path.join(ROOT, "bin", "funcd.js"))} "$@"; }`,
    'npx() { if [ "$1" = funcd ]; then shift; funcd "$@"; else command npx "$@"; fi; }',
    'curl() { command curl --fail-with-body -sS "$@"; echo; }',
    body,
  ].join("\n");
}

function runBlock(block: Block): Promise<{ code: number | null; stopped: boolean; out: string }> {
  return new Promise((resolve) => {
    const child = spawn("bash", ["-c", script(block.code)], {
      cwd: work,
      env: cleanEnv({ FUNCD_URL: url, FUNCD_TOKEN: token, FUNCD_DATA_DIR: dataDir }),
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stdin.end(block.stdin ?? "");
    let stopped = false;
    const limit = block.stopAfterS !== undefined ? block.stopAfterS * 1000 : 120_000;
    const timer = setTimeout(() => {
      stopped = true;
      if (child.pid !== undefined) process.kill(-child.pid, "SIGTERM");
    }, limit);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stopped, out });
    });
  });
}

/** `cmd   # → 5` → "5"; descriptions ("the event it received") and elisions ("Hello, Ada! …" → "Hello, Ada!"). */
function expectations(code: string): string[] {
  const found: string[] = [];
  for (const line of code.split("\n")) {
    const arrow = /#\s*→\s*(.+)$/.exec(line);
    const value = arrow?.[1]?.split("…")[0]?.trim();
    if (!value || /^the\b/.test(value) || line.trimStart().startsWith("#")) continue;
    found.push(value);
  }
  return found;
}

describe("README.md", () => {
  it("has shell blocks, and every annotation says why", () => {
    expect(shellBlocks.length).toBeGreaterThan(3);
    for (const block of blocks) if (block.skip !== undefined) expect(block.skip.length).toBeGreaterThan(10);
  });

  // Sequential on purpose: the blocks are a walk through the README, each building on the ones before.
  for (const block of shellBlocks.slice(1)) {
    const title = `the shell block at line ${block.line} runs as written`;
    if (block.skip !== undefined) {
      it.skip(`${title} — skipped by its annotation: ${block.skip}`, () => undefined);
      continue;
    }
    it(title, { timeout: 150_000 }, async () => {
      const result = await runBlock(block);
      if (!result.stopped) expect(result.code, `${block.code}\n---\n${result.out}`).toBe(0);
      else expect(result.out).not.toMatch(/^Error: /m);
      for (const value of expectations(block.code)) expect(result.out, block.code).toContain(value);
    });
  }

  for (const block of stackBlocks) {
    it(`the stack file at line ${block.line} deploys with funcd up, its tests passing`, async () => {
      // In the scratch folder, where `examples/` is the clone's: its paths resolve as from the clone's root.
      const file = path.join(work, `stack-${block.line}.yaml`);
      writeFileSync(file, `${block.code}\n`);
      const result = await runBlock({ ...block, code: `funcd up -f ${JSON.stringify(file)}` });
      expect(result.code, result.out).toBe(0);
    });
  }

  it("no invocation the blocks made failed (async ones included, once they end)", async () => {
    const headers = { authorization: `Bearer ${token}` };
    let items: Array<{
      id: string;
      functionName: string;
      outcome: string;
      statusCode: number;
      error: unknown;
    }> = [];
    // `outcome` is `pending` until an async invocation ends, then `success` or what went wrong.
    for (let i = 0; i < 100; i++) {
      const res = await send(`${url}/api/v1/executions?limit=200`, "GET", undefined, headers);
      expect(res.status, res.text).toBe(200);
      items = res.json<{ items: typeof items }>().items;
      if (!items.some((e) => e.outcome === "pending")) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(items.length).toBeGreaterThan(0);
    const failed = items
      .filter((e) => e.outcome !== "success" || e.statusCode >= 400)
      .map((e) => `${e.functionName} ${e.outcome} ${e.statusCode} ${JSON.stringify(e.error)}`);
    expect(failed).toEqual([]);
  });
});
