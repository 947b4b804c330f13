/**
 * Git-sourced functions through a real daemon and real git: repositories the test creates, served on
 * loopback by `git daemon` (git://) and by `git http-backend` behind a tiny HTTP server that wants a token
 * (smart HTTP). A Kyma gitRepository Function is applied unchanged; a moved branch is a new revision on
 * `funcd sync`; a tag deploys its commit; a missing ref or an unreachable URL fails with git's message
 * while the old revision keeps serving; a private repository needs its token, which appears nowhere.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, removeDir, startDaemon } from "../helpers/daemon.js";

const GIT_ENV = {
  PATH: "/usr/bin:/bin",
  HOME: os.tmpdir(),
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
  GIT_AUTHOR_NAME: "t",
  GIT_AUTHOR_EMAIL: "t@example.invalid",
  GIT_COMMITTER_NAME: "t",
  GIT_COMMITTER_EMAIL: "t@example.invalid",
};
const git = (cwd: string, ...args: string[]) =>
  execFileSync("git", args, { cwd, env: GIT_ENV, encoding: "utf8" }).trim();

let root: string;
let daemon: Daemon;
let gitDaemon: ChildProcess;
let gitPort: number;
let httpServer: http.Server;
let httpPort: number;
const token = `tok-${randomBytes(16).toString("hex")}`;

/** Writes fn/handler.js answering `text` into the work tree and commits it. */
function commit(work: string, text: string): string {
  mkdirSync(path.join(work, "fn"), { recursive: true });
  writeFileSync(
    path.join(work, "fn", "handler.js"),
    `module.exports = { main: () => ${JSON.stringify(text)} };\n`,
  );
  git(work, "add", "-A");
  git(work, "commit", "-q", "-m", text);
  git(work, "push", "-q", "origin", "HEAD:main");
  return git(work, "rev-parse", "HEAD");
}

/** A bare repository `<root>/srv/<name>.git` and a work tree pushing to it. */
function makeRepo(name: string): string {
  const bare = path.join(root, "srv", `${name}.git`);
  git(root, "init", "-q", "--bare", "-b", "main", bare);
  const work = path.join(root, `work-${name}`);
  git(root, "init", "-q", "-b", "main", work);
  git(work, "remote", "add", "origin", bare);
  return work;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => {
        socket.end();
        resolve(true);
      });
      socket.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on ${port}`);
}

/** Smart HTTP: `git http-backend` as CGI, behind a check of the Basic credentials git sends. */
function startHttpBackend(): http.Server {
  const expected = `Basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}`;
  return http.createServer((req, res) => {
    if (req.headers.authorization !== expected) {
      res.writeHead(401, { "www-authenticate": 'Basic realm="git"' }).end("token required");
      return;
    }
    const url = new URL(req.url ?? "/", "http://x");
    const cgi = spawn("git", ["http-backend"], {
      env: {
        ...GIT_ENV,
        GIT_PROJECT_ROOT: path.join(root, "srv"),
        GIT_HTTP_EXPORT_ALL: "1",
        PATH_INFO: url.pathname,
        QUERY_STRING: url.search.slice(1),
        REQUEST_METHOD: req.method ?? "GET",
        CONTENT_TYPE: req.headers["content-type"] ?? "",
        REMOTE_ADDR: "127.0.0.1",
      },
    });
    req.pipe(cgi.stdin);
    let head = Buffer.alloc(0);
    let started = false;
    cgi.stdout.on("data", (chunk: Buffer) => {
      if (started) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      started = true;
      const headers: Record<string, string> = {};
      let status = 200;
      for (const line of head.subarray(0, end).toString().split("\r\n")) {
        const [key, ...rest] = line.split(":");
        const value = rest.join(":").trim();
        if (key?.toLowerCase() === "status") status = Number.parseInt(value, 10);
        else if (key) headers[key] = value;
      }
      res.writeHead(status, headers);
      res.write(head.subarray(end + 4));
    });
    cgi.stdout.on("end", () => res.end());
  });
}

let work: string;
let firstCommit: string;

beforeAll(async () => {
  root = mkdtempSync(path.join(os.tmpdir(), "funcd-git-it-"));
  mkdirSync(path.join(root, "srv"));
  work = makeRepo("public");
  firstCommit = commit(work, "v1");
  git(work, "tag", "v1");
  git(work, "push", "-q", "origin", "v1");
  const priv = makeRepo("private");
  commit(priv, "private v1");

  gitPort = await freePort();
  gitDaemon = spawn(
    "git",
    [
      "daemon",
      "--reuseaddr",
      "--export-all",
      "--listen=127.0.0.1",
      `--port=${gitPort}`,
      `--base-path=${path.join(root, "srv")}`,
      path.join(root, "srv"),
    ],
    { env: GIT_ENV, stdio: "ignore" },
  );
  await waitForPort(gitPort);
  httpServer = startHttpBackend();
  await new Promise<void>((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
  httpPort = (httpServer.address() as net.AddressInfo).port;
  daemon = await startDaemon({ env: { FUNCD_POOL_SIZE: "0" } });
});

afterAll(async () => {
  await daemon?.stop();
  gitDaemon?.kill();
  await new Promise((resolve) => (httpServer ? httpServer.close(resolve) : resolve(undefined)));
  if (daemon) removeDir(daemon.dataDir);
  if (root) removeDir(root);
});

const repoUrl = (name: string) => `git://127.0.0.1:${gitPort}/${name}.git`;
const answer = async (name: string) => (await daemon.call("GET", `/function/${name}`)).text;
const active = async (name: string) =>
  (await daemon.api("GET", `/api/v1/functions/${name}/revisions/active`)).json<{
    number: number;
    commit: string;
  }>();

describe("git-sourced functions", () => {
  it("a Kyma Function with a gitRepository is applied unchanged and records its commit", async () => {
    const file = path.join(root, "kyma-git.yaml");
    writeFileSync(
      file,
      `apiVersion: serverless.kyma-project.io/v1alpha2
kind: Function
metadata: { name: from-git }
spec:
  runtime: nodejs20
  source:
    gitRepository:
      url: ${repoUrl("public")}
      baseDir: /fn
      reference: main
`,
    );
    const res = await daemon.cli(["apply", "-f", file]);
    expect(res.code, `${res.stdout}\n${res.stderr}`).toBe(0);
    expect(await answer("from-git")).toBe("v1");
    expect((await active("from-git")).commit).toBe(firstCommit);
  });

  it("funcd sync deploys a moved branch as a new revision, and changes nothing when it did not move", async () => {
    const second = commit(work, "v2");
    const res = await daemon.cli(["sync", "from-git"]);
    expect(res.code, res.stderr).toBe(0);
    expect(await answer("from-git")).toBe("v2");
    const rev = await active("from-git");
    expect(rev).toMatchObject({ number: 2, commit: second });
    const again = await daemon.cli(["--json", "sync", "from-git"]);
    expect(JSON.parse(again.stdout)).toMatchObject({ changed: false, revision: { number: 2 } });
  });

  it("a tag deploys the commit it names", async () => {
    const res = await daemon.api("PUT", "/api/v1/functions/tagged", {
      runtime: "nodejs20",
      source: { git: { url: repoUrl("public"), ref: "v1", dir: "fn" } },
    });
    expect(res.status, res.text).toBe(201);
    expect(await answer("tagged")).toBe("v1");
    expect((await active("tagged")).commit).toBe(firstCommit);
  });

  it("a missing ref fails with git's message and the old revision keeps serving", async () => {
    const res = await daemon.api("PUT", "/api/v1/functions/tagged", {
      runtime: "nodejs20",
      source: { git: { url: repoUrl("public"), ref: "no-such-branch", dir: "fn" } },
    });
    expect(res.status).toBe(422);
    const problem = res.json<{ code: string; detail: string }>();
    expect(problem.code).toBe("GIT_FAILED");
    expect(problem.detail).toMatch(/no-such-branch/);
    expect(problem.detail).toContain("previous revision keeps serving");
    expect(await answer("tagged")).toBe("v1");
  });

  it("an unreachable URL fails the deploy with git's message", async () => {
    const res = await daemon.api("PUT", "/api/v1/functions/nowhere", {
      runtime: "nodejs20",
      source: { git: { url: `git://127.0.0.1:${await freePort()}/none.git` } },
    });
    expect(res.status).toBe(422);
    expect(res.json<{ code: string; detail: string }>().detail).toMatch(
      /Cannot fetch HEAD from git:\/\/127\.0\.0\.1/,
    );
  });

  it("a private repository over smart HTTP needs the token from a funcd secret, which appears nowhere", async () => {
    const spec = {
      runtime: "nodejs20",
      source: { git: { url: `http://127.0.0.1:${httpPort}/private.git`, dir: "fn", secret: "git-token" } },
    };
    const missing = await daemon.api("PUT", "/api/v1/functions/private-fn", spec);
    expect(missing.json<{ code: string }>().code).toBe("SECRET_NOT_FOUND");
    await daemon.api("PUT", "/api/v1/secrets/git-token", { value: "wrong" });
    const refused = await daemon.api("PUT", "/api/v1/functions/private-fn", spec);
    expect(refused.status).toBe(422);
    expect(refused.json<{ code: string }>().code).toBe("GIT_FAILED");
    await daemon.api("PUT", "/api/v1/secrets/git-token", { value: token });
    const ok = await daemon.api("PUT", "/api/v1/functions/private-fn", spec);
    expect(ok.status, ok.text).toBe(201);
    expect(await answer("private-fn")).toBe("private v1");
    const seen = [
      ok.text,
      (await daemon.api("GET", "/api/v1/functions/private-fn")).text,
      (await daemon.api("GET", "/api/v1/functions/private-fn/revisions/active")).text,
      (await daemon.api("GET", "/api/v1/functions/private-fn/logs?tail=1000")).text,
      daemon.output(),
      readFileSync(path.join(daemon.dataDir, "funcd.db")).toString("latin1"),
    ];
    for (const text of seen) expect(text).not.toContain(token);
  });
});
