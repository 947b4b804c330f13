import type { Command } from "commander";
import { ApiClient, resolveBaseUrl, resolveDataDir, resolveToken } from "./client.js";
import { Output } from "./output.js";
import { defaultTemplatesDir } from "./scaffold.js";

/**
 * What the CLI takes from the world. `main.ts` passes the real process; tests
 * pass captured streams, their own env and a temporary templates folder.
 */
export interface CliDeps {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  stdin: NodeJS.ReadableStream;
  env: Record<string, string | undefined>;
  templatesDir: string;
  /** Spinners on or off; by default on when stdout is a terminal. */
  interactive?: boolean;
  /** Calls `handler` on Ctrl-C until the returned function is called (logs -f stops cleanly). */
  onInterrupt(handler: () => void): () => void;
}

export function processDeps(): CliDeps {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    templatesDir: defaultTemplatesDir(),
    onInterrupt(handler) {
      process.once("SIGINT", handler);
      return () => process.off("SIGINT", handler);
    },
  };
}

/** The global flags, as every verb sees them. */
export interface GlobalOptions {
  url?: string;
  json?: boolean;
  dataDir?: string;
}

export interface VerbContext {
  out: Output;
  deps: CliDeps;
  /** The daemon's base URL (`--url`, `FUNCD_URL`, default). */
  baseUrl(): string;
  /** A client for the control API, with the token resolved. */
  client(): ApiClient;
}

export function outputFor(deps: CliDeps, json: boolean): Output {
  return new Output({
    stdout: deps.stdout,
    stderr: deps.stderr,
    json,
    ...(deps.interactive === undefined ? {} : { interactive: deps.interactive }),
  });
}

/** The context of the verb `command` runs, from its global options. */
export function contextFor(command: Command, deps: CliDeps): VerbContext {
  const globals = command.optsWithGlobals<GlobalOptions>();
  const out = outputFor(deps, globals.json === true);
  const baseUrl = () => resolveBaseUrl(globals.url, deps.env);
  return {
    out,
    deps,
    baseUrl,
    client: () =>
      new ApiClient({
        baseUrl: baseUrl(),
        token: resolveToken(deps.env, resolveDataDir(globals.dataDir, deps.env)),
      }),
  };
}
