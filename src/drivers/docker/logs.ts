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
}

/**
 * Follows `container`'s output and calls `onLine` for each line; resolves when the stream ends (the
 * container stopped, or the engine went away). `fromStart`: everything since the container was created;
 * else only what it writes from now on (an adopted container's past output is already in the store).
 * `signal` stops following.
 */
export async function followOutput(
  docker: Docker,
  container: Docker.Container,
  fromStart: boolean,
  onLine: (line: OutputLine) => void,
  signal?: AbortSignal,
): Promise<void> {
  const source = await container.logs({
    follow: true,
    stdout: true,
    stderr: true,
    ...(fromStart ? {} : { tail: 0 }),
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
      const { requestId, text } = parseTagged(raw);
      onLine({ stream: name, text, ...(requestId === undefined ? {} : { requestId }) });
    });
  try {
    await Promise.all([read(stdout, "stdout"), read(stderr, "stderr")]);
  } finally {
    signal?.removeEventListener("abort", stop);
  }
}
