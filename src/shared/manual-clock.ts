import type { Clock } from "./clock.js";

/**
 * A clock tests move by hand: timers fire in time order during `advance`, so
 * backoff, idle reaping and autoscaling windows are tested without sleeping.
 */
export class ManualClock implements Clock {
  #now: number;
  #timers: { at: number; every: number | null; fn: () => void; id: number }[] = [];
  #ids = 0;

  constructor(start = 1_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number) {
    return this.#add(fn, ms, null);
  }

  setInterval(fn: () => void, ms: number) {
    return this.#add(fn, ms, ms);
  }

  /** Moves time forward by `ms`, running every timer that falls due on the way. */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      this.#timers.sort((a, b) => a.at - b.at || a.id - b.id);
      const next = this.#timers[0];
      if (!next || next.at > end) break;
      this.#now = next.at;
      if (next.every === null) this.#timers.shift();
      else next.at += next.every;
      next.fn();
    }
    this.#now = end;
  }

  #add(fn: () => void, ms: number, every: number | null) {
    const timer = {
      at: this.#now + Math.max(0, ms),
      every: every === null ? null : Math.max(1, every),
      fn,
      id: this.#ids++,
    };
    this.#timers.push(timer);
    return {
      cancel: () => {
        this.#timers = this.#timers.filter((t) => t !== timer);
      },
    };
  }
}
