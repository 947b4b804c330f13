import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { request } from "undici";

export const ROOT = path.resolve(import.meta.dirname, "..", "..");
const BIN = path.join(ROOT, "bin", "funcd.js");

/** A child environment without the machine's NODE_EXTRA_CA_CERTS and with nothing of the caller's FUNCD_*. */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (
      v === undefined ||
      k.startsWith("FUNCD_") ||
      k === "NODE_EXTRA_CA_CERTS" ||
      k.startsWith("VITEST") ||
      k === "NODE_OPTIONS"
    )
      continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

export interface Daemon {
  /** The invocation gateway (functions; also the API for Bearer clients). */
  url: string;
  /** The admin listener: console, API, docs. */
  adminUrl: string;
  dataDir: string;
  token: string;
  output(): string;
  /** Calls the control API with the token (on the admin listener). */
  api(method: string, apiPath: string, body?: unknown, headers?: Record<string, string>): Promise<Reply>;
  /** Calls an invocation path (no token). */
  call(
    method: string,
    urlPath: string,
    body?: string | Buffer,
    headers?: Record<string, string>,
  ): Promise<Reply>;
  /** Runs the funcd CLI against this daemon. */
  cli(
    args: string[],
    options?: { cwd?: string; input?: string },
  ): Promise<{ code: number; stdout: string; stderr: string }>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  process: ChildProcess;
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json<T = Record<string, unknown>>(): T;
}

export interface StartOptions {
  dataDir?: string;
  args?: string[];
  env?: Record<string, string>;
}

/** Starts `funcd server` as a real child process on a free loopback port with its own data dir. */
export async function startDaemon(options: StartOptions = {}): Promise<Daemon> {
  const dataDir = options.dataDir ?? mkdtempSync(path.join(os.tmpdir(), "funcd-it-"));
  const child = spawn(
    process.execPath,
    [BIN, "server", "--port", "0", "--data-dir", dataDir, ...(options.args ?? [])],
    {
      cwd: ROOT,
      env: cleanEnv({ FUNCD_LOG_LEVEL: "warn", ...options.env }),
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let output = "";
  child.stdout?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  const [url, adminUrl] = await new Promise<[string, string]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`daemon did not start in 30 s:\n${output}`)), 30_000);
    const onData = () => {
      const match = /^funcd (http:\/\/\S+)$/m.exec(output);
      const admin = /^ {2}admin +(http:\/\/\S+)/m.exec(output);
      const upDone = !(options.args ?? []).includes("--up") || /Deploying[\s\S]*\n\n/.test(output);
      if (match?.[1] && admin?.[1] && upDone) {
        clearTimeout(timer);
        resolve([match[1], admin[1]]);
      }
    };
    child.stdout?.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited with ${code}:\n${output}`));
    });
  });
  const token = readFileSync(path.join(dataDir, "token"), "utf8").trim();

  const daemon: Daemon = {
    url,
    adminUrl,
    dataDir,
    token,
    process: child,
    output: () => output,
    api: (method, apiPath, body, headers = {}) =>
      send(adminUrl + apiPath, method, body === undefined ? undefined : JSON.stringify(body), {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...headers,
      }),
    call: (method, urlPath, body, headers = {}) => send(url + urlPath, method, body, headers),
    cli: (args, opts = {}) => runCli(args, { FUNCD_URL: url, FUNCD_DATA_DIR: dataDir }, opts),
    stop: (signal = "SIGTERM") =>
      new Promise((resolve) => {
        // Already gone (exited, or killed by a signal: then exitCode stays null and signalCode is set).
        if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
        child.once("exit", (code) => resolve(code));
        child.kill(signal);
      }),
  };
  return daemon;
}

export async function send(
  url: string,
  method: string,
  body?: string | Buffer,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const res = await request(url, { method: method as "GET", body: body ?? null, headers });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    headers: res.headers,
    text,
    json: <T>() => JSON.parse(text) as T,
  };
}

export function runCli(
  args: string[],
  env: Record<string, string>,
  options: { cwd?: string; input?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd ?? ROOT,
      env: cleanEnv(env),
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.stdin.end(options.input ?? "");
    child.on("exit", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Processes whose command line mentions `needle` (e.g. a data dir): what a daemon may have leaked. */
export function processesMentioning(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
      if (cmdline.includes(needle)) pids.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return pids;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Files for a Node function as the API's `files` map. */
export function nodeFunction(body: string, file = "handler.js"): Record<string, string> {
  return { [file]: body };
}
