/**
 * Asking an instance's runtime `GET /healthz`, over a unix socket or a loopback port, for both drivers.
 * Cold starts are on the request path (the gateway holds the first request meanwhile) and a runtime boots
 * in 50–100 ms, so the wait polls promptly at first (5 ms), backing off to 50 ms only for slow starters.
 * Until the runtime listens, "not yet" looks like a failed request (no socket, a refused connection, or
 * — behind the engine's port proxy — one accepted and then dropped).
 *
 * Where the socket is a file this daemon creates (the process driver), the wait can also watch its
 * folder (`watchSocket`): the first probe then follows the socket's creation at once, retried every 2 ms
 * until the server listens, and the backed-off timer is only the fallback.
 */
import { existsSync, type FSWatcher, watch } from "node:fs";
import { basename, dirname } from "node:path";
import { Client } from "undici";
import type { InstanceAddress } from "../driver.js";

const FIRST_DELAY_MS = 5;
const MAX_DELAY_MS = 50;
const SOCKET_RETRY_MS = 2;
/** How long one probe may take before it counts as "no answer". */
const PROBE_TIMEOUT_MS = 2_000;

function clientFor(address: InstanceAddress): Client {
  return "socketPath" in address
    ? new Client("http://localhost", { socketPath: address.socketPath, pipelining: 0 })
    : new Client(`http://${address.host}:${address.port}`, { pipelining: 0 });
}

/** One `/healthz` request: whether it answered 200, and the `status` its JSON body gave (`ready`, `generic`). */
async function ask(
  client: Client,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<{ ok: boolean; status: string | undefined }> {
  try {
    const res = await client.request({
      path: "/healthz",
      method: "GET",
      signal,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) return { ok: false, status: undefined };
    return { ok: true, status: statusOf(text) };
  } catch {
    return { ok: false, status: undefined };
  }
}

function statusOf(text: string): string | undefined {
  try {
    const status = (JSON.parse(text) as { status?: unknown }).status;
    return typeof status === "string" ? status : undefined;
  } catch {
    return undefined;
  }
}

/** One health probe of an instance (for reconcile): its `/healthz` status on a 200, else undefined. */
export async function probeHealth(
  address: InstanceAddress,
  timeoutMs = PROBE_TIMEOUT_MS,
): Promise<string | undefined> {
  const client = clientFor(address);
  try {
    const answer = await ask(client, AbortSignal.timeout(timeoutMs), timeoutMs);
    return answer.ok ? answer.status : undefined;
  } finally {
    await client.destroy().catch(() => undefined);
  }
}

/** Waits `ms`, or less when `signal` aborts or when the callback handed to `onWake` is called. */
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

export interface ReadyWaitOptions {
  /** The `status` the runtime must report (`ready`; `generic` for a warm pool instance); default: any 200. */
  want?: string;
  /** Watch the socket's folder and probe only once the socket exists (a socket address on this host). */
  watchSocket?: boolean;
}

/**
 * Resolves once the instance answers `/healthz` (with `want`'s status, when given). Rejects with
 * `signal.reason` when `signal` aborts (the caller's timeout or abort, or the instance's exit).
 */
export async function waitUntilReady(
  address: InstanceAddress,
  signal: AbortSignal,
  options: ReadyWaitOptions = {},
): Promise<void> {
  const client = clientFor(address);
  const socketPath = options.watchSocket && "socketPath" in address ? address.socketPath : undefined;
  let wake: (() => void) | undefined;
  let watcher: FSWatcher | undefined;
  if (socketPath !== undefined) {
    try {
      watcher = watch(dirname(socketPath), (_event, file) => {
        if (file === basename(socketPath)) wake?.();
      });
      watcher.on("error", () => watcher?.close());
    } catch {
      // No inotify watch left (or no such dir yet): polling alone still works, only a little later.
    }
  }
  try {
    let delay = FIRST_DELAY_MS;
    for (;;) {
      signal.throwIfAborted();
      // Without a socket file to look for, every round probes.
      const exists = socketPath === undefined || existsSync(socketPath);
      if (exists) {
        const answer = await ask(client, signal, PROBE_TIMEOUT_MS);
        if (answer.ok && (options.want === undefined || answer.status === options.want)) return;
      }
      signal.throwIfAborted();
      // Once the socket exists the server is binding and about to listen: retry promptly.
      const promptly = socketPath !== undefined && exists;
      await sleep(promptly ? SOCKET_RETRY_MS : delay, signal, (done) => {
        wake = done;
      });
      wake = undefined;
      if (!promptly) delay = Math.min(Math.ceil(delay * 1.5), MAX_DELAY_MS);
    }
  } finally {
    watcher?.close();
    await client.destroy().catch(() => undefined);
  }
}
