/**
 * What happens after an async delivery attempt: pure functions, so the retry
 * rules are tested table-driven without a daemon or a clock.
 */

export interface RetryPolicy {
  /** First backoff step (the n-th retry waits up to base · 2^(n−1)). */
  baseMs: number;
  /** Longest wait between two attempts. */
  capMs: number;
  /** Invocations older than this (since enqueue or redrive) are not attempted again. */
  maxEventAgeMs: number;
}

/** What one attempt looked like, as far as the decision goes. */
export interface AttemptSummary {
  /** False when no instance took the request (the function never saw it). */
  reached: boolean;
  statusCode: number;
  /** Attempts made, this one included. */
  attempt: number;
  maxRetries: number;
  enqueuedAt: number;
}

export type Decision =
  | { kind: "succeeded" }
  | { kind: "failed"; reason: string }
  | { kind: "retry"; runAt: number; counted: boolean }
  | { kind: "dead-letter"; reason: string };

/**
 * Exponential backoff with full jitter (a uniform wait between 0 and the
 * exponential step, capped): retries of many failed invocations spread out
 * instead of arriving together. `retry` is 1 for the first retry.
 */
export function backoffMs(
  retry: number,
  policy: Pick<RetryPolicy, "baseMs" | "capMs">,
  random: () => number,
) {
  const step = Math.min(policy.capMs, policy.baseMs * 2 ** Math.max(0, Math.min(retry - 1, 30)));
  return Math.floor(random() * step);
}

/** Statuses worth another try: the function failed, timed out, crashed, was unavailable or throttled. */
export function isRetriable(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/**
 * Success (below 400) ends it; a 4xx other than 408/429 is the request's own
 * fault and ends it as failed; anything else is retried with backoff until the
 * retries or the event age run out, then dead-lettered. An attempt that never
 * reached the function does not count against the retries (only the age).
 */
export function decide(a: AttemptSummary, now: number, policy: RetryPolicy, random: () => number): Decision {
  if (a.statusCode < 400) return { kind: "succeeded" };
  if (!isRetriable(a.statusCode)) {
    return { kind: "failed", reason: `the function answered ${a.statusCode}, which is not retried` };
  }
  const made = a.reached ? a.attempt : a.attempt - 1;
  if (a.reached && made > a.maxRetries) {
    return {
      kind: "dead-letter",
      reason: `${made} attempt${made === 1 ? "" : "s"} failed (${a.maxRetries} retr${a.maxRetries === 1 ? "y" : "ies"} allowed)`,
    };
  }
  const runAt = now + backoffMs(Math.max(1, made), policy, random);
  if (runAt - a.enqueuedAt > policy.maxEventAgeMs) {
    return { kind: "dead-letter", reason: tooOld(policy.maxEventAgeMs, made) };
  }
  return { kind: "retry", runAt, counted: a.reached };
}

/** Whether an invocation claimed at `now` is too old to attempt. */
export function expired(
  enqueuedAt: number,
  now: number,
  policy: Pick<RetryPolicy, "maxEventAgeMs">,
): boolean {
  return now - enqueuedAt > policy.maxEventAgeMs;
}

export function tooOld(maxEventAgeMs: number, attempts: number): string {
  return `older than the maximum event age of ${maxEventAgeMs} ms after ${attempts} attempt${attempts === 1 ? "" : "s"}`;
}
