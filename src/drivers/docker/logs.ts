/**
 * A container's output as lines: the engine's log stream (followed, multiplexed stdout/stderr frames)
 * split into its two streams, then into lines exactly as the process driver reads a child's pipes
 * (same line splitting, same runaway-line cap, same request-id tag).
 */
import { PassThrough } from "node:stream";
import type Docker from "dockerode";
import { parseTagged, readLines } from "../process/output.js";

export interface OutputLine {
  stream: "stdout" | "stderr";
  /** Set when the runtime tagged the line (`\x1e<id>\x1f`, see docs/runtime-contract.md). */
  requestId?: string;
  text: string;
  /** When the engine says it was written (ms); only when following from a time. */
  time?: number;
}

/**
 * Where following starts: `start` — everything since the container was created (one this driver
 * started); `now` — only what it writes from now on; `{ afterMs }` — what it wrote after that time (an
 * adopted container: its output up to the last line the store kept is there already, and what it wrote
 * while no daemon ran is not).
 */
export type FollowFrom = "start" | "now" | { afterMs: number };

/**
 * Follows `container`'s output and calls `onLine` for each line; resolves when the stream ends (the
 * container stopped, or the engine went away). `signal` stops following.
 */
export async function followOutput(
  docker: Docker,
  container: Docker.Container,
  from: FollowFrom,
  onLine: (line: OutputLine) => void,
  signal?: AbortSignal,
): Promise<void> {
  const after = typeof from === "object" ? from.afterMs : undefined;
  const source = await container.logs({
    follow: true,
    stdout: true,
    stderr: true,
    ...(from === "now" ? { tail: 0 } : {}),
    // The engine's `since` is in whole seconds: ask from the second before, and drop by each line's own
    // timestamp what the store already has.
    ...(after === undefined ? {} : { since: Math.floor(after / 1000), timestamps: true }),
  });
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  docker.modem.demuxStream(source, stdout, stderr);
  const end = () => {
    stdout.end();
    stderr.end();
  };
  source.once("end", end);
  source.once("close", end);
  source.once("error", end);
  const stop = () => (source as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
  if (signal?.aborted) stop();
  signal?.addEventListener("abort", stop, { once: true });
  const read = (stream: PassThrough, name: OutputLine["stream"]) =>
    readLines(stream, (raw) => {
      let line = raw;
      let time: number | undefined;
      if (after !== undefined) {
        // "2026-11-25T19:40:30.123456789Z text": the engine's timestamp, then the line.
        const space = line.indexOf(" ");
        time = Date.parse(line.slice(0, space));
        line = line.slice(space + 1);
        if (!Number.isNaN(time) && time <= after) return;
      }
      const { requestId, text } = parseTagged(line);
      onLine({
        stream: name,
        text,
        ...(requestId === undefined ? {} : { requestId }),
        ...(time === undefined || Number.isNaN(time) ? {} : { time }),
      });
    });
  try {
    await Promise.all([read(stdout, "stdout"), read(stderr, "stderr")]);
  } finally {
    signal?.removeEventListener("abort", stop);
  }
}
