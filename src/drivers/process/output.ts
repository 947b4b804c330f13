/**
 * Turning an instance's stdout/stderr bytes into log lines: split on newlines (a partial line waits
 * for its end), cap runaway lines, and read the runtime's request-id tag (`\x1e<id>\x1f` at the start
 * of a line, see docs/runtime-contract.md).
 */
import type { Readable } from "node:stream";

/** Longest line kept, in characters; the rest of a longer line is dropped up to its newline. */
export const MAX_LINE = 16 * 1024;

const TAG_START = "\x1e";
const TAG_END = "\x1f";
/** Request ids are short; a tag end further away than this is not a tag. */
const MAX_TAG = 256;

/** Splits a line into its request id (when tagged) and its text. */
export function parseTagged(line: string): { requestId?: string; text: string } {
  if (!line.startsWith(TAG_START)) return { text: line };
  const end = line.indexOf(TAG_END, 1);
  if (end === -1 || end > MAX_TAG) return { text: line };
  return { requestId: line.slice(1, end), text: line.slice(end + 1) };
}

/**
 * Reads `stream` line by line and calls `onLine` for each; resolves when the stream ends (the last,
 * unterminated line included).
 */
export function readLines(stream: Readable, onLine: (line: string) => void): Promise<void> {
  stream.setEncoding("utf8");
  let partial = "";
  /** True while dropping the remainder of an over-long line. */
  let skipping = false;
  const emit = (line: string) => onLine(line.endsWith("\r") ? line.slice(0, -1) : line);
  stream.on("data", (chunk: string) => {
    let from = 0;
    for (let nl = chunk.indexOf("\n"); nl !== -1; nl = chunk.indexOf("\n", from)) {
      if (!skipping) emit(partial + chunk.slice(from, nl));
      partial = "";
      skipping = false;
      from = nl + 1;
    }
    if (skipping) return;
    partial += chunk.slice(from);
    if (partial.length > MAX_LINE) {
      emit(`${partial.slice(0, MAX_LINE)} …[line truncated at ${MAX_LINE} characters]`);
      partial = "";
      skipping = true;
    }
  });
  return new Promise((resolve) => {
    const finish = () => {
      if (partial !== "" && !skipping) emit(partial);
      partial = "";
      resolve();
    };
    stream.once("end", finish);
    stream.once("close", finish);
    stream.once("error", finish);
  });
}

/** The last `size` lines of an instance, for crash reports. */
export class LastLines {
  private readonly lines: string[] = [];

  constructor(private readonly size = 50) {}

  push(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.size) this.lines.shift();
  }

  snapshot(): string[] {
    return [...this.lines];
  }
}
