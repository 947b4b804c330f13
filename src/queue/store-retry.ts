import type { Clock } from "../shared/clock.js";
import { isStoreBusy } from "../store/busy.js";

/** Who hears about retries (the daemon's `funcd_store_busy_*` metrics). */
export interface StoreRetryHooks {
  /** A store operation found the database locked and will be tried again. */
  retried?(operation: string): void;
  /** …and was given up after its last attempt. */
  gaveUp?(operation: string): void;
}

/** How often, and how far apart, an operation that finds the database locked is tried. */
export interface BusyBackoff {
  /** Attempts in all, the first included. */
  attempts: number;
  /** Wait before the second attempt; it doubles each time… */
  baseMs: number;
  /** …up to this. */
  capMs: number;
}

/**
 * Completions: 8 attempts over ~5 s of waits (plus each attempt's own busy_timeout inside SQLite). An
 * invocation whose completion is given up stays `running` until its lease runs out and then runs again.
 */
export const COMPLETION_BACKOFF: BusyBackoff = { attempts: 8, baseMs: 50, capMs: 2000 };

/** The wait before attempt `attempt + 1`. */
export function busyDelay(backoff: BusyBackoff, attempt: number): number {
  return Math.min(backoff.capMs, backoff.baseMs * 2 ** (attempt - 1));
}

/**
 * Runs a store write; when it fails because the database is locked (SQLITE_BUSY past `busy_timeout`),
 * waits and runs it again, up to `backoff.attempts` in all. Other errors are thrown at once. Hand-rolled
 * rather than p-retry: the wait goes through the injected clock, so tests drive it with a ManualClock.
 */
export async function retryWhileBusy<T>(
  operation: string,
  write: () => T,
  o: { clock: Clock; backoff: BusyBackoff; hooks?: StoreRetryHooks | undefined },
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return write();
    } catch (err) {
      if (!isStoreBusy(err)) throw err;
      if (attempt >= o.backoff.attempts) {
        o.hooks?.gaveUp?.(operation);
        throw new StoreBusyError(operation, attempt, err);
      }
      o.hooks?.retried?.(operation);
      await new Promise<void>((resolve) => o.clock.setTimeout(resolve, busyDelay(o.backoff, attempt)));
    }
  }
}

/** An operation given up because the database stayed locked through every attempt. */
export class StoreBusyError extends Error {
  constructor(
    readonly operation: string,
    readonly attempts: number,
    cause: unknown,
  ) {
    super(`${operation}: the database stayed locked through ${attempts} attempts`, { cause });
    this.name = "StoreBusyError";
  }
}
