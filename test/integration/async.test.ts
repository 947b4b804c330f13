import http from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, type Reply, removeDir, startDaemon } from "../helpers/daemon.js";

/**
 * A real HTTP server on 127.0.0.1: functions report the invocations they ran to it (sandboxes share the
 * network namespace), and it takes callbacks. `failFirst(path, n)` makes it answer 500 n times on a path.
 */
class Probe {
  readonly seen: string[] = [];
  readonly callbacks = new Map<string, Record<string, unknown>[]>();
  readonly #failures = new Map<string, number>();
  readonly #server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => {
      body += d.toString();
    });
    req.on("end", () => {
      const path = req.url ?? "/";
      if (path === "/seen") {
        this.seen.push(body);
      } else {
        const left = this.#failures.get(path) ?? 0;
        const list = this.callbacks.get(path) ?? [];
        list.push(JSON.parse(body) as Record<string, unknown>);
        this.callbacks.set(path, list);
        if (left > 0) {
          this.#failures.set(path, left - 1);
          res.writeHead(500).end("not now");
          return;
        }
      }
      res.writeHead(200).end("ok");
    });
  });
  url = "";

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  failFirst(path: string, times: number): void {
    this.#failures.set(path, times);
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

/** Polls `check` until it returns a value (not undefined) or `timeoutMs` passes. */
async function until<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 15_000,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

interface ExecutionView {
  id: string;
  state?: string;
  trigger: string;
  attempt?: number;
  statusCode: number;
  outcome: string;
  error: string | null;
  queuedAt?: string;
  finishedAt: string | null;
  request?: { method: string; path: string; body: string; headers: Record<string, string> };
  result?: { statusCode: number; body: string; encoding: string };
  callback?: { status: string; attempts: number; statusCode: number | null; url: string };
}

const FINAL = new Set(["succeeded", "failed", "dead-lettered"]);

async function finalState(daemon: Daemon, id: string, timeoutMs = 15_000): Promise<ExecutionView> {
  return until(
    `execution ${id} to finish`,
    async () => {
      const res = await daemon.api("GET", `/api/v1/executions/${id}`);
      const view = res.json<ExecutionView>();
      return view.state && FINAL.has(view.state) ? view : undefined;
    },
    timeoutMs,
  );
}

function accepted(res: Reply): string {
  expect(res.status, res.text).toBe(202);
  const body = res.json<{ executionId: string; status: string; location: string }>();
  expect(body.status).toBe("queued");
  expect(res.headers.location).toBe(`/api/v1/executions/${body.executionId}`);
  expect(body.location).toBe(res.headers.location);
  return body.executionId;
}

/** Answers by its headers: fails with `x-fail-status` (default 500) until attempt `x-ok-at` (default 1). */
const SCRIPTED = `module.exports = { main: (event) => {
  const h = event.headers;
  const attempt = Number(h["x-funcd-attempt"]);
  const status = attempt >= Number(h["x-ok-at"] || 1) ? 200 : Number(h["x-fail-status"] || 500);
  return { statusCode: status, headers: { "content-type": "application/json" }, body: JSON.stringify({ attempt }) };
} };`;

const ECHO = `module.exports = { main: (event) => ({
  method: event.method, path: event.path, query: event.query, data: event.data,
  executionId: event.headers["x-funcd-execution-id"], attempt: event.headers["x-funcd-attempt"],
}) };`;

/** Reports its execution id to the probe (after `DELAY_MS`), then answers. */
const REPORTER = `module.exports = { main: async (event) => {
  await new Promise((r) => setTimeout(r, Number(process.env.DELAY_MS || 0)));
  const res = await fetch(process.env.PROBE + "/seen", { method: "POST", body: event.headers["x-funcd-execution-id"] });
  if (!res.ok) throw new Error("probe answered " + res.status);
  return "ok";
} };`;

async function deploy(daemon: Daemon, name: string, code: string, spec: Record<string, unknown> = {}) {
  const res = await daemon.api("PUT", `/api/v1/functions/${name}`, {
    runtime: "nodejs20",
    ...spec,
    files: { "handler.js": code },
  });
  expect(res.status, res.text).toBeLessThan(300);
}

describe("async invocations", () => {
  let daemon: Daemon;
  const probe = new Probe();

  beforeAll(async () => {
    await probe.start();
    daemon = await startDaemon({
      env: {
        FUNCD_ASYNC_BACKOFF_BASE_MS: "100",
        FUNCD_ASYNC_BACKOFF_CAP_MS: "400",
        FUNCD_MAX_EVENT_AGE_MS: "4000",
        FUNCD_ASYNC_CONCURRENCY_PER_FUNCTION: "4",
      },
    });
    await Promise.all([
      deploy(daemon, "echo", ECHO, { routes: ["/echo-route"] }),
      deploy(daemon, "scripted", SCRIPTED),
    ]);
  });

  afterAll(async () => {
    await daemon?.stop();
    if (daemon) removeDir(daemon.dataDir);
    await probe.close();
  });

  it("POST /async-function/NAME/sub answers 202 and the record ends succeeded with request and result", async () => {
    const res = await daemon.call("POST", "/async-function/echo/sub/path?x=1", '{"hello":"async"}', {
      "content-type": "application/json",
      authorization: "Bearer secret",
    });
    const id = accepted(res);
    expect(res.headers["x-funcd-execution-id"]).toBe(id);
    const record = await finalState(daemon, id);
    expect(record).toMatchObject({
      trigger: "async",
      state: "succeeded",
      outcome: "success",
      attempt: 1,
      statusCode: 200,
    });
    expect(record.queuedAt).toBeTruthy();
    expect(record.finishedAt).toBeTruthy();
    expect(record.request).toMatchObject({
      method: "POST",
      path: "/sub/path?x=1",
      body: '{"hello":"async"}',
    });
    expect(record.request?.headers.authorization).toBe("[redacted]");
    expect(record.result?.statusCode).toBe(200);
    const answer = JSON.parse(record.result?.body ?? "{}") as Record<string, unknown>;
    const shown = await daemon.cli(["executions", "show", id]);
    expect(shown.stdout).toMatch(/State\s+succeeded, attempt 1/);
    expect(answer).toMatchObject({
      method: "POST",
      path: "/sub/path",
      query: { x: "1" },
      data: { hello: "async" },
      executionId: id,
      attempt: "1",
    });
  });

  it("/metrics shows how long the queue's write transactions waited for the database lock", async () => {
    accepted(await daemon.call("POST", "/async-function/echo", "x"));
    const { text } = await daemon.call("GET", "/metrics");
    for (const operation of ["queue.enqueue", "queue.claim"]) {
      expect(text).toMatch(
        new RegExp(`funcd_store_lock_wait_seconds_count\\{operation="${operation}"\\} [1-9]`),
      );
    }
    expect(text).toContain("# TYPE funcd_store_busy_retries_total counter");
  });

  it("X-Invocation-Type: async works on /function/NAME and on a custom route", async () => {
    const viaFunction = accepted(
      await daemon.call("PUT", "/function/echo/a", "one", {
        "x-invocation-type": "async",
        "content-type": "text/plain",
      }),
    );
    const viaRoute = accepted(
      await daemon.call("POST", "/echo-route/b", "two", {
        "x-invocation-type": "Event",
        "content-type": "text/plain",
      }),
    );
    const [a, b] = await Promise.all([finalState(daemon, viaFunction), finalState(daemon, viaRoute)]);
    expect(JSON.parse(a.result?.body ?? "{}")).toMatchObject({ method: "PUT", path: "/a", data: "one" });
    expect(JSON.parse(b.result?.body ?? "{}")).toMatchObject({ method: "POST", path: "/b", data: "two" });
  });

  it("refuses unknown functions, bad callback URLs and bad retry counts before queueing", async () => {
    const missing = await daemon.call("POST", "/async-function/nope", "x");
    expect(missing.status).toBe(404);
    expect(missing.json<{ code: string }>().code).toBe("FUNCTION_NOT_FOUND");
    const badUrl = await daemon.call("POST", "/async-function/echo", "x", {
      "x-callback-url": "file:///etc/passwd",
    });
    expect(badUrl.status).toBe(400);
    expect(badUrl.json<{ code: string }>().code).toBe("INVALID_CALLBACK_URL");
    const badRetries = await daemon.call("POST", "/async-function/echo", "x", { "x-funcd-retries": "11" });
    expect(badRetries.status).toBe(400);
  });

  it("retries 5xx and 429 with backoff until an attempt succeeds", async () => {
    const fiveHundred = accepted(
      await daemon.call("POST", "/async-function/scripted", "", { "x-ok-at": "3" }),
    );
    const throttled = accepted(
      await daemon.call("POST", "/async-function/scripted", "", { "x-ok-at": "2", "x-fail-status": "429" }),
    );
    const [a, b] = await Promise.all([finalState(daemon, fiveHundred), finalState(daemon, throttled)]);
    expect(a).toMatchObject({ state: "succeeded", attempt: 3, statusCode: 200 });
    expect(JSON.parse(a.result?.body ?? "{}")).toEqual({ attempt: 3 });
    expect(b).toMatchObject({ state: "succeeded", attempt: 2 });
  });

  it("does not retry a 4xx other than 408/429: the invocation fails after one attempt", async () => {
    const id = accepted(
      await daemon.call("POST", "/async-function/scripted", "", { "x-ok-at": "2", "x-fail-status": "400" }),
    );
    const record = await finalState(daemon, id);
    expect(record).toMatchObject({ state: "failed", attempt: 1, statusCode: 400, outcome: "error" });
    const dlq = (await daemon.api("GET", "/api/v1/functions/scripted/dlq")).json<{
      items: { executionId: string }[];
    }>();
    expect(dlq.items.map((d) => d.executionId)).not.toContain(id);
  });

  it("dead-letters after the last retry; the CLI lists it and a redrive runs it again on fixed code", async () => {
    await deploy(daemon, "fixme", "module.exports = { main: () => { throw new Error('not yet'); } };");
    const id = accepted(
      await daemon.call("POST", "/async-function/fixme", "payload", { "x-funcd-retries": "1" }),
    );
    const dead = await finalState(daemon, id);
    expect(dead).toMatchObject({ state: "dead-lettered", attempt: 2, statusCode: 500 });
    expect(dead.error).toContain("2 attempts failed (1 retry allowed)");

    const listed = await daemon.api("GET", "/api/v1/functions/fixme/dlq");
    expect(listed.json<{ items: { executionId: string; attempts: number }[] }>().items).toEqual([
      expect.objectContaining({ executionId: id, attempts: 2 }),
    ]);
    const cli = await daemon.cli(["dlq", "list", "fixme"]);
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toContain(id);

    await deploy(daemon, "fixme", "module.exports = { main: (event) => 'fixed:' + event.data };");
    const redrive = await daemon.cli(["dlq", "redrive", "fixme", id]);
    expect(redrive.code, redrive.stderr).toBe(0);
    expect(redrive.stdout).toContain("Queued 1 invocation of fixme again");
    const again = await finalState(daemon, id);
    expect(again).toMatchObject({ state: "succeeded", attempt: 1 });
    expect(again.result?.body).toBe("fixed:payload");
    const empty = await daemon.api("GET", "/api/v1/functions/fixme/dlq");
    expect(empty.json<{ items: unknown[] }>().items).toEqual([]);
    // Redriving everything when there is nothing to redrive is fine.
    const none = await daemon.api("POST", "/api/v1/functions/fixme/dlq/redrive", {});
    expect(none.json()).toMatchObject({ count: 0 });
  });

  it("does not attempt an invocation again once it is older than the maximum event age", async () => {
    await deploy(
      daemon,
      "slowfail",
      "module.exports = { main: () => new Promise((_, reject) => setTimeout(() => reject(new Error('slow')), 500)) };",
    );
    const id = accepted(
      await daemon.call("POST", "/async-function/slowfail", "", { "x-funcd-retries": "10" }),
    );
    const record = await finalState(daemon, id);
    expect(record.state).toBe("dead-lettered");
    expect(record.error).toContain("maximum event age of 4000 ms");
    expect(record.attempt).toBeGreaterThan(1);
    expect(record.attempt).toBeLessThan(11);
  });

  it("POSTs the result to X-Callback-Url, and retries a callback URL that fails", async () => {
    const ok = accepted(
      await daemon.call("POST", "/async-function/echo/cb", "hi", {
        "x-callback-url": `${probe.url}/callback`,
        "content-type": "text/plain",
      }),
    );
    probe.failFirst("/flaky", 2);
    const flaky = accepted(
      await daemon.call("POST", "/async-function/echo", "again", { "x-callback-url": `${probe.url}/flaky` }),
    );
    const dead = accepted(
      await daemon.call("POST", "/async-function/scripted", "", {
        "x-callback-url": `${probe.url}/dead`,
        "x-ok-at": "9",
        "x-funcd-retries": "0",
      }),
    );
    const first = await until("the callback", () => probe.callbacks.get("/callback")?.[0]);
    expect(first).toMatchObject({
      executionId: ok,
      function: "echo",
      status: "succeeded",
      outcome: "success",
      statusCode: 200,
      attempts: 1,
      encoding: "utf8",
    });
    expect(JSON.parse(String(first.body))).toMatchObject({ path: "/cb", data: "hi" });

    const flakyRecord = await until("the flaky callback to be delivered", async () => {
      const view = (await daemon.api("GET", `/api/v1/executions/${flaky}`)).json<ExecutionView>();
      return view.callback?.status === "delivered" ? view : undefined;
    });
    expect(flakyRecord.callback).toMatchObject({ attempts: 3, statusCode: 200 });
    expect(probe.callbacks.get("/flaky")).toHaveLength(3);

    const deadCallback = await until("the dead letter's callback", () => probe.callbacks.get("/dead")?.[0]);
    expect(deadCallback).toMatchObject({
      executionId: dead,
      status: "dead-lettered",
      statusCode: 500,
      attempts: 1,
    });
  });

  it("deleting a function drops its queued invocations", async () => {
    await deploy(
      daemon,
      "doomed",
      "module.exports = { main: () => new Promise((r) => setTimeout(() => r('late'), 1000)) };",
    );
    const ids = await Promise.all(
      Array.from({ length: 12 }, async () =>
        accepted(await daemon.call("POST", "/async-function/doomed", "x")),
      ),
    );
    const queue = (await daemon.api("GET", "/api/v1/functions/doomed/queue")).json<{
      queued: number;
      running: number;
    }>();
    expect(queue.queued + queue.running).toBeGreaterThan(0);
    expect((await daemon.api("DELETE", "/api/v1/functions/doomed")).status).toBe(204);
    await deploy(daemon, "doomed", "module.exports = { main: () => 'new' };");
    await sleep(300);
    const after = (await daemon.api("GET", "/api/v1/functions/doomed/queue")).json();
    expect(after).toMatchObject({ queued: 0, running: 0, deadLettered: 0 });
    expect((await daemon.api("GET", `/api/v1/executions/${ids[11]}`)).status).toBe(404);
  });
});

describe("async invocations across kill -9", () => {
  const probe = new Probe();
  let daemon: Daemon;
  let dataDir: string;
  const env = {
    FUNCD_ASYNC_BACKOFF_BASE_MS: "100",
    FUNCD_ASYNC_BACKOFF_CAP_MS: "500",
    FUNCD_ASYNC_CONCURRENCY_PER_FUNCTION: "10",
  };

  beforeAll(async () => {
    await probe.start();
    daemon = await startDaemon({ env });
    dataDir = daemon.dataDir;
    await Promise.all([
      deploy(daemon, "slow", REPORTER, { env: { PROBE: probe.url, DELAY_MS: "1500" } }),
      deploy(daemon, "count", REPORTER, { env: { PROBE: probe.url, DELAY_MS: "40" } }),
    ]);
  });

  afterAll(async () => {
    await daemon?.stop();
    removeDir(dataDir);
    await probe.close();
  });

  it("an invocation accepted with 202 runs after the daemon is killed right after answering", async () => {
    const id = accepted(await daemon.call("POST", "/async-function/slow", "durable?"));
    await daemon.stop("SIGKILL");
    // The function waits 1.5 s before reporting: it cannot have reported before the kill.
    expect(probe.seen).not.toContain(id);
    daemon = await startDaemon({ dataDir, env });
    await until("the invocation to run after the restart", () =>
      probe.seen.includes(id) ? true : undefined,
    );
    const record = await finalState(daemon, id);
    expect(record).toMatchObject({ state: "succeeded", statusCode: 200 });
    expect(record.attempt).toBeGreaterThanOrEqual(1);
  });

  it("1,000 queued invocations, kill -9 mid-way, restart: every one succeeds or is dead-lettered", async () => {
    const ids: string[] = [];
    for (let batch = 0; batch < 20; batch++) {
      const replies = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          daemon.call("POST", "/async-function/count", String(batch * 50 + i)),
        ),
      );
      for (const reply of replies) ids.push(accepted(reply));
    }
    expect(new Set(ids).size).toBe(1000);
    await until("some invocations to run", () => (probe.seen.length >= 100 ? true : undefined));
    const before = (await daemon.api("GET", "/api/v1/functions/count/queue")).json<{
      queued: number;
      running: number;
    }>();
    await daemon.stop("SIGKILL");
    // Mid-way: some ran, many were still queued or running.
    expect(before.queued + before.running).toBeGreaterThan(50);
    daemon = await startDaemon({ dataDir, env });

    const states = await until(
      "all 1,000 to finish",
      async () => {
        const page = (await daemon.api("GET", "/api/v1/executions?function=count&limit=1000")).json<{
          items: ExecutionView[];
        }>();
        const byId = new Map(page.items.map((e) => [e.id, e.state]));
        const done = ids.filter((id) => byId.get(id) === "succeeded" || byId.get(id) === "dead-lettered");
        return done.length === ids.length ? byId : undefined;
      },
      40_000,
    );
    const succeeded = ids.filter((id) => states.get(id) === "succeeded");
    const deadLettered = (await daemon.api("GET", "/api/v1/functions/count/dlq?limit=1000")).json<{
      items: { executionId: string }[];
    }>();
    expect(succeeded.length + deadLettered.items.length).toBe(1000);
    // At least once: every succeeded invocation reached the function (some twice, around the kill).
    const seen = new Set(probe.seen);
    expect(succeeded.filter((id) => !seen.has(id))).toEqual([]);
    const queue = (await daemon.api("GET", "/api/v1/functions/count/queue")).json();
    expect(queue).toMatchObject({ queued: 0, running: 0 });
  });
});
