/**
 * A runtime server (templates/<runtime>/server.*) as a child process on a unix socket with a clean
 * environment, as the process driver starts it, and requests to it as the gateway sends them. Shared by the
 * runtime conformance suite (runtime-conformance.ts) and each runtime's own tests.
 */
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Agent, type Dispatcher, request } from "undici";
import { afterAll, expect, onTestFinished } from "vitest";

/** The runtimes that answer docs/runtime-contract.md; a new one is added here and in its own test file. */
export type RuntimeName = "nodejs20" | "python3" | "go1.x" | "ruby";

/** How to start one runtime's server. */
export interface RuntimeCommand {
  runtime: RuntimeName;
  /** The interpreter (a real binary, as the driver resolves it), then the server file and any arguments. */
  command: readonly [string, ...string[]];
}

export interface ServerOptions {
  /** The function's folder (absolute); its base name is the function's name. */
  functionDir: string;
  /** FUNCD_HANDLER; `handler.main` when undefined. */
  handler?: string;
  /** FUNCD_TIMEOUT_MS; 5000 when undefined. */
  timeoutMs?: number;
  /** FUNCD_LISTEN; a fresh socket in a fresh temp dir when undefined. */
  listen?: string;
  /** FUNCD_HANDLER_STYLE; unset (auto) when undefined. */
  style?: string;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RuntimeServer {
  child: ChildProcess;
  /** Where it listens: a socket path, or host:port. */
  socketPath: string;
  /** Sends requests over the unix socket. */
  dispatcher: Agent;
  stdout(): string;
  stderr(): string;
  exit: Promise<Exit>;
  exited(): boolean;
}

/** Starts the server without waiting for it: for the cases that expect it to exit. */
export function spawnServer(target: RuntimeCommand, options: ServerOptions): RuntimeServer {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `funcd-rt-${target.runtime}-`));
  const listen = options.listen ?? path.join(dir, "sock");
  const [file, ...args] = target.command;
  const child = spawn(file, args, {
    cwd: dir,
    // Never the test runner's environment: the driver gives the runtime only its own variables.
    env: {
      PATH: "/usr/local/bin:/usr/bin:/bin",
      FUNCD_LISTEN: listen,
      FUNCD_FUNCTION_DIR: options.functionDir,
      FUNCD_HANDLER: options.handler ?? "handler.main",
      FUNCD_FUNCTION_NAME: path.basename(options.functionDir),
      FUNCD_REVISION: "rev-1",
      FUNCD_RUNTIME: target.runtime,
      FUNCD_TIMEOUT_MS: String(options.timeoutMs ?? 5_000),
      FUNCD_MEMORY_LIMIT_MB: "128",
      ...(options.style === undefined ? {} : { FUNCD_HANDLER_STYLE: options.style }),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  let exited = false;
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const exit = new Promise<Exit>((resolve) => {
    child.on("close", (code, signal) => {
      exited = true;
      resolve({ code, signal });
    });
  });
  const server: RuntimeServer = {
    child,
    socketPath: listen,
    dispatcher: new Agent({ connect: { socketPath: listen } }),
    stdout: () => stdout,
    stderr: () => stderr,
    exit,
    exited: () => exited,
  };
  tempDirs.set(server, dir);
  return server;
}

const tempDirs = new WeakMap<RuntimeServer, string>();

/** Kills the server if it still runs, and removes its temp dir. */
export async function stopServer(server: RuntimeServer): Promise<void> {
  if (!server.exited()) server.child.kill("SIGKILL");
  await server.exit;
  await server.dispatcher.destroy();
  const dir = tempDirs.get(server);
  if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
}

/** Starts the server and waits until /healthz answers; one that never gets there is stopped. */
export async function startServer(target: RuntimeCommand, options: ServerOptions): Promise<RuntimeServer> {
  const server = spawnServer(target, options);
  try {
    await waitReady(server);
  } catch (err) {
    await stopServer(server);
    throw err;
  }
  return server;
}

/** spawnServer for the running test: stopped when the test finishes. */
export function spawnForTest(target: RuntimeCommand, options: ServerOptions): RuntimeServer {
  const server = spawnServer(target, options);
  onTestFinished(() => stopServer(server));
  return server;
}

/** startServer for the running test: stopped when the test finishes. */
export async function startForTest(target: RuntimeCommand, options: ServerOptions): Promise<RuntimeServer> {
  const server = spawnForTest(target, options);
  await waitReady(server);
  return server;
}

/**
 * One server for the tests of the enclosing `describe`: started by the first test that asks for it (so
 * skipped tests start nothing), stopped after the last.
 */
export function sharedServer(target: RuntimeCommand, options: ServerOptions): () => Promise<RuntimeServer> {
  let started: Promise<RuntimeServer> | undefined;
  afterAll(async () => {
    await started?.then(stopServer, () => undefined);
  });
  return () => {
    started ??= startServer(target, options);
    return started;
  };
}

async function waitReady(server: RuntimeServer, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (server.exited()) throw new Error(`The runtime exited before it was ready:\n${server.stderr()}`);
    try {
      const res = await request("http://localhost/healthz", { dispatcher: server.dispatcher });
      await res.body.dump();
      if (res.statusCode === 200) return;
    } catch {
      // Not listening yet.
    }
    await sleep(10);
  }
  throw new Error(`The runtime was not ready within ${timeoutMs} ms:\n${server.stderr()}`);
}

let requestCounter = 0;

export interface InvokeInit {
  method?: Dispatcher.HttpMethod;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer;
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  text: string;
}

/** An invocation as the gateway sends it: marked with x-funcd-invoke and carrying a request id. */
export async function invoke(server: RuntimeServer, urlPath: string, init: InvokeInit = {}): Promise<Answer> {
  const options: Parameters<typeof request>[1] = {
    dispatcher: server.dispatcher,
    method: init.method ?? (init.body === undefined ? "GET" : "POST"),
    headers: { "x-funcd-invoke": "1", "x-request-id": `req-${++requestCounter}`, ...init.headers },
  };
  if (init.body !== undefined) options.body = init.body;
  const res = await request(`http://localhost${urlPath}`, options);
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body, text: body.toString("utf8") };
}

/** What an answer must be; only the parts given are compared. */
export interface Expected {
  status?: number;
  /** The content-type header. */
  type?: string;
  /** Other headers, by lower-case name. */
  headers?: Record<string, string | string[]>;
  text?: string;
  /** The body parsed as JSON. */
  json?: unknown;
  bytes?: number[];
}

/** Compares the parts of an answer that `expected` names, all at once so a failure shows each. */
export function expectAnswer(res: Answer, expected: Expected): void {
  const actual: Record<string, unknown> = {};
  if (expected.status !== undefined) actual.status = res.status;
  if (expected.type !== undefined) actual.type = String(res.headers["content-type"]);
  if (expected.headers !== undefined) {
    actual.headers = Object.fromEntries(
      Object.keys(expected.headers).map((name) => [name, res.headers[name]]),
    );
  }
  if (expected.text !== undefined) actual.text = res.text;
  if (expected.json !== undefined) actual.json = JSON.parse(res.text);
  if (expected.bytes !== undefined) actual.bytes = [...res.body];
  expect(actual).toEqual(expected);
}

/** A request without x-funcd-invoke, which the server's own /healthz and /metrics answer. */
export async function requestOwn(
  server: RuntimeServer,
  urlPath: string,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const res = await request(`http://localhost${urlPath}`, { dispatcher: server.dispatcher, headers });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body, text: body.toString("utf8") };
}

/** Polls a growing output until it contains `expected` (or the time is up), and returns it. */
export async function waitFor(read: () => string, expected: string, timeoutMs = 3_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (!read().includes(expected) && Date.now() < deadline) await sleep(10);
  return read();
}

/** A function folder holding the given files, removed when the test finishes. */
export function functionDirForTest(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "funcd-rt-function-"));
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
  onTestFinished(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const address = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  return address.port;
}

/** Reads one HTTP/1.1 response with a content-length from a raw socket. */
export function readResponse(socket: net.Socket): Promise<{ head: string; body: string }> {
  return new Promise((resolve, reject) => {
    let buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      const end = buffer.indexOf("\r\n\r\n");
      if (end === -1) return;
      const head = buffer.subarray(0, end).toString("latin1");
      const length = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? 0);
      if (buffer.length < end + 4 + length) return;
      socket.off("data", onData);
      socket.off("error", reject);
      resolve({ head, body: buffer.subarray(end + 4, end + 4 + length).toString("utf8") });
    };
    socket.on("data", onData);
    socket.on("error", reject);
  });
}
