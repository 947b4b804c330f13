import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { FuncdError } from "../shared/errors.js";
import { ApiClient, resolveDataDir, resolveToken } from "./client.js";
import type { CliError } from "./errors.js";
import { recordingServer, type SeenRequest } from "./testing.js";

/** A real HTTP server on 127.0.0.1:0 that records requests; closed when the test ends. */
/** The daemon stand-in for this file's tests, closed when the test ends. */
async function daemon(handle: (req: SeenRequest, res: ServerResponse) => void) {
  const server = await recordingServer(handle);
  onTestFinished(server.close);
  return { url: server.url, seen: server.seen };
}

const sendProblem = (res: ServerResponse, error: FuncdError) => {
  res.writeHead(error.status, { "content-type": "application/problem+json" });
  res.end(JSON.stringify(error.toProblem()));
};

describe("ApiClient", () => {
  it("sends the token as a Bearer header and parses JSON", async () => {
    const { url, seen } = await daemon((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ items: [{ name: "sum" }] }));
    });
    const client = new ApiClient({ baseUrl: `${url}/`, token: { token: "s3cret", from: "FUNCD_TOKEN" } });
    expect(await client.call("GET", "/api/v1/functions")).toEqual({ items: [{ name: "sum" }] });
    expect(seen[0]?.headers.authorization).toBe("Bearer s3cret");
    expect(seen[0]?.url).toBe("/api/v1/functions");
  });

  it("sends JSON bodies and returns undefined for 204", async () => {
    const { url, seen } = await daemon((_req, res) => {
      res.writeHead(204);
      res.end();
    });
    const client = new ApiClient({ baseUrl: url });
    expect(await client.call("POST", "/api/v1/functions/sum/rollback", { revision: "2" })).toBeUndefined();
    expect(seen[0]?.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(seen[0]?.body ?? "")).toEqual({ revision: "2" });
    expect(seen[0]?.headers.authorization).toBeUndefined();
  });

  it("maps a problem+json answer to a CliError with code, title, detail, status and extras", async () => {
    const { url } = await daemon((_req, res) =>
      sendProblem(
        res,
        new FuncdError("VALIDATION_FAILED", "1 problem", {
          extra: { errors: [{ path: "memory", message: "too small" }] },
        }),
      ),
    );
    const error = (await new ApiClient({ baseUrl: url })
      .call("GET", "/x")
      .catch((e: unknown) => e)) as CliError;
    expect(error).toMatchObject({
      code: "VALIDATION_FAILED",
      title: "The request does not match the schema",
      detail: "1 problem",
      status: 400,
      extra: { errors: [{ path: "memory", message: "too small" }] },
    });
  });

  it("adds a hint about the token to a 401", async () => {
    const { url } = await daemon((_req, res) =>
      sendProblem(res, new FuncdError("UNAUTHORIZED", "Bearer token missing")),
    );
    const client = new ApiClient({ baseUrl: url, token: { token: undefined, from: "/data/token" } });
    const error = (await client.call("GET", "/api/v1/functions").catch((e: unknown) => e)) as CliError;
    expect(error.code).toBe("UNAUTHORIZED");
    expect(error.hint).toMatch(/FUNCD_TOKEN.*\/data\/token/);
  });

  it("turns a refused connection into DAEMON_UNREACHABLE with how to start the daemon", async () => {
    const { url } = await daemon(() => {});
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    expect(url).not.toBe(`http://127.0.0.1:${port}`);
    const error = (await new ApiClient({ baseUrl: `http://127.0.0.1:${port}` })
      .call("GET", "/api/v1/functions")
      .catch((e: unknown) => e)) as CliError;
    expect(error.code).toBe("DAEMON_UNREACHABLE");
    expect(error.exitCode).toBe(1);
    expect(error.detail).toBe(
      `Cannot reach the funcd daemon at http://127.0.0.1:${port} (port ${port}) — is it running? Start it with \`npm start\` or \`funcd server\`; if it listens elsewhere, pass --url URL or set FUNCD_URL`,
    );
  });

  it("deploy streams NDJSON progress and returns the result line", async () => {
    const { url, seen } = await daemon((_req, res) => {
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.write('{"type":"progress","message":"installing"}\n');
      res.write('{"type":"progress","mess');
      res.write('age":"starting"}\n\n');
      res.end(
        `${JSON.stringify({ type: "result", function: { name: "sum" }, revision: { id: "r1", number: 1 }, changed: true })}\n`,
      );
    });
    const progress: string[] = [];
    const result = await new ApiClient({ baseUrl: url }).deploy("sum", { archive: "x" }, (m) =>
      progress.push(m),
    );
    expect(progress).toEqual(["installing", "starting"]);
    expect(result).toEqual({ function: { name: "sum" }, revision: { id: "r1", number: 1 }, changed: true });
    expect(seen[0]?.method).toBe("PUT");
    expect(seen[0]?.url).toBe("/api/v1/functions/sum");
    expect(seen[0]?.headers.accept).toContain("application/x-ndjson");
  });

  it("deploy throws the problem of a final error line", async () => {
    const { url } = await daemon((_req, res) => {
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.write('{"type":"progress","message":"installing"}\n');
      const problem = new FuncdError("DEPLOY_FAILED", "npm install failed", {
        extra: { logs: ["npm ERR! 404"] },
      });
      res.end(`${JSON.stringify({ type: "error", problem: problem.toProblem() })}\n`);
    });
    const error = (await new ApiClient({ baseUrl: url })
      .deploy("sum", {}, () => {})
      .catch((e: unknown) => e)) as CliError;
    expect(error).toMatchObject({
      code: "DEPLOY_FAILED",
      detail: "npm install failed",
      extra: { logs: ["npm ERR! 404"] },
    });
  });

  it("deploy understands a plain JSON answer too", async () => {
    const { url } = await daemon((_req, res) => {
      res.writeHead(201, { "content-type": "application/json" });
      res.end(JSON.stringify({ function: { name: "a" }, revision: { id: "r" }, changed: false }));
    });
    expect((await new ApiClient({ baseUrl: url }).deploy("a", {}, () => {})).changed).toBe(false);
  });

  it("invoke never sends the API token to a function", async () => {
    const { url, seen } = await daemon((_req, res) => {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("nope");
    });
    const client = new ApiClient({ baseUrl: url, token: { token: "s3cret", from: "FUNCD_TOKEN" } });
    const res = await client.invoke("/function/a", { method: "GET", headers: {} });
    expect(res.status).toBe(404);
    expect(res.body.toString()).toBe("nope");
    expect(seen[0]?.headers.authorization).toBeUndefined();
  });
});

describe("token and data dir", () => {
  it("resolve from flag, FUNCD_DATA_DIR, XDG_DATA_HOME, then home", () => {
    expect(resolveDataDir("/flag", { FUNCD_DATA_DIR: "/env" })).toBe("/flag");
    expect(resolveDataDir(undefined, { FUNCD_DATA_DIR: "/env", XDG_DATA_HOME: "/xdg" })).toBe("/env");
    expect(resolveDataDir(undefined, { XDG_DATA_HOME: "/xdg" })).toBe("/xdg/funcd");
    expect(resolveDataDir(undefined, {}, "/home/u", 1000)).toBe("/home/u/.local/share/funcd");
    expect(resolveDataDir(undefined, {}, "/root", 0)).toBe("/var/lib/funcd");
  });

  it("prefers FUNCD_TOKEN, else reads <dataDir>/token", async () => {
    const dir = await mkdtemp(join(tmpdir(), "funcd-token-"));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    expect(resolveToken({}, dir)).toEqual({ token: undefined, from: join(dir, "token") });
    await writeFile(join(dir, "token"), "from-file\n");
    expect(resolveToken({}, dir)).toEqual({ token: "from-file", from: join(dir, "token") });
    expect(resolveToken({ FUNCD_TOKEN: "env" }, dir)).toEqual({ token: "env", from: "FUNCD_TOKEN" });
  });
});
