import { isUtf8 } from "node:buffer";
import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import { header } from "../args.js";
import { type CliDeps, contextFor } from "../context.js";
import { CliError, cliErrorFromProblem, usageError } from "../errors.js";

interface InvokeOptions {
  data?: string;
  method?: string;
  header?: Array<[string, string]>;
  path?: string;
  verbose?: boolean;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream)
    chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : Buffer.from(chunk));
  return Buffer.concat(chunks);
}

/** `--data`: literal text, `@file`, or `-` for stdin. */
export async function readData(data: string, stdin: NodeJS.ReadableStream): Promise<Buffer> {
  if (data === "-") return readAll(stdin);
  if (data.startsWith("@")) {
    const file = data.slice(1);
    try {
      return await readFile(file);
    } catch (err) {
      throw usageError(`Cannot read --data file ${file}: ${(err as Error).message}`);
    }
  }
  return Buffer.from(data);
}

/** JSON when the body parses as JSON, text when it is UTF-8, bytes otherwise. */
export function contentTypeFor(body: Buffer): string {
  if (!isUtf8(body)) return "application/octet-stream";
  try {
    JSON.parse(body.toString("utf8"));
    return "application/json";
  } catch {
    return "text/plain; charset=utf-8";
  }
}

/** `/function/<name>` plus the sub-path (and query) the user gave. */
export function invocationPath(name: string, sub: string | undefined): string {
  const base = `/function/${encodeURIComponent(name)}`;
  if (!sub || sub === "/") return base;
  return sub.startsWith("/") || sub.startsWith("?") ? base + sub : `${base}/${sub}`;
}

export function register(program: Command, deps: CliDeps): void {
  program
    .command("invoke")
    .description("call a function through the gateway and print its answer")
    .argument("<name>", "function name")
    .option("-d, --data <data>", "request body: JSON or text, @file to read a file, - for stdin")
    .option("-X, --method <method>", "HTTP method (default POST with --data, else GET)")
    .option("-H, --header <name:value>", "request header (repeatable)", header)
    .option("-p, --path <path>", "sub-path and query after /function/<name>, e.g. /items?limit=2")
    .option("-v, --verbose", "print the status and headers to stderr")
    .addHelpText(
      "after",
      `
Examples:
  $ funcd invoke sum --data '{"a": 1, "b": 2}'
  $ funcd invoke hello --path /greet?name=you
  $ echo hi | funcd invoke echo --data - -H "X-Trace: 1" -v`,
    )
    .action(async (name: string, options: InvokeOptions, command: Command) => {
      const ctx = contextFor(command, deps);
      const { out } = ctx;
      const body = options.data === undefined ? undefined : await readData(options.data, deps.stdin);
      const method = (options.method ?? (body === undefined ? "GET" : "POST")).toUpperCase();
      const headers: Record<string, string> = {};
      for (const [key, value] of options.header ?? []) headers[key.toLowerCase()] = value;
      if (body !== undefined && headers["content-type"] === undefined)
        headers["content-type"] = contentTypeFor(body);
      const path = invocationPath(name, options.path);

      const res = await ctx.client().invoke(path, { method, headers, body });
      const contentType = String(res.headers["content-type"] ?? "");
      if (options.verbose) {
        out.diagnostic(`> ${method} ${ctx.baseUrl()}${path}`);
        out.diagnostic(`< HTTP ${res.status}`);
        for (const [key, value] of Object.entries(res.headers)) {
          for (const v of Array.isArray(value) ? value : [value]) out.diagnostic(`< ${key}: ${v}`);
        }
      }
      if (res.status >= 400 && contentType.includes("application/problem+json")) {
        let problem: unknown = res.body.toString("utf8");
        try {
          problem = JSON.parse(problem as string);
        } catch {
          // Keep the text as the detail.
        }
        throw cliErrorFromProblem(problem, res.status);
      }
      if (out.json) {
        const text = res.body.toString("utf8");
        let parsed: unknown = isUtf8(res.body) ? text : { base64: res.body.toString("base64") };
        if (contentType.includes("json")) {
          try {
            parsed = JSON.parse(text);
          } catch {
            // Not JSON despite the header: keep the text.
          }
        }
        out.data({ status: res.status, headers: res.headers, body: parsed });
      } else {
        out.raw(res.body);
        // Terminals get a final newline so the prompt does not stick to the answer; pipes get the bytes as sent.
        if (out.interactive && res.body.length > 0 && res.body.at(-1) !== 0x0a) out.raw("\n");
      }
      if (res.status >= 400) {
        throw new CliError(
          res.status >= 500 ? "FUNCTION_ERROR" : "BAD_REQUEST",
          `${name} answered HTTP ${res.status}`,
          {
            status: res.status,
            bare: true,
          },
        );
      }
    });
}
