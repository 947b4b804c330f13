import type { Clock } from "../shared/clock.js";
import type { LastExit } from "./unit.js";

/**
 * Recent unrequested exits by instance id, so the gateway can say why a
 * request's instance died. Bounded to the last 1000 exits.
 */
export class ExitLog {
  readonly #clock: Clock;
  readonly #recent = new Map<string, LastExit>();
  readonly #waiters = new Map<string, ((exit: LastExit) => void)[]>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Remembers an exit and wakes whoever waits for it. */
  record(exit: LastExit): void {
    this.#recent.set(exit.instanceId, exit);
    if (this.#recent.size > 1000) {
      const oldest = this.#recent.keys().next().value;
      if (oldest !== undefined) this.#recent.delete(oldest);
    }
    for (const notify of this.#waiters.get(exit.instanceId) ?? []) notify(exit);
    this.#waiters.delete(exit.instanceId);
  }

  /**
   * Why an instance exited, waiting up to `waitMs` for the driver's event (a
   * request usually sees its connection drop a moment before the exit is
   * reported). Undefined when it did not exit (or not within the wait).
   */
  exitOf(instanceId: string, waitMs: number): Promise<LastExit | undefined> {
    const known = this.#recent.get(instanceId);
    if (known) return Promise.resolve(known);
    return new Promise((resolve) => {
      const timer = this.#clock.setTimeout(() => {
        const list = this.#waiters.get(instanceId) ?? [];
        const at = list.indexOf(done);
        if (at >= 0) list.splice(at, 1);
        if (list.length === 0) this.#waiters.delete(instanceId);
        resolve(undefined);
      }, waitMs);
      const done = (exit: LastExit) => {
        timer.cancel();
        resolve(exit);
      };
      const list = this.#waiters.get(instanceId) ?? [];
      list.push(done);
      this.#waiters.set(instanceId, list);
    });
  }
}
