/**
 * Waiting for a new instance to answer `GET /healthz` on its unix socket. Cold starts are on the
 * request path (the gateway holds the first request meanwhile) and a Node runtime boots in about 50 ms,
 * so the wait must not add much: the socket dir is watched so the first probe follows the socket's
 * creation at once (then retried every 2 ms until the server listens), and the fallback polling starts
 * at 5 ms and backs off to 50 ms only for slow starters.
 */
import { existsSync, type FSWatcher, watch } from "node:fs";
import { basename, dirname } from "node:path";
import { Client } from "undici";

const FIRST_DELAY_MS = 5;
const MAX_DELAY_MS = 50;
const SOCKET_RETRY_MS = 2;

/** Waits `ms`, or less when aborted or when the callback handed to `onWake` is called. */
function sleep(ms: number, signal: AbortSignal, onWake: (wake: () => void) => void): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    onWake(done);
  });
}

/** One `/healthz` probe; false for anything but a 200 (including "nothing listens yet"). */
async function probe(client: Client, signal: AbortSignal): Promise<boolean> {
  try {
    const res = await client.request({
      path: "/healthz",
      method: "GET",
      signal,
      headersTimeout: 2_000,
      bodyTimeout: 2_000,
    });
    await res.body.dump();
    return res.statusCode === 200;
  } catch {
    return false;
  }
}

/**
 * Resolves once `socketPath` answers `/healthz` with 200. Rejects with `signal.reason` when `signal`
 * aborts (the caller's timeout, abort, or the instance's exit).
 */
export async function waitUntilReady(socketPath: string, signal: AbortSignal): Promise<void> {
  const client = new Client("http://localhost", { socketPath, pipelining: 0 });
  let wake: (() => void) | undefined;
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(socketPath), (_event, file) => {
      if (file === basename(socketPath)) wake?.();
    });
    watcher.on("error", () => watcher?.close());
  } catch {
    // No inotify watch left (or no such dir yet): polling alone still works, only a little later.
  }
  try {
    let delay = FIRST_DELAY_MS;
    for (;;) {
      signal.throwIfAborted();
      const exists = existsSync(socketPath);
      if (exists && (await probe(client, signal))) return;
      signal.throwIfAborted();
      // Once the socket exists the server is binding and about to listen: retry promptly. Before
      // that the watcher wakes us, and the backed-off timer is only the fallback.
      await sleep(exists ? SOCKET_RETRY_MS : delay, signal, (done) => {
        wake = done;
      });
      wake = undefined;
      if (!exists) delay = Math.min(Math.ceil(delay * 1.5), MAX_DELAY_MS);
    }
  } finally {
    watcher?.close();
    await client.destroy().catch(() => undefined);
  }
}
