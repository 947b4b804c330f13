import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { gunzipSync } from "node:zlib";
import { beforeEach, describe, expect, it, onTestFinished, vi } from "vitest";
import { FuncdError } from "../shared/errors.js";
import { run } from "./program.js";
import { captureDeps, recordingServer, type SeenRequest } from "./testing.js";

// The `server` verb pulls in the whole daemon; these tests are about the client verbs.
vi.mock("./server.js", () => ({ registerServer: () => {} }));

let tmp: string;
beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), "funcd-cli-"));
  onTestFinished(() => rm(tmp, { recursive: true, force: true }));
});

/** The daemon stand-in for this file's tests, closed when the test ends. */
async function fakeDaemon(handle: (req: SeenRequest, res: ServerResponse) => void) {
  const server = await recordingServer(handle);
  onTestFinished(server.close);
  return { url: server.url, seen: server.seen };
}

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
};

/** Runs `funcd <args>` in-process against `url`, with a token in the env. */
async function funcd(args: string[], opts: { url?: string; stdin?: string } = {}) {
  const deps = captureDeps({
    env: {
      FUNCD_TOKEN: "t0k",
      FUNCD_DATA_DIR: join(tmp, "data"),
      ...(opts.url ? { FUNCD_URL: opts.url } : {}),
    },
    templatesDir: join(tmp, "templates"),
    ...(opts.stdin === undefined ? {} : { stdin: Readable.from([Buffer.from(opts.stdin)]) }),
  });
  const code = await run(["node", "funcd", ...args], deps);
  return { code, out: deps.out(), err: deps.err() };
}

describe("funcd new", () => {
  beforeEach(async () => {
    const scaffold = join(tmp, "templates", "nodejs20", "scaffold");
    await mkdir(join(scaffold, "lib"), { recursive: true });
    await writeFile(join(scaffold, "handler.js"), 'exports.main = () => "hello from {{name}}";\n');
    await writeFile(join(scaffold, "lib", "{{name}}.txt"), "{{name}} {{name}}\n");
    await writeFile(join(scaffold, "icon.bin"), Buffer.from([0xff, 0xfe, 0x7b, 0x7b]));
    await mkdir(join(tmp, "templates", "python3.11", "scaffold"), { recursive: true });
    await mkdir(join(tmp, "templates", "no-scaffold"), { recursive: true });
  });

  it("scaffolds <dir>/<name>/ with the name substituted and prints the next steps", async () => {
    const r = await funcd(["new", "greeter", "--dir", join(tmp, "work")]);
    expect(r.code).toBe(0);
    const dir = join(tmp, "work", "greeter");
    expect(await readFile(join(dir, "handler.js"), "utf8")).toBe(
      'exports.main = () => "hello from greeter";\n',
    );
    expect(await readFile(join(dir, "lib", "greeter.txt"), "utf8")).toBe("greeter greeter\n");
    expect(await readFile(join(dir, "icon.bin"))).toEqual(Buffer.from([0xff, 0xfe, 0x7b, 0x7b]));
    expect(r.out).toContain("Created ");
    expect(r.out).toMatch(/funcd deploy .*greeter/);
  });

  it("refuses to overwrite an existing folder and leaves it untouched", async () => {
    const dir = join(tmp, "work", "greeter");
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "handler.js"), "mine");
    const r = await funcd(["new", "greeter", "--dir", join(tmp, "work")]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^Error: Invalid usage: .*greeter already exists; funcd new does not overwrite/);
    expect(await readdir(dir)).toEqual(["handler.js"]);
    expect(await readFile(join(dir, "handler.js"), "utf8")).toBe("mine");
  });

  it("lists the available runtimes for an unknown one", async () => {
    const r = await funcd(["new", "x", "--runtime", "cobol", "--dir", tmp]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('Unknown runtime "cobol"');
    expect(r.err).toContain("Available runtimes: nodejs20, python3.11");
  });

  it("refuses a name that is not a function name", async () => {
    const r = await funcd(["new", "Bad_Name", "--dir", tmp]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('"Bad_Name" is not a function name');
  });
});

describe("verbs against a daemon", () => {
  it("list prints a table, or the API's JSON with --json", async () => {
    const { url, seen } = await fakeDaemon((_req, res) =>
      json(res, 200, {
        items: [
          {
            name: "sum",
            runtime: "nodejs20",
            status: "ready",
            activeRevision: { id: "abc", number: 2 },
            routes: ["/sum"],
            url: "/function/sum",
            instances: [],
          },
        ],
      }),
    );
    const r = await funcd(["list"], { url });
    expect(r.code).toBe(0);
    expect(r.out).toBe(
      "NAME  RUNTIME   STATUS  REVISION  INSTANCES  ROUTES\nsum   nodejs20  ready   #2        0          /function/sum, /sum\n",
    );
    expect(seen[0]?.headers.authorization).toBe("Bearer t0k");
    const j = await funcd(["ls", "--json"], { url });
    expect(JSON.parse(j.out).items[0].name).toBe("sum");
  });

  it("deploy packs the folder, merges function.yaml with flags, and prints the URL", async () => {
    const fn = join(tmp, "adder");
    await mkdir(join(fn, "node_modules"), { recursive: true });
    await writeFile(join(fn, "handler.js"), "exports.main = () => 3;\n");
    await writeFile(join(fn, "node_modules", "big.js"), "x");
    await writeFile(join(fn, "function.yaml"), "runtime: nodejs20\nenv: {A: '1'}\nroutes: [/add]\n");
    const { url, seen } = await fakeDaemon((_req, res) => {
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.write('{"type":"progress","message":"installing dependencies"}\n');
      res.end(
        `${JSON.stringify({
          type: "result",
          function: { name: "adder", url: "/function/adder", routes: ["/add"] },
          revision: { id: "0123456789abcdef", number: 4, status: "ready" },
          changed: true,
        })}\n`,
      );
    });
    const r = await funcd(["deploy", fn, "--env", "B=2", "--timeout", "10s", "--min", "1"], { url });
    expect(r.err).toContain("adder: installing dependencies");
    expect(r.code).toBe(0);
    expect(r.out).toBe(
      `Deployed adder revision #4 (0123456789ab) → ${url}/function/adder (also ${url}/add)\n`,
    );
    const body = JSON.parse(seen[0]?.body ?? "{}");
    expect(seen[0]?.url).toBe("/api/v1/functions/adder");
    expect(body).toMatchObject({
      name: "adder",
      runtime: "nodejs20",
      env: { A: "1", B: "2" },
      routes: ["/add"],
      timeout: "10s",
      scale: { min: 1 },
    });
    const tarText = gunzipSync(Buffer.from(body.archive, "base64")).toString("latin1");
    expect(tarText).toContain("handler.js");
    expect(tarText).not.toContain("node_modules");
  });

  it("deploy says unchanged when nothing changed, and fails with the problem's logs", async () => {
    const fn = join(tmp, "echo");
    await mkdir(fn);
    await writeFile(join(fn, "handler.js"), "x");
    let fail = false;
    const { url } = await fakeDaemon((_req, res) => {
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      if (fail) {
        const problem = new FuncdError("DEPLOY_FAILED", "npm install failed", {
          extra: { logs: ["npm ERR! 404 left-pod"] },
        });
        res.end(`${JSON.stringify({ type: "error", problem: problem.toProblem() })}\n`);
      } else {
        res.end(
          `${JSON.stringify({ type: "result", function: { name: "echo" }, revision: { id: "r", number: 1 }, changed: false })}\n`,
        );
      }
    });
    const same = await funcd(["deploy", fn], { url });
    expect(same.out).toBe("echo unchanged (revision #1)\n");
    fail = true;
    const bad = await funcd(["deploy", fn], { url });
    expect(bad.code).toBe(1);
    expect(bad.err).toContain(
      "Error: Deploy failed: npm install failed\n  logs:\n    npm ERR! 404 left-pod\n",
    );
  });

  it("up deploys every function, keeps going after a failure, and exits 1", async () => {
    for (const name of ["one", "two"]) {
      await mkdir(join(tmp, "fns", name), { recursive: true });
      await writeFile(join(tmp, "fns", name, "handler.js"), name);
    }
    await writeFile(
      join(tmp, "stack.yaml"),
      "functions:\n  one:\n    path: fns/one\n  two:\n    path: fns/two\n    memory: 1\n",
    );
    const { url, seen } = await fakeDaemon((req, res) => {
      if (req.url.endsWith("/two")) {
        res.writeHead(400, { "content-type": "application/problem+json" });
        res.end(
          JSON.stringify(
            new FuncdError("VALIDATION_FAILED", "1 problem", {
              extra: { errors: [{ path: "memory", message: "too small" }] },
            }).toProblem(),
          ),
        );
        return;
      }
      json(res, 201, {
        function: { name: "one", url: "/function/one" },
        revision: { id: "r1", number: 1 },
        changed: true,
      });
    });
    const r = await funcd(["up", "-f", join(tmp, "stack.yaml")], { url });
    expect(r.code).toBe(1);
    expect(seen.map((s) => s.url)).toEqual(["/api/v1/functions/one", "/api/v1/functions/two"]);
    expect(r.err).toContain("  - memory: too small");
    expect(r.out).toContain(`one   deployed  #1        ${url}/function/one`);
    expect(r.out).toContain("two   failed    -         1 problem");
    expect(r.err).toContain("1 of 2 functions failed to deploy: two");
  });

  it("invoke posts JSON data, prints the raw body, and exits 1 on an error status", async () => {
    const { url, seen } = await fakeDaemon((req, res) => {
      if (req.url.includes("missing")) {
        res.writeHead(404, { "content-type": "application/problem+json" });
        res.end(
          JSON.stringify(new FuncdError("FUNCTION_NOT_FOUND", 'No function named "missing"').toProblem()),
        );
        return;
      }
      res.writeHead(req.body === "boom" ? 418 : 200, { "content-type": "text/plain" });
      res.end(`got ${req.body}`);
    });
    const ok = await funcd(["invoke", "sum", "--data", '{"a":1}', "--path", "/x?y=1", "-H", "X-Trace: 7"], {
      url,
    });
    expect(ok.code).toBe(0);
    expect(ok.out).toBe('got {"a":1}');
    expect(seen[0]).toMatchObject({ method: "POST", url: "/function/sum/x?y=1" });
    expect(seen[0]?.headers["content-type"]).toBe("application/json");
    expect(seen[0]?.headers["x-trace"]).toBe("7");
    expect(seen[0]?.headers.authorization).toBeUndefined();

    const text = await funcd(["invoke", "sum", "--data", "-", "-v"], { url, stdin: "boom" });
    expect(seen[1]?.headers["content-type"]).toMatch(/^text\/plain/);
    expect(text.out).toBe("got boom");
    expect(text.err).toContain("< HTTP 418");
    expect(text.err).toContain("Error: sum answered HTTP 418");
    expect(text.code).toBe(1);

    const missing = await funcd(["invoke", "missing"], { url });
    expect(seen[2]?.method).toBe("GET");
    expect(missing.code).toBe(1);
    expect(missing.err).toBe('Error: Function not found: No function named "missing"\n');
  });

  it("logs prints one line per log record", async () => {
    const { url, seen } = await fakeDaemon((_req, res) => {
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.write(
        `${JSON.stringify({ time: "2025-01-01T00:00:00Z", instanceId: "sum-1", stream: "stdout", requestId: "r9", text: "hi" })}\n`,
      );
      res.end(
        `${JSON.stringify({ time: "2025-01-01T00:00:01Z", instanceId: "sum-1", stream: "stderr", requestId: null, text: "bad" })}\n`,
      );
    });
    const r = await funcd(["logs", "sum", "--tail", "5"], { url });
    expect(r.code).toBe(0);
    expect(seen[0]?.url).toBe("/api/v1/functions/sum/logs?tail=5&follow=false");
    const lines = r.out.trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/ sum-1 \[r9\] hi$/);
    expect(lines[1]).toMatch(/ sum-1 \(stderr\) bad$/);
  });

  it("delete, rollback and scale call their endpoints", async () => {
    const { url, seen } = await fakeDaemon((req, res) => {
      if (req.method === "DELETE") {
        res.writeHead(204);
        res.end();
      } else if (req.url.endsWith("/rollback"))
        json(res, 200, { function: { name: "sum" }, revision: { id: "abc", number: 1 } });
      else json(res, 200, { name: "sum", scale: { min: 1, max: 3, idleTimeoutMs: 30_000 } });
    });
    expect((await funcd(["rm", "sum"], { url })).out).toBe("Deleted sum\n");
    expect((await funcd(["rollback", "sum", "--to", "#1"], { url })).out).toMatch(
      /^Rolled back sum to revision #1/,
    );
    expect(JSON.parse(seen[1]?.body ?? "")).toEqual({ revision: "1" });
    expect((await funcd(["scale", "sum", "--min", "1", "--idle-timeout", "30s"], { url })).out).toBe(
      "Scaled sum: min 1, max 3, idle timeout 30s\n",
    );
    expect(seen[2]).toMatchObject({ method: "PATCH", url: "/api/v1/functions/sum/scale" });
    expect(JSON.parse(seen[2]?.body ?? "")).toEqual({ min: 1, idleTimeout: "30s" });
  });
});

describe("usage and connection errors", () => {
  it("exit 2 for bad flags and values", async () => {
    const unknown = await funcd(["list", "--nope"]);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toContain("unknown option '--nope'");
    const bad = await funcd(["deploy", ".", "--memory", "lots"]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("expected a whole number");
    const nothing = await funcd(["scale", "sum"]);
    expect(nothing.code).toBe(2);
    expect(nothing.err).toContain("Nothing to change");
  });

  it("exit 1 with how to start the daemon when nobody listens", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const r = await funcd(["list", "--url", `http://127.0.0.1:${port}`]);
    expect(r.code).toBe(1);
    expect(r.err).toBe(
      `Error: Cannot reach the funcd daemon at http://127.0.0.1:${port} (port ${port}) — is it running? Start it with \`npm start\` or \`funcd server\`; if it listens elsewhere, pass --url URL or set FUNCD_URL\n`,
    );
  });

  it("--version prints the package version and exits 0", async () => {
    const pkg = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as {
      version: string;
    };
    const r = await funcd(["--version"]);
    expect(r.code).toBe(0);
    expect(r.out.trim()).toBe(pkg.version);
  });
});
