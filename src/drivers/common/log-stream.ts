/**
 * Reading an engine's log stream (multiplexed stdout/stderr frames, as `GET /containers/{id}/logs` and
 * `GET /services/{id}/logs` send them) into lines, exactly as the process driver reads a child's pipes
 * (same line splitting, same runaway-line cap, same request-id tag). The Docker driver follows a
 * container's stream, the swarm driver a service's.
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
 * Splits `source` into lines and calls `onLine` for each; resolves when the stream ends. `after`: the
 * stream was asked with timestamps, and lines written at or before that time (ms) are dropped.
 * `signal` stops reading.
 */
export async function readLogStream(
  docker: Docker,
  source: NodeJS.ReadableStream,
  after: number | undefined,
  onLine: (line: OutputLine) => void,
  signal?: AbortSignal,
): Promise<void> {
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
export { LastLines } from "../process/output.js";
