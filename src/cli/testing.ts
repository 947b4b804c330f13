import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { PassThrough, Readable } from "node:stream";
import type { CliDeps } from "./context.js";

/** A CliDeps whose stdout/stderr are captured, for tests that run the real command in-process. */
export interface CapturedDeps extends CliDeps {
  out(): string;
  err(): string;
}

export function captureDeps(overrides: Partial<CliDeps> = {}): CapturedDeps {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = "";
  let err = "";
  stdout.on("data", (chunk: Buffer) => {
    out += chunk.toString("utf8");
  });
  stderr.on("data", (chunk: Buffer) => {
    err += chunk.toString("utf8");
  });
  return {
    stdout,
    stderr,
    stdin: Readable.from([]),
    env: {},
    templatesDir: "/nonexistent",
    interactive: false,
    onInterrupt: () => () => {},
    ...overrides,
    out: () => out,
    err: () => err,
  };
}

/** A request as a recording server saw it. */
export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
}

/**
 * A real HTTP server on 127.0.0.1:0 standing in for the daemon: it records each request and lets `handle`
 * answer. `close()` ends it (tests call it from onTestFinished).
 */
export async function recordingServer(
  handle: (req: SeenRequest, res: ServerResponse) => void,
): Promise<{ url: string; seen: SeenRequest[]; close: () => Promise<void> }> {
  const seen: SeenRequest[] = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => {
      body += c.toString();
    });
    req.on("end", () => {
      const record = { method: req.method ?? "", url: req.url ?? "", headers: req.headers, body };
      seen.push(record);
      handle(record, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, close };
}
