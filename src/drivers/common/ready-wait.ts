/**
 * The wait between launching an instance (or asking a generic one to specialize) and its first
 * `/healthz` answer, for both drivers: whatever ends it first — the caller's abort, the ready timeout,
 * the instance's own exit — aborts one signal, so the readiness polling and the specialization request
 * stop at once and the caller can tell why.
 */
import type { InstanceExit } from "../driver.js";

/**
 * Why waiting for readiness stopped, other than the caller's abort. `load-failed`: a generic instance
 * answered its specialization with "the handler cannot be loaded".
 */
export type StartInterruption = "exited" | "timeout" | "load-failed";

/** Why the readiness wait was cut short (other than by the caller). */
export class Interrupted {
  constructor(readonly why: StartInterruption) {}
}

/** One readiness wait: `signal` aborts with the caller's reason, or an `Interrupted` (timeout, exit). */
export class ReadyWait {
  readonly #abort = new AbortController();
  readonly #caller: AbortSignal;
  readonly #relay = () => this.#abort.abort(this.#caller.reason);
  readonly #timer: NodeJS.Timeout;

  constructor(caller: AbortSignal, timeoutMs: number, exitSeen: Promise<void>) {
    this.#caller = caller;
    caller.addEventListener("abort", this.#relay, { once: true });
    if (caller.aborted) this.#relay();
    this.#timer = setTimeout(() => this.#abort.abort(new Interrupted("timeout")), timeoutMs);
    void exitSeen.then(() => this.#abort.abort(new Interrupted("exited")));
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Why the wait failed with `err`: the reason it was cut short, when it was, else `err` itself. */
  reason(err: unknown): unknown {
    return this.#abort.signal.aborted ? this.#abort.signal.reason : err;
  }

  /** Stops the timer and lets go of the caller's signal; call it however the wait ended. */
  close(): void {
    clearTimeout(this.#timer);
    this.#caller.removeEventListener("abort", this.#relay);
  }
}

/**
 * After a failed readiness wait: kills the instance unless it exited by itself, waits until it is gone,
 * and rejects — with the caller's own abort reason as is (as fetch() does), else with `failure`.
 */
export async function abandonStart(
  why: unknown,
  instance: { kill(): Promise<void>; exited: Promise<InstanceExit> },
  failure: (exit: InstanceExit, why: StartInterruption) => Error,
): Promise<never> {
  if (!(why instanceof Interrupted && why.why === "exited")) await instance.kill();
  const exit = await instance.exited;
  if (!(why instanceof Interrupted)) throw why;
  throw failure(exit, why.why);
}
