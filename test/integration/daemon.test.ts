import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { create } from "tar";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Daemon,
  nodeFunction,
  processesMentioning,
  removeDir,
  send,
  startDaemon,
} from "../helpers/daemon.js";

const HELLO_V1 = "module.exports = { main: () => 'v1' };";
const HELLO_V2 = "module.exports = { main: () => 'v2' };";

let daemon: Daemon;

beforeAll(async () => {
  daemon = await startDaemon({
    args: ["--up", "funcd.yaml"],
    env: { FUNCD_HEALTH_CHECK_INTERVAL_MS: "500" },
  });
});

afterAll(async () => {
  await daemon?.stop();
  if (daemon) removeDir(daemon.dataDir);
});

async function deploy(name: string, files: Record<string, string>, spec: Record<string, unknown> = {}) {
  return daemon.api("PUT", `/api/v1/functions/${name}`, { runtime: "nodejs20", ...spec, files });
}

describe("the example stack", () => {
  it("answers /sum with the sum of a and b", async () => {
    const res = await daemon.call("POST", "/sum", '{"a":2,"b":3}', { "content-type": "application/json" });
    expect(res.status).toBe(200);
    expect(res.text).toBe("5");
  });

  it("answers /mul with the product", async () => {
    const res = await daemon.call("POST", "/mul", '{"a":4,"b":5}', { "content-type": "application/json" });
    expect(res.text).toBe("20");
  });

  it("answers /function/hello", async () => {
    const res = await daemon.call("GET", "/function/hello?name=Ada");
    expect(res.status).toBe(200);
    expect(res.text).toContain("Hello, Ada!");
  });

  it("passes any sub-path, method and query through to the function", async () => {
    const res = await daemon.call("PATCH", "/function/echo/some/path?x=1", "hi", {
      "content-type": "text/plain",
    });
    expect(res.status).toBe(200);
    const { event } = res.json<{ event: Record<string, unknown> }>();
    expect(event).toMatchObject({ method: "PATCH", path: "/some/path", query: { x: "1" }, data: "hi" });
  });

  it("echoes a given X-Request-Id and makes one up otherwise", async () => {
    const given = await daemon.call("GET", "/function/hello", undefined, { "x-request-id": "abc-123" });
    expect(given.headers["x-request-id"]).toBe("abc-123");
    const made = await daemon.call("GET", "/function/hello");
    expect(String(made.headers["x-request-id"])).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("lists the four examples through the API", async () => {
    const res = await daemon.api("GET", "/api/v1/functions");
    const names = res.json<{ items: { name: string }[] }>().items.map((f) => f.name);
    expect(names.sort()).toEqual(["echo", "hello", "mul", "sum"]);
  });
});

describe("deploying", () => {
  it("deploys, updates, keeps an unchanged redeploy a no-op, rolls back and deletes", async () => {
    const first = await deploy("lifecycle", nodeFunction(HELLO_V1));
    expect(first.status).toBe(201);
    expect(first.json()).toMatchObject({ changed: true, revision: { number: 1 } });
    expect((await daemon.call("GET", "/function/lifecycle")).text).toBe("v1");

    const second = await deploy("lifecycle", nodeFunction(HELLO_V2));
    expect(second.json()).toMatchObject({ changed: true, revision: { number: 2 } });
    expect((await daemon.call("GET", "/function/lifecycle")).text).toBe("v2");

    const again = await deploy("lifecycle", nodeFunction(HELLO_V2));
    expect(again.status).toBe(200);
    expect(again.json()).toMatchObject({ changed: false, revision: { number: 2 } });

    const back = await daemon.api("POST", "/api/v1/functions/lifecycle/rollback", {});
    expect(back.status).toBe(200);
    expect(back.json()).toMatchObject({ revision: { number: 1, active: true } });
    expect((await daemon.call("GET", "/function/lifecycle")).text).toBe("v1");

    const revisions = await daemon.api("GET", "/api/v1/functions/lifecycle/revisions");
    expect(revisions.json<{ items: { number: number }[] }>().items.map((r) => r.number)).toEqual([2, 1]);

    expect((await daemon.api("DELETE", "/api/v1/functions/lifecycle")).status).toBe(204);
    const gone = await daemon.call("GET", "/function/lifecycle");
    expect(gone.status).toBe(404);
    expect(gone.headers["content-type"]).toContain("application/problem+json");
    expect((await daemon.api("GET", "/api/v1/functions/lifecycle")).status).toBe(404);
  });

  it("a deploy with a syntax error fails with the runtime's output and the old revision keeps serving", async () => {
    await deploy("keeper", nodeFunction(HELLO_V1));
    const broken = await deploy("keeper", nodeFunction("module.exports = { main: () => 'v2' ;"));
    expect(broken.status).toBe(422);
    const problem = broken.json<{ code: string; detail: string; logs: string[] }>();
    expect(problem.code).toBe("HANDLER_LOAD_FAILED");
    expect(problem.detail).toContain("previous revision keeps serving");
    expect(problem.logs.join("\n")).toContain("SyntaxError");
    expect((await daemon.call("GET", "/function/keeper")).text).toBe("v1");
    const view = (await daemon.api("GET", "/api/v1/functions/keeper")).json<{
      activeRevision: { number: number };
    }>();
    expect(view.activeRevision.number).toBe(1);
  });

  it("a handler without the named export fails the deploy and names the export", async () => {
    const res = await deploy("noexport", nodeFunction("module.exports = { other: () => 1 };"));
    expect(res.status).toBe(422);
    expect(res.json<{ detail: string }>().detail).toMatch(/main/);
    expect((await daemon.api("GET", "/api/v1/functions/noexport")).status).toBe(404);
  });

  it("a missing handler file is refused before anything starts", async () => {
    const res = await deploy("nofile", { "other.js": "module.exports = {}" });
    expect(res.status).toBe(422);
    expect(res.json<{ detail: string }>().detail).toContain("handler.js");
  });

  it("accepts a tar.gz archive with a Kubeless-style handler reference", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "funcd-archive-"));
    writeFileSync(path.join(dir, "helloget.js"), "module.exports = { foo: () => 'from foo' };");
    const archive = await create({ gzip: true, cwd: dir, portable: true }, ["helloget.js"]).concat();
    rmSync(dir, { recursive: true, force: true });
    const res = await daemon.api("PUT", "/api/v1/functions/kubeless", {
      runtime: "nodejs20",
      handler: "helloget.foo",
      archive: archive.toString("base64"),
    });
    expect(res.status).toBe(201);
    expect((await daemon.call("GET", "/function/kubeless")).text).toBe("from foo");
  });

  it("keeps requests in flight while a new revision takes over", async () => {
    const slow = (v: string) =>
      `module.exports = { main: () => new Promise((r) => setTimeout(() => r('${v}'), 400)) };`;
    await deploy("swap", nodeFunction(slow("old")));
    const inFlight = Array.from({ length: 5 }, () => daemon.call("GET", "/function/swap"));
    await sleep(100);
    const redeploy = await deploy("swap", nodeFunction(slow("new")));
    expect(redeploy.status).toBe(200);
    const answers = await Promise.all(inFlight);
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
    expect(answers.map((a) => a.text)).toEqual(["old", "old", "old", "old", "old"]);
    expect((await daemon.call("GET", "/function/swap")).text).toBe("new");
  });

  it("a custom route already owned by another function is a 409 and changes nothing", async () => {
    const res = await deploy("thief", nodeFunction(HELLO_V1), { routes: ["/sum"] });
    expect(res.status).toBe(409);
    expect(res.json()).toMatchObject({ code: "ROUTE_CONFLICT", owner: "sum" });
    expect((await daemon.api("GET", "/api/v1/functions/thief")).status).toBe(404);
    const sum = await daemon.call("POST", "/sum", '{"a":1,"b":1}', { "content-type": "application/json" });
    expect(sum.text).toBe("2");
  });
});

describe("bad input", () => {
  it.each([
    ["an invalid name", "/api/v1/functions/Bad_Name", { files: nodeFunction(HELLO_V1) }, 400, "INVALID_NAME"],
    [
      "an unknown runtime",
      "/api/v1/functions/rt",
      { runtime: "cobol85", files: nodeFunction(HELLO_V1) },
      400,
      "UNKNOWN_RUNTIME",
    ],
    [
      "a reserved route",
      "/api/v1/functions/rr",
      { routes: ["/api/x"], files: nodeFunction(HELLO_V1) },
      400,
      "VALIDATION_FAILED",
    ],
    [
      "a memory size that is not a number",
      "/api/v1/functions/mm",
      { memory: "lots", files: nodeFunction(HELLO_V1) },
      400,
      "VALIDATION_FAILED",
    ],
    [
      "a path that leaves the folder",
      "/api/v1/functions/pt",
      { files: { "../evil.js": "x", "handler.js": HELLO_V1 } },
      400,
      "INVALID_ARCHIVE",
    ],
  ])("%s gets a problem+json and creates nothing", async (_what, apiPath, body, status, code) => {
    const res = await daemon.api("PUT", apiPath, body);
    expect(res.status).toBe(status);
    expect(res.headers["content-type"]).toContain("application/problem+json");
    const problem = res.json<{ type: string; title: string; detail: string; code: string }>();
    expect(problem.code).toBe(code);
    expect(problem.type).toBe(`https://funcd.dev/errors#${code.toLowerCase().replaceAll("_", "-")}`);
    expect(problem.title.length).toBeGreaterThan(0);
    expect(problem.detail.length).toBeGreaterThan(0);
    const list = await daemon.api("GET", "/api/v1/functions");
    expect(list.json<{ items: { name: string }[] }>().items.map((f) => f.name)).not.toContain(
      apiPath.split("/").pop(),
    );
  });

  it("a path-traversal tar.gz is refused", async () => {
    // Built by hand: tar refuses to write "../" paths, which is exactly what an attacker would not do.
    const header = Buffer.alloc(512);
    header.write("../escape.js", 0);
    header.write("0000644\0", 100);
    header.write("0000000\0", 108);
    header.write("0000000\0", 116);
    header.write("00000000001\0", 124);
    header.write("00000000000\0", 136);
    header.write("        ", 148);
    header.write("0", 156);
    header.write("ustar\0" + "00", 257);
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
    const body = Buffer.concat([header, Buffer.from("x"), Buffer.alloc(511), Buffer.alloc(1024)]);
    const { gzipSync } = await import("node:zlib");
    const res = await daemon.api("PUT", "/api/v1/functions/traversal", {
      runtime: "nodejs20",
      archive: gzipSync(body).toString("base64"),
    });
    expect(res.status).toBe(400);
    expect(res.json()).toMatchObject({ code: "INVALID_ARCHIVE" });
  });

  it("the API refuses a missing or wrong token with 401 problem+json", async () => {
    const none = await daemon.call("GET", "/api/v1/functions");
    expect(none.status).toBe(401);
    expect(none.json()).toMatchObject({ code: "UNAUTHORIZED" });
    const wrong = await daemon.call("GET", "/api/v1/functions", undefined, { authorization: "Bearer nope" });
    expect(wrong.status).toBe(401);
    const del = await daemon.call("DELETE", "/api/v1/functions/hello");
    expect(del.status).toBe(401);
    expect((await daemon.call("GET", "/function/hello")).status).toBe(200);
  });

  it("an invocation body over the limit gets 413", async () => {
    const big = Buffer.alloc(6 * 1024 * 1024 + 10, 97);
    const res = await daemon.call("POST", "/function/echo", big, { "content-type": "text/plain" });
    expect(res.status).toBe(413);
    expect(res.json()).toMatchObject({ code: "PAYLOAD_TOO_LARGE" });
  });

  it("an unknown function is a 404 problem", async () => {
    const res = await daemon.call("GET", "/function/nope");
    expect(res.status).toBe(404);
    expect(res.json()).toMatchObject({ code: "FUNCTION_NOT_FOUND" });
    const route = await daemon.call("GET", "/not-a-route");
    expect(route.json()).toMatchObject({ code: "ROUTE_NOT_FOUND" });
  });

  it("the token file is readable by its owner only", async () => {
    const { statSync } = await import("node:fs");
    expect(statSync(path.join(daemon.dataDir, "token")).mode & 0o777).toBe(0o600);
  });
});

describe("failures inside functions", () => {
  it("a function that crashes mid-request gives 502 and the next request is served", async () => {
    await deploy(
      "crashy",
      nodeFunction(
        "module.exports = { main: (e) => { if (e.query.crash) process.exit(7); return 'fine'; } };",
      ),
    );
    const crash = await daemon.call("GET", "/function/crashy?crash=1");
    expect(crash.status).toBe(502);
    expect(crash.json()).toMatchObject({ code: "FUNCTION_CRASHED" });
    const next = await daemon.call("GET", "/function/crashy");
    expect(next.status).toBe(200);
    expect(next.text).toBe("fine");
    const view = (await daemon.api("GET", "/api/v1/functions/crashy")).json<{
      lastExit: { reason: string; code: number };
    }>();
    expect(view.lastExit).toMatchObject({ reason: "crashed", code: 7 });
  });

  it("a crash-looping function is marked failing, answers 503 with its last log lines, and backs off", async () => {
    await deploy(
      "looper",
      nodeFunction("module.exports = { main: () => { console.error('about to die'); process.exit(3); } };"),
    );
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await daemon.call("GET", "/function/looper")).status);
    expect(statuses).toEqual([502, 502, 502]);
    const refused = await daemon.call("GET", "/function/looper");
    expect(refused.status).toBe(503);
    expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0);
    const problem = refused.json<{ code: string; logs: string[] }>();
    expect(problem.code).toBe("FUNCTION_FAILING");
    expect(problem.logs.join("\n")).toContain("about to die");
    const view = (await daemon.api("GET", "/api/v1/functions/looper")).json<{ status: string }>();
    expect(view.status).toBe("failing");
  });

  it("an instance that stops answering health checks while idle is replaced", async () => {
    await deploy(
      "freezer",
      nodeFunction(
        "const id = Math.random(); module.exports = { main: (e) => { if (e.query.freeze) setTimeout(() => { for (;;) {} }, 20); return id; } };",
      ),
    );
    const before = await daemon.call("GET", "/function/freezer?freeze=1");
    expect(before.status).toBe(200);
    await sleep(3500);
    const view = (await daemon.api("GET", "/api/v1/functions/freezer")).json<{
      lastExit: { reason: string } | null;
    }>();
    expect(view.lastExit?.reason).toBe("unhealthy");
    const after = await daemon.call("GET", "/function/freezer");
    expect(after.status).toBe(200);
    expect(after.text).not.toBe(before.text);
  });

  it("a function over its memory limit is killed and reported as OOMKilled", async () => {
    await deploy(
      "hog",
      nodeFunction(
        "const keep = []; module.exports = { main: () => { for (;;) keep.push(Buffer.alloc(16 * 1024 * 1024, 1)); } };",
      ),
      { memory: 64 },
    );
    const res = await daemon.call("GET", "/function/hog");
    expect(res.status).toBe(502);
    await sleep(300);
    const view = (await daemon.api("GET", "/api/v1/functions/hog")).json<{ lastExit: { reason: string } }>();
    expect(view.lastExit.reason).toBe("OOMKilled");
    const logs = await daemon.api("GET", "/api/v1/functions/hog/logs?tail=50");
    expect(logs.text).toContain("OOMKilled");
  });

  it("a handler past its timeout answers 408 and the next call gets a fresh instance", async () => {
    await deploy(
      "sleepy",
      nodeFunction(
        "const id = Math.random(); module.exports = { main: (e) => e.query.hang ? new Promise(() => {}) : id };",
      ),
      { timeout: "500ms" },
    );
    const first = await daemon.call("GET", "/function/sleepy");
    const timedOut = await daemon.call("GET", "/function/sleepy?hang=1");
    expect(timedOut.status).toBe(408);
    expect(timedOut.json()).toMatchObject({ code: "FUNCTION_TIMEOUT" });
    await sleep(200);
    const after = await daemon.call("GET", "/function/sleepy");
    expect(after.status).toBe(200);
    expect(after.text).not.toBe(first.text);
  });

  it("a handler stuck in a synchronous loop gets 504 and its instance is replaced", async () => {
    await deploy(
      "spinner",
      nodeFunction("module.exports = { main: (e) => { if (e.query.spin) for (;;) {} return 'ok'; } };"),
      { timeout: "300ms" },
    );
    const stuck = await daemon.call("GET", "/function/spinner?spin=1");
    expect(stuck.status).toBe(504);
    expect(stuck.json()).toMatchObject({ code: "GATEWAY_TIMEOUT" });
    const next = await daemon.call("GET", "/function/spinner");
    expect(next.status).toBe(200);
  });

  it("a thrown error answers 500 problem+json and the stack goes to the logs", async () => {
    await deploy(
      "thrower",
      nodeFunction("module.exports = { main: () => { throw new TypeError('bad input here'); } };"),
    );
    const res = await daemon.call("GET", "/function/thrower", undefined, { "x-request-id": "req-throw-1" });
    expect(res.status).toBe(500);
    const problem = res.json<{ detail: string }>();
    expect(problem.detail).toContain("bad input here");
    expect(problem.detail).not.toContain("handler.js:");
    await sleep(300);
    const logs = await daemon.api("GET", "/api/v1/functions/thrower/logs?tail=50");
    const lines = logs.text
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { requestId: string | null; text: string });
    expect(lines.some((l) => l.requestId === "req-throw-1" && l.text.includes("TypeError"))).toBe(true);
  });
});

describe("scale from zero", () => {
  it("stops instances idle past the idle timeout and starts one on the next request", async () => {
    await deploy("napper", nodeFunction("const id = Math.random(); module.exports = { main: () => id };"), {
      scale: { idleTimeout: "1s" },
    });
    const before = await daemon.call("GET", "/function/napper");
    expect(before.status).toBe(200);
    await sleep(2600);
    const view = (await daemon.api("GET", "/api/v1/functions/napper")).json<{ instances: unknown[] }>();
    expect(view.instances).toHaveLength(0);
    const after = await daemon.call("GET", "/function/napper");
    expect(after.status).toBe(200);
    expect(after.text).not.toBe(before.text);
  });
});

describe("restarts", () => {
  it("a restarted daemon serves the same functions and leaves no process of the old run", async () => {
    const own = await startDaemon();
    try {
      await own.api("PUT", "/api/v1/functions/survivor", {
        runtime: "nodejs20",
        routes: ["/survive"],
        files: nodeFunction(HELLO_V1),
      });
      expect((await own.call("GET", "/survive")).text).toBe("v1");
      expect(await own.stop()).toBe(0);
      expect(processesMentioning(own.dataDir)).toEqual([]);

      const again = await startDaemon({ dataDir: own.dataDir });
      try {
        expect((await again.call("GET", "/survive")).text).toBe("v1");
        const view = (await again.api("GET", "/api/v1/functions/survivor")).json<{
          activeRevision: { number: number };
        }>();
        expect(view.activeRevision.number).toBe(1);
      } finally {
        await again.stop();
      }
      expect(processesMentioning(own.dataDir)).toEqual([]);
    } finally {
      await own.stop();
      removeDir(own.dataDir);
    }
  });

  it("a daemon killed with SIGKILL leaves instances that the next start removes", async () => {
    const own = await startDaemon();
    try {
      await own.api("PUT", "/api/v1/functions/orphan", {
        runtime: "nodejs20",
        files: nodeFunction(HELLO_V1),
      });
      expect((await own.call("GET", "/function/orphan")).text).toBe("v1");
      await own.stop("SIGKILL");
      // Without a warm pool of its own, so any process left mentioning the data dir is a leftover of the
      // killed daemon (its instances and its pool's generic instances alike).
      const again = await startDaemon({ dataDir: own.dataDir, env: { FUNCD_POOL_SIZE: "0" } });
      try {
        await sleep(200);
        // Only the new daemon's own instances (none yet: scale from zero) may remain.
        expect(processesMentioning(own.dataDir).filter((pid) => pid !== again.process.pid)).toEqual([]);
        expect((await again.call("GET", "/function/orphan")).text).toBe("v1");
      } finally {
        await again.stop();
      }
    } finally {
      removeDir(own.dataDir);
    }
  });
});

describe("observability and docs", () => {
  it("the daemon's /metrics counts invocations by function and status code", async () => {
    await daemon.call("POST", "/sum", '{"a":1,"b":2}', { "content-type": "application/json" });
    const metrics = await daemon.call("GET", "/metrics");
    expect(metrics.status).toBe(200);
    expect(metrics.text).toMatch(/funcd_invocations_total\{function="sum",code="200"\} \d+/);
    expect(metrics.text).toContain("funcd_invocation_duration_seconds_bucket");
    expect(metrics.text).toMatch(/funcd_cold_starts_total|funcd_instances\{/);
  });

  it("serves the OpenAPI document and interactive docs without a token", async () => {
    const doc = await send(`${daemon.adminUrl}/api/docs/json`, "GET");
    expect(doc.status).toBe(200);
    const openapi = doc.json<{ openapi: string; paths: Record<string, unknown> }>();
    expect(openapi.openapi).toMatch(/^3\./);
    expect(Object.keys(openapi.paths)).toEqual(
      expect.arrayContaining([
        "/api/v1/functions",
        "/api/v1/functions/{name}",
        "/api/v1/functions/{name}/logs",
      ]),
    );
    const ui = await send(`${daemon.adminUrl}/api/docs/`, "GET");
    expect(ui.status).toBe(200);
    expect(ui.text).toContain("swagger");
  });

  it("follows a function's logs as they are written", async () => {
    await deploy(
      "chatty",
      nodeFunction("module.exports = { main: (e) => { console.log('said ' + e.query.n); return 'ok'; } };"),
    );
    const { request } = await import("undici");
    const res = await request(`${daemon.url}/api/v1/functions/chatty/logs?follow=true&tail=0`, {
      headers: { authorization: `Bearer ${daemon.token}` },
    });
    const seen: string[] = [];
    const reading = (async () => {
      for await (const chunk of res.body) {
        seen.push(String(chunk));
        if (seen.join("").includes("said 2")) return;
      }
    })();
    await daemon.call("GET", "/function/chatty?n=1");
    await daemon.call("GET", "/function/chatty?n=2");
    await Promise.race([reading, sleep(5000)]);
    res.body.destroy();
    const text = seen.join("");
    expect(text).toContain("said 1");
    expect(text).toContain("said 2");
  });
});

describe("isolation", () => {
  it("a function cannot read the daemon's data dir, its token or other functions' code", async () => {
    const probe = `
      const fs = require("fs");
      const tryRead = (p) => { try { fs.readFileSync(p); return "READ"; } catch (e) { return e.code; } };
      const tryList = (p) => { try { return fs.readdirSync(p).length; } catch (e) { return e.code; } };
      module.exports = { main: () => ({
        token: tryRead(${JSON.stringify(path.join(daemon.dataDir, "token"))}),
        db: tryRead(${JSON.stringify(path.join(daemon.dataDir, "funcd.db"))}),
        artifacts: tryList(${JSON.stringify(path.join(daemon.dataDir, "artifacts"))}),
        uid: process.getuid(),
        root: fs.readdirSync("/").sort(),
      }) };`;
    await deploy("probe", nodeFunction(probe));
    const res = await daemon.call("GET", "/function/probe");
    expect(res.status).toBe(200);
    const seen = res.json<{
      token: string;
      db: string;
      artifacts: string | number;
      uid: number;
      root: string[];
    }>();
    expect(seen.token).not.toBe("READ");
    expect(seen.db).not.toBe("READ");
    expect(typeof seen.artifacts).toBe("string");
    if (process.getuid?.() === 0) expect(seen.uid).not.toBe(0);
    expect(seen.root).not.toContain("home");
    expect(seen.root).not.toContain("root");
  });
});

describe("execution records", () => {
  it("records every invocation with its outcome: success, error, timeout, OOM and crash", async () => {
    const code = `
      const keep = [];
      module.exports = { main: (e) => {
        console.log("handling " + e.query.do);
        if (e.query.do === "throw") throw new Error("nope");
        if (e.query.do === "hang") return new Promise(() => {});
        if (e.query.do === "oom") for (;;) keep.push(Buffer.alloc(16 * 1024 * 1024, 1));
        if (e.query.do === "exit") process.exit(9);
        return "ok";
      } };`;
    await deploy("recorded", nodeFunction(code), { timeout: "500ms", memory: 64 });
    const ids: Record<string, string> = {};
    for (const what of ["ok", "throw", "hang", "oom", "exit"]) {
      const res = await daemon.call("GET", `/function/recorded?do=${what}`);
      ids[what] = String(res.headers["x-funcd-execution-id"]);
    }
    await sleep(600);
    const list = await daemon.api("GET", "/api/v1/executions?function=recorded&limit=10");
    const items = list.json<{ items: { id: string; outcome: string; statusCode: number }[] }>().items;
    const outcome = (what: string) => items.find((e) => e.id === ids[what]);
    expect(outcome("ok")).toMatchObject({ outcome: "success", statusCode: 200 });
    expect(outcome("throw")).toMatchObject({ outcome: "error", statusCode: 500 });
    expect(outcome("hang")).toMatchObject({ outcome: "timeout", statusCode: 408 });
    expect(outcome("oom")).toMatchObject({ outcome: "oomkilled", statusCode: 502 });
    expect(outcome("exit")).toMatchObject({ outcome: "crashed", statusCode: 502 });

    const failed = await daemon.api("GET", "/api/v1/executions?function=recorded&status=failed");
    expect(failed.json<{ items: unknown[] }>().items).toHaveLength(4);

    const one = await daemon.api("GET", `/api/v1/executions/${ids.throw}`);
    const shown = one.json<{ functionName: string; error: string; logs: { text: string }[] }>();
    expect(shown.functionName).toBe("recorded");
    expect(shown.error).toContain("nope");
    expect(shown.logs.map((l) => l.text).join("\n")).toContain("handling throw");
  });

  it("the first request after scale-to-zero is recorded as a cold start", async () => {
    await deploy("coldrec", nodeFunction("module.exports = { main: () => 'x' };"), {
      scale: { idleTimeout: "1s" },
    });
    await sleep(2500);
    const res = await daemon.call("GET", "/function/coldrec");
    const id = String(res.headers["x-funcd-execution-id"]);
    await sleep(400);
    const record = (await daemon.api("GET", `/api/v1/executions/${id}`)).json<{ coldStart: boolean }>();
    expect(record.coldStart).toBe(true);
  });

  it("an unknown execution is a 404 problem", async () => {
    const res = await daemon.api("GET", "/api/v1/executions/nope");
    expect(res.status).toBe(404);
    expect(res.json()).toMatchObject({ code: "NOT_FOUND" });
  });
});

describe("scaling with real instances", () => {
  it("a burst of 200 concurrent requests at zero instances all succeed, on several instances", async () => {
    await deploy(
      "bursty",
      nodeFunction(
        "module.exports = { main: () => new Promise((r) => setTimeout(() => r(String(Math.random())), 20)) };",
      ),
      { concurrency: 4, scale: { max: 8, idleTimeout: "2s" } },
    );
    // Wait for the proving instance to be reaped, so the burst really starts from zero.
    for (let i = 0; i < 50; i++) {
      const view = (await daemon.api("GET", "/api/v1/functions/bursty")).json<{ instances: unknown[] }>();
      if (view.instances.length === 0) break;
      await sleep(200);
    }
    const answers = await Promise.all(
      Array.from({ length: 200 }, () => daemon.call("GET", "/function/bursty")),
    );
    expect(answers.filter((a) => a.status !== 200).map((a) => a.status)).toEqual([]);
    const view = (await daemon.api("GET", "/api/v1/functions/bursty")).json<{ instances: unknown[] }>();
    expect(view.instances.length).toBeGreaterThan(1);
    expect(view.instances.length).toBeLessThanOrEqual(8);
  });
});

describe("throttling", () => {
  it("a full queue answers 429 with Retry-After and the execution is recorded as throttled", async () => {
    const own = await startDaemon({ env: { FUNCD_MAX_QUEUED_PER_FUNCTION: "1" } });
    try {
      await own.api("PUT", "/api/v1/functions/narrow", {
        runtime: "nodejs20",
        concurrency: 1,
        scale: { max: 1 },
        files: nodeFunction(
          "module.exports = { main: () => new Promise((r) => setTimeout(() => r('done'), 300)) };",
        ),
      });
      const answers = await Promise.all(Array.from({ length: 4 }, () => own.call("GET", "/function/narrow")));
      const refused = answers.filter((a) => a.status === 429);
      expect(refused.length).toBeGreaterThan(0);
      expect(answers.filter((a) => a.status === 200).length).toBeGreaterThan(0);
      const first = refused[0];
      expect(Number(first?.headers["retry-after"])).toBeGreaterThan(0);
      expect(first?.json()).toMatchObject({ code: "QUEUE_FULL" });
      await sleep(400);
      const record = await own.api("GET", `/api/v1/executions/${first?.headers["x-funcd-execution-id"]}`);
      expect(record.json()).toMatchObject({ outcome: "throttled", statusCode: 429 });
    } finally {
      await own.stop();
      removeDir(own.dataDir);
    }
  });
});
