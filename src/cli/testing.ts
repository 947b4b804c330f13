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
