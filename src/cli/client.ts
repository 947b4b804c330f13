import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { request } from "undici";
import { defaultDataDir } from "../config/data-dir.js";
import { CliError, cliErrorFromProblem, usageError } from "./errors.js";
import type { FunctionView, RevisionView } from "./views.js";

/** Where the CLI finds the daemon when neither `--url` nor `FUNCD_URL` says. */
export const DEFAULT_URL = "http://127.0.0.1:8080";

type Env = Record<string, string | undefined>;

/** The port a URL reaches, its scheme's default when it names none. */
function portOf(url: string): string {
  const parsed = new URL(url);
  return parsed.port || (parsed.protocol === "https:" ? "443" : "80");
}

/** `--url`, then `FUNCD_URL`, then the default; without a trailing slash. */
export function resolveBaseUrl(flag: string | undefined, env: Env): string {
  const raw = flag ?? (env.FUNCD_URL || undefined) ?? DEFAULT_URL;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw usageError(`"${raw}" is not a URL (write e.g. ${DEFAULT_URL})`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw usageError(`"${raw}" is not an http(s) URL (write e.g. ${DEFAULT_URL})`);
  }
  return url.href.replace(/\/+$/, "");
}

/** `--data-dir`, `FUNCD_DATA_DIR`, else the daemon's default (`defaultDataDir`) — as the daemon decides it. */
export function resolveDataDir(
  flag: string | undefined,
  env: Env,
  home: string = homedir(),
  uid: number | undefined = process.getuid?.(),
): string {
  if (flag) return flag;
  if (env.FUNCD_DATA_DIR) return env.FUNCD_DATA_DIR;
  return defaultDataDir(env, home, uid);
}

export interface TokenSource {
  token: string | undefined;
  /** Where it came from (or would have), for the hint on a 401. */
  from: string;
}

/** `FUNCD_TOKEN`, else the file `<dataDir>/token` the daemon writes on first start. */
export function resolveToken(env: Env, dataDir: string): TokenSource {
  if (env.FUNCD_TOKEN) return { token: env.FUNCD_TOKEN, from: "FUNCD_TOKEN" };
  const file = join(dataDir, "token");
  try {
    const token = readFileSync(file, "utf8").trim();
    return { token: token || undefined, from: file };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { token: undefined, from: file };
    throw usageError(`Cannot read the API token from ${file}: ${(err as Error).message}`);
  }
}

export interface ClientOptions {
  baseUrl: string;
  token?: TokenSource | undefined;
}

/** What `PUT /api/v1/functions/{name}` answers (also the `result` line of its NDJSON stream). */
export interface DeployResult {
  function: FunctionView;
  revision: RevisionView;
  changed: boolean;
}

export interface InvokeResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

const CONNECT_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
]);

const NDJSON = "application/x-ndjson";

interface SendOptions {
  body?: string | Buffer | undefined;
  headers?: Record<string, string>;
  signal?: AbortSignal | undefined;
  /** Streams (logs -f, deploy progress) may be quiet for a long time. */
  streaming?: boolean;
  /** Invocations are public: never send the admin token to a function. */
  anonymous?: boolean;
}

/**
 * The daemon's control API over HTTP. Every failure becomes a `CliError`: a
 * problem+json answer keeps its registry code, a dead socket becomes
 * DAEMON_UNREACHABLE with a message that says how to start the daemon.
 */
export class ApiClient {
  readonly baseUrl: string;
  private readonly token: TokenSource | undefined;

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.token = options.token;
  }

  /** A JSON call; `undefined` for 204. */
  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.send(method, path, {
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      headers: {
        accept: "application/json",
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
    });
    if (res.statusCode === 204) {
      await res.body.dump();
      return undefined as T;
    }
    return (await readJson(res, this.baseUrl)) as T;
  }

  /** Each line of an NDJSON answer, parsed, as it arrives. */
  async *lines(method: string, path: string, signal?: AbortSignal): AsyncGenerator<unknown> {
    const res = await this.send(method, path, { headers: { accept: NDJSON }, signal, streaming: true });
    yield* readLines(res.body, this.baseUrl);
  }

  /**
   * Deploys with NDJSON progress: `onProgress` gets each `progress` message, the
   * `result` line is returned and an `error` line is thrown. A daemon that
   * answers plain JSON instead is understood too.
   */
  deploy(name: string, body: unknown, onProgress: (message: string) => void): Promise<DeployResult> {
    return this.progressCall<DeployResult>(
      "PUT",
      `/api/v1/functions/${encodeURIComponent(name)}`,
      body,
      onProgress,
      { title: "Deploy outcome unknown", hint: `Check with \`funcd describe ${name}\`.` },
    );
  }

  /**
   * A call whose answer streams NDJSON progress (deploys, builds): `onProgress` gets each `progress`
   * message, the `result` line is returned and an `error` line is thrown. Plain JSON answers are read too.
   */
  async progressCall<T>(
    method: string,
    path: string,
    body: unknown,
    onProgress: (message: string) => void,
    unknownOutcome: { title: string; hint: string },
  ): Promise<T> {
    const res = await this.send(method, path, {
      body: JSON.stringify(body),
      headers: { accept: `${NDJSON}, application/json;q=0.5`, "content-type": "application/json" },
      streaming: true,
    });
    if (!String(res.headers["content-type"] ?? "").includes(NDJSON)) {
      return (await readJson(res, this.baseUrl)) as T;
    }
    let last: unknown;
    for await (const line of readLines(res.body, this.baseUrl)) {
      last = line;
      const msg = line as { type?: unknown; message?: unknown; problem?: unknown };
      if (msg.type === "progress" && typeof msg.message === "string") onProgress(msg.message);
      else if (msg.type === "result") {
        const { type: _type, ...result } = line as Record<string, unknown>;
        return result as unknown as T;
      } else if (msg.type === "error") throw cliErrorFromProblem(msg.problem, 500);
    }
    throw new CliError(
      "INTERNAL",
      `The ${method} ${path} stream ended without a result (last line: ${JSON.stringify(last)})`,
      unknownOutcome,
    );
  }

  /** Calls a function through the gateway; answers are returned as they are, whatever the status. */
  async invoke(
    path: string,
    options: { method: string; headers: Record<string, string>; body?: Buffer | undefined },
  ): Promise<InvokeResponse> {
    const res = await this.send(options.method, path, {
      headers: options.headers,
      body: options.body,
      anonymous: true,
      streaming: true,
    });
    const body = Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, headers: res.headers, body };
  }

  private async send(method: string, path: string, options: SendOptions) {
    const url = this.baseUrl + path;
    const headers: Record<string, string> = { ...options.headers };
    if (!options.anonymous && this.token?.token) headers.authorization = `Bearer ${this.token.token}`;
    let res: Awaited<ReturnType<typeof request>>;
    try {
      res = await request(url, {
        method: method as "GET",
        headers,
        body: options.body ?? null,
        signal: options.signal ?? null,
        // A deploy installs dependencies and a followed log may be quiet for hours.
        ...(options.streaming ? { bodyTimeout: 0, headersTimeout: 15 * 60_000 } : {}),
      });
    } catch (err) {
      if (options.signal?.aborted) throw err;
      throw this.connectionError(err);
    }
    if (res.statusCode >= 400 && !options.anonymous) {
      const error = await readProblem(res);
      if (error.code === "UNAUTHORIZED") throw error.withHint(this.tokenHint());
      throw error;
    }
    return res;
  }

  private tokenHint(): string {
    if (!this.token) return "Set FUNCD_TOKEN to the daemon's API token.";
    if (this.token.from === "FUNCD_TOKEN") return "FUNCD_TOKEN does not hold this daemon's API token.";
    return this.token.token
      ? `The token in ${this.token.from} is not this daemon's; set FUNCD_TOKEN or --data-dir to the daemon's.`
      : `No token found: set FUNCD_TOKEN, or --data-dir to the daemon's data folder (looked for ${this.token.from}).`;
  }

  private connectionError(err: unknown): CliError {
    const code = errnoOf(err);
    const message = (err as Error)?.message ?? String(err);
    if (code !== undefined && CONNECT_CODES.has(code)) {
      const why = code === "ECONNREFUSED" ? "" : ` (${message})`;
      return new CliError(
        "DAEMON_UNREACHABLE",
        `Cannot reach the funcd daemon at ${this.baseUrl} (port ${portOf(this.baseUrl)})${why} — is it running? Start it with \`npm start\` or \`funcd server\`; if it listens elsewhere, pass --url URL or set FUNCD_URL`,
        { bare: true, cause: err },
      );
    }
    return new CliError(
      "DAEMON_UNREACHABLE",
      `Lost the connection to the daemon at ${this.baseUrl}: ${message}`,
      {
        bare: true,
        cause: err,
      },
    );
  }
}

/** The errno-style code of a network error, looking through `cause` and AggregateError. */
function errnoOf(err: unknown): string | undefined {
  for (let e = err, depth = 0; e && depth < 5; depth++) {
    const { code, errors, cause } = e as { code?: unknown; errors?: unknown; cause?: unknown };
    if (typeof code === "string") return code;
    if (Array.isArray(errors) && errors.length > 0) e = errors[0];
    else e = cause;
  }
  return undefined;
}

type Response = Awaited<ReturnType<typeof request>>;

async function readProblem(res: Response): Promise<CliError> {
  const text = await res.body.text();
  let parsed: unknown = text;
  if (String(res.headers["content-type"] ?? "").includes("json")) {
    try {
      parsed = JSON.parse(text);
    } catch {
      // Not JSON after all: keep the text as the detail.
    }
  }
  return cliErrorFromProblem(parsed, res.statusCode);
}

async function readJson(res: Response, baseUrl: string): Promise<unknown> {
  const text = await res.body.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new CliError(
      "INTERNAL",
      `${baseUrl} answered HTTP ${res.statusCode} with something that is not JSON`,
      {
        title: "Unexpected answer from the daemon",
        extra: { logs: [text.slice(0, 300)] },
        hint: "Is --url / FUNCD_URL pointing at a funcd daemon?",
      },
    );
  }
}

/** Splits a byte stream into NDJSON values; a line that is not JSON is an error, not silently skipped. */
export async function* readLines(
  body: AsyncIterable<Uint8Array | string>,
  source: string,
): AsyncGenerator<unknown> {
  const decoder = new TextDecoder();
  let buffer = "";
  const parse = (line: string): unknown => {
    try {
      return JSON.parse(line);
    } catch {
      throw new CliError("INTERNAL", `${source} sent a line that is not JSON: ${line.slice(0, 200)}`, {
        title: "Unexpected answer from the daemon",
      });
    }
  };
  for await (const chunk of body) {
    buffer += typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true });
    let newline = buffer.indexOf("\n");
    while (newline >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (line) yield parse(line);
      newline = buffer.indexOf("\n");
    }
  }
  buffer += decoder.decode();
  if (buffer.trim()) yield parse(buffer.trim());
}
