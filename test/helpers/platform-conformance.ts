/**
 * One conformance suite for the whole platform, run against a real `funcd server` per driver: what a user
 * sees through the API and the gateway must not depend on where instances run. Each driver's test file
 * calls `runPlatformConformance({ name, env })` (process: test/integration/platform-process.test.ts,
 * docker: platform-docker.test.ts) and adds what only it can check (`afterDelete`); a gap is a `skipCases`
 * entry with its reason.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, nodeFunction, removeDir, startDaemon } from "./daemon.js";
import { abandonUpload, curlUpload, rawRequest } from "./raw-http.js";

/** Answers "<boot id> <body length>": the boot id changes when the instance is replaced. */
const BODY_LENGTH =
  "const boot = Math.random().toString(36).slice(2); module.exports = { main: (e) => boot + ' ' + String(e.data).length };";

export type PlatformCase =
  | "deploy and invoke"
  | "update"
  | "scale to zero and back"
  | "crash recovery"
  | "memory limit"
  | "logs"
  | "delete"
  | "Expect: 100-continue"
  | "nothing a client sends crashes an instance";

export interface PlatformConformanceOptions {
  /** The suite's title, e.g. "process driver". */
  name: string;
  /** The daemon's environment (FUNCD_DRIVER and friends). */
  env?: Record<string, string>;
  /** Skip every case, with the reason (never set under CI for a missing engine: the suite must fail). */
  skip?: string | undefined;
  /** Cases this platform does not pass yet, each with the reason. */
  skipCases?: Partial<Record<PlatformCase, string>>;
  /** Driver-specific checks once a function is deleted (no container left, …). */
  afterDelete?: (daemon: Daemon, functionName: string) => Promise<void>;
  /** Called with every function the suite deployed once its daemon stopped (remove images, …). */
  cleanup?: (functionNames: string[]) => Promise<void>;
  /** Per-case timeout (image builds take longer than process starts). */
  timeoutMs?: number;
}

/** Polls `check` until it stops throwing, or rethrows its last failure after `timeoutMs`. */
export async function eventually<T>(check: () => Promise<T>, timeoutMs = 10_000, everyMs = 200): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > until) throw err;
      await sleep(everyMs);
    }
  }
}

interface FunctionView {
  instances: { instanceId: string }[];
  activeRevision: { number: number } | null;
  lastExit: { reason: string } | null;
}

export function runPlatformConformance(options: PlatformConformanceOptions): void {
  // Names unique per run: images and containers of concurrent runs on one engine never meet.
  const run = randomBytes(3).toString("hex");
  const deployed: string[] = [];
  const fn = (base: string) => {
    const name = `pc${run}-${base}`;
    deployed.push(name);
    return name;
  };
  let daemon: Daemon;

  const deploy = (name: string, code: string, spec: Record<string, unknown> = {}) =>
    daemon.api("PUT", `/api/v1/functions/${name}`, {
      runtime: "nodejs20",
      ...spec,
      files: nodeFunction(code),
    });
  const view = async (name: string) =>
    (await daemon.api("GET", `/api/v1/functions/${name}`)).json<FunctionView>();

  const title = `platform conformance: ${options.name}${options.skip ? ` (skipped: ${options.skip})` : ""}`;
  describe.skipIf(options.skip !== undefined)(title, () => {
    beforeAll(async () => {
      daemon = await startDaemon(options.env ? { env: options.env } : {});
    }, 60_000);

    afterAll(async () => {
      await daemon?.stop();
      if (daemon) removeDir(daemon.dataDir);
      await options.cleanup?.(deployed);
    }, 60_000);

    const test = (name: PlatformCase, body: () => Promise<void>) => {
      const reason = options.skipCases?.[name];
      if (reason) it.skip(`${name} (skipped: ${reason})`, body);
      else it(name, body, options.timeoutMs ?? 60_000);
    };

    test("deploy and invoke", async () => {
      const name = fn("hello");
      const res = await deploy(name, "module.exports = { main: (e) => 'hello ' + e.query.who };");
      expect(res.status).toBe(201);
      const answer = await daemon.call("GET", `/function/${name}?who=Ada`);
      expect(answer.status).toBe(200);
      expect(answer.text).toBe("hello Ada");
    });

    test("update", async () => {
      const name = fn("update");
      await deploy(name, "module.exports = { main: () => 'v1' };");
      expect((await daemon.call("GET", `/function/${name}`)).text).toBe("v1");
      const second = await deploy(name, "module.exports = { main: () => 'v2' };");
      expect(second.json()).toMatchObject({ changed: true, revision: { number: 2 } });
      expect((await daemon.call("GET", `/function/${name}`)).text).toBe("v2");
      // The old revision's instances drain and go.
      await eventually(async () => {
        const instances = (await view(name)).instances;
        expect(
          instances.every((i) =>
            i.instanceId.includes(second.json<{ revision: { id: string } }>().revision.id.slice(0, 8)),
          ),
        ).toBe(true);
      });
    });

    test("scale to zero and back", async () => {
      const name = fn("napper");
      await deploy(name, "const id = Math.random(); module.exports = { main: () => String(id) };", {
        scale: { idleTimeout: "1s" },
      });
      const before = await daemon.call("GET", `/function/${name}`);
      expect(before.status).toBe(200);
      await eventually(async () => expect((await view(name)).instances).toHaveLength(0), 15_000);
      const after = await daemon.call("GET", `/function/${name}`);
      expect(after.status).toBe(200);
      expect(after.text).not.toBe(before.text);
    });

    test("crash recovery", async () => {
      const name = fn("crashy");
      await deploy(
        name,
        "module.exports = { main: (e) => { if (e.query.crash) setTimeout(() => process.exit(7), 5); return 'fine'; } };",
      );
      expect((await daemon.call("GET", `/function/${name}?crash=1`)).status).toBe(200);
      await eventually(async () => expect((await view(name)).lastExit).toMatchObject({ reason: "crashed" }));
      const next = await daemon.call("GET", `/function/${name}`);
      expect(next.status).toBe(200);
      expect(next.text).toBe("fine");
    });

    test("memory limit", async () => {
      const name = fn("hog");
      await deploy(
        name,
        "const keep = []; module.exports = { main: () => { for (;;) keep.push(Buffer.alloc(16 * 1024 * 1024, 1)); } };",
        { memory: 64 },
      );
      const res = await daemon.call("GET", `/function/${name}`);
      expect(res.status).toBe(502);
      await eventually(async () =>
        expect((await view(name)).lastExit).toMatchObject({ reason: "OOMKilled" }),
      );
      await eventually(async () => {
        const logs = await daemon.api("GET", `/api/v1/functions/${name}/logs?tail=50`);
        expect(logs.text).toContain("OOMKilled");
      });
    });

    test("logs", async () => {
      const name = fn("logger");
      await deploy(
        name,
        "module.exports = { main: () => { console.log('logged line'); console.error('on stderr'); return 'ok'; } };",
      );
      const res = await daemon.call("GET", `/function/${name}`, undefined, { "x-request-id": `req-${run}` });
      expect(res.status).toBe(200);
      await eventually(async () => {
        const logs = await daemon.api("GET", `/api/v1/functions/${name}/logs?tail=100`);
        const lines = logs.text
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l) as { requestId: string | null; stream: string; text: string });
        expect(lines).toContainEqual(
          expect.objectContaining({ requestId: `req-${run}`, stream: "stdout", text: "logged line" }),
        );
        expect(lines).toContainEqual(
          expect.objectContaining({ requestId: `req-${run}`, stream: "stderr", text: "on stderr" }),
        );
      });
    });

    test("delete", async () => {
      const name = fn("doomed");
      await deploy(name, "module.exports = { main: () => 'here' };");
      expect((await daemon.call("GET", `/function/${name}`)).status).toBe(200);
      expect((await daemon.api("DELETE", `/api/v1/functions/${name}`)).status).toBe(204);
      expect((await daemon.call("GET", `/function/${name}`)).status).toBe(404);
      expect((await daemon.api("GET", `/api/v1/functions/${name}`)).status).toBe(404);
      await options.afterDelete?.(daemon, name);
    });

    test("Expect: 100-continue", async () => {
      const name = fn("expect");
      await deploy(name, BODY_LENGTH);
      const first = await daemon.call("POST", `/function/${name}`, "x", { "content-type": "text/plain" });
      expect(first.status).toBe(200);
      const [boot] = first.text.split(" ");
      const instances = (await view(name)).instances.map((i) => i.instanceId);

      // curl adds `Expect: 100-continue` by itself to an upload over 1 MiB.
      const dir = mkdtempSync(path.join(os.tmpdir(), "funcd-expect-"));
      const file = path.join(dir, "big.txt");
      writeFileSync(file, "a".repeat(2 * 1024 * 1024));
      const curled = await curlUpload(`${daemon.url}/function/${name}`, file, {
        "content-type": "text/plain",
      });
      removeDir(dir);
      expect(curled.trace).toMatch(/^> Expect: 100-continue/im);
      expect(curled.trace).toMatch(/^< HTTP\/1\.1 100 Continue/im);
      expect(curled.status).toBe(200);
      expect(curled.body).toBe(`${boot} ${2 * 1024 * 1024}`);

      // By hand: the head alone, the body only once the gateway said 100 Continue.
      const raw = await rawRequest(daemon.url, {
        method: "POST",
        path: `/function/${name}`,
        headers: { "content-type": "text/plain", expect: "100-continue" },
        body: Buffer.from("hello"),
        waitForContinue: true,
      });
      expect(raw.interim).toEqual([100]);
      expect(raw.status).toBe(200);
      expect(raw.body).toBe(`${boot} 5`);

      // An expectation the gateway cannot meet: 417, and the function never sees the request.
      const unknown = await rawRequest(daemon.url, {
        method: "POST",
        path: `/function/${name}`,
        headers: { "content-type": "text/plain", expect: "something-else" },
        body: Buffer.from("hello"),
      });
      expect(unknown.status).toBe(417);
      expect(unknown.headers["content-type"]).toBe("application/problem+json");
      expect(JSON.parse(unknown.body)).toMatchObject({ status: 417 });

      // The same instance served everything: nothing crashed, nothing was replaced.
      const after = await daemon.call("POST", `/function/${name}`, "xy", { "content-type": "text/plain" });
      expect(after.text).toBe(`${boot} 2`);
      const now = await view(name);
      expect(now.instances.map((i) => i.instanceId)).toEqual(instances);
      expect(now.lastExit).toBeNull();
    });

    test("nothing a client sends crashes an instance", async () => {
      const name = fn("headers");
      await deploy(
        name,
        "const boot = Math.random().toString(36).slice(2); module.exports = { main: (e) => ({ boot, headers: e.headers }) };",
      );
      const first = await daemon.call("GET", `/function/${name}`);
      expect(first.status).toBe(200);
      const { boot } = first.json<{ boot: string }>();
      // Hop-by-hop headers (and those Connection names) are for the gateway's connection, never the instance's.
      const hop = await rawRequest(daemon.url, {
        method: "POST",
        path: `/function/${name}`,
        headers: {
          "content-type": "text/plain",
          expect: "100-continue",
          "keep-alive": "timeout=5",
          te: "trailers",
          "x-private-hop": "1",
          "x-kept": "yes",
          Connection: "x-private-hop",
        },
        body: Buffer.from("hi"),
        waitForContinue: true,
      });
      expect(hop.status).toBe(200);
      const seen = JSON.parse(hop.body) as { boot: string; headers: Record<string, string> };
      expect(seen.boot).toBe(boot);
      expect(seen.headers["x-kept"]).toBe("yes");
      for (const h of ["expect", "keep-alive", "te", "x-private-hop"])
        expect(seen.headers[h]).toBeUndefined();

      // A client that gives up halfway through its upload: its request fails, the instance stays.
      const requestId = `abandoned-${run}`;
      await abandonUpload(daemon.url, {
        path: `/function/${name}`,
        headers: { "content-type": "text/plain", "x-request-id": requestId, expect: "100-continue" },
        declared: 100_000,
        sent: 1000,
      });
      await eventually(async () => {
        const page = await daemon.api("GET", `/api/v1/executions?function=${name}&limit=20`);
        const records = page.json<{ items: { requestId: string; outcome: string }[] }>().items;
        const record = records.find((r) => r.requestId === requestId);
        expect(record).toBeDefined();
        expect(record?.outcome).not.toBe("crashed");
      });
      const now = await view(name);
      expect(now.lastExit).toBeNull();
      expect((await daemon.call("GET", `/function/${name}`)).json<{ boot: string }>().boot).toBe(boot);
    });
  });
}
