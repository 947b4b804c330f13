/**
 * Asking a container's runtime `GET /healthz`, over its published loopback port or its socket. Until the
 * runtime listens, the engine's port proxy accepts and then drops the connection, so "not yet" looks like
 * a failed request: the wait polls, promptly at first (a container starts in ~100 ms and the first
 * request of a cold start waits for it), backing off for slow starters.
 */
import { Client } from "undici";
import type { InstanceAddress } from "../driver.js";

const FIRST_DELAY_MS = 5;
const MAX_DELAY_MS = 50;

function clientFor(address: InstanceAddress): Client {
  return "socketPath" in address
    ? new Client("http://localhost", { socketPath: address.socketPath, pipelining: 0 })
    : new Client(`http://${address.host}:${address.port}`, { pipelining: 0 });
}

/**
 * One `/healthz` request: the runtime's `status` (`ready`, `generic`) on a 200, else undefined (not
 * listening, another status code, no answer within `timeoutMs`).
 */
async function ask(client: Client, signal: AbortSignal, timeoutMs: number): Promise<string | undefined> {
  try {
    const res = await client.request({
      path: "/healthz",
      method: "GET",
      signal,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) return undefined;
    const status = (JSON.parse(text) as { status?: unknown }).status;
    return typeof status === "string" ? status : undefined;
  } catch {
    return undefined;
  }
}

/** One health probe of an instance, for reconcile: its `/healthz` status, or undefined. */
export async function probeHealth(address: InstanceAddress, timeoutMs = 2_000): Promise<string | undefined> {
  const client = clientFor(address);
  try {
    return await ask(client, AbortSignal.timeout(timeoutMs), timeoutMs);
  } finally {
    await client.destroy().catch(() => undefined);
  }
}

/** Waits `ms`, or less when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * Resolves once the instance answers `/healthz` with `status` `want` (`ready`; `generic` for a warm pool
 * container). Rejects with `signal.reason` when `signal` aborts (the caller's timeout or abort, or the
 * container's exit).
 */
export async function waitUntilReady(
  address: InstanceAddress,
  signal: AbortSignal,
  want: "ready" | "generic" = "ready",
): Promise<void> {
  const client = clientFor(address);
  try {
    let delay = FIRST_DELAY_MS;
    for (;;) {
      signal.throwIfAborted();
      if ((await ask(client, signal, 2_000)) === want) return;
      signal.throwIfAborted();
      await sleep(delay, signal);
      delay = Math.min(Math.ceil(delay * 1.5), MAX_DELAY_MS);
    }
  } finally {
    await client.destroy().catch(() => undefined);
  }
}
