/**
 * A container's output as lines: the engine's log stream (followed, multiplexed stdout/stderr frames)
 * split into its two streams, then into lines exactly as the process driver reads a child's pipes
 * (same line splitting, same runaway-line cap, same request-id tag).
 */
import type Docker from "dockerode";
import { type OutputLine, readLogStream } from "../common/log-stream.js";

export type { OutputLine } from "../common/log-stream.js";

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
  await readLogStream(docker, source, after, onLine, signal);
}
