import { describe, expect, it } from "vitest";
import { type AttemptSummary, backoffMs, decide, isRetriable, type RetryPolicy } from "./policy.js";

const policy: RetryPolicy = { baseMs: 1000, capMs: 300_000, maxEventAgeMs: 6 * 3_600_000 };
const NOW = 10_000_000;
const attempt = (over: Partial<AttemptSummary>): AttemptSummary => ({
  reached: true,
  statusCode: 500,
  attempt: 1,
  maxRetries: 2,
  enqueuedAt: NOW - 1000,
  ...over,
});

describe("backoffMs", () => {
  it.each([
    [1, 1000],
    [2, 2000],
    [3, 4000],
    [9, 256_000],
    [10, 300_000],
    [40, 300_000],
  ])("retry %i waits less than %i ms (full jitter up to the capped step)", (retry, step) => {
    expect(backoffMs(retry, policy, () => 0)).toBe(0);
    expect(backoffMs(retry, policy, () => 0.999_999)).toBe(Math.floor(0.999_999 * step));
    expect(backoffMs(retry, policy, () => 0.5)).toBe(step / 2);
  });
});

describe("decide", () => {
  const half = () => 0.5;
  it.each([
    [200, "succeeded"],
    [204, "succeeded"],
    [302, "succeeded"],
    [400, "failed"],
    [404, "failed"],
    [413, "failed"],
    [408, "retry"],
    [429, "retry"],
    [500, "retry"],
    [502, "retry"],
    [503, "retry"],
    [504, "retry"],
  ])("status %i on a first attempt → %s", (statusCode, kind) => {
    expect(decide(attempt({ statusCode }), NOW, policy, half).kind).toBe(kind);
    expect(isRetriable(statusCode)).toBe(kind === "retry");
  });

  it("retries with exponential backoff until the retries are used up, then dead-letters", () => {
    expect(decide(attempt({ attempt: 1 }), NOW, policy, half)).toEqual({
      kind: "retry",
      runAt: NOW + 500,
      counted: true,
    });
    expect(decide(attempt({ attempt: 2 }), NOW, policy, half)).toEqual({
      kind: "retry",
      runAt: NOW + 1000,
      counted: true,
    });
    const last = decide(attempt({ attempt: 3 }), NOW, policy, half);
    expect(last).toMatchObject({ kind: "dead-letter", reason: "3 attempts failed (2 retries allowed)" });
  });

  it("with no retries a failed first attempt is dead-lettered at once", () => {
    expect(decide(attempt({ maxRetries: 0 }), NOW, policy, half).kind).toBe("dead-letter");
  });

  it("an attempt that never reached the function does not count against the retries", () => {
    const d = decide(attempt({ reached: false, statusCode: 503, attempt: 3 }), NOW, policy, half);
    expect(d).toEqual({ kind: "retry", runAt: NOW + 1000, counted: false });
  });

  it("dead-letters when the next attempt would be past the maximum event age", () => {
    const young = { ...policy, maxEventAgeMs: 5000 };
    expect(decide(attempt({ enqueuedAt: NOW - 4000 }), NOW, young, half).kind).toBe("retry");
    const old = decide(attempt({ enqueuedAt: NOW - 4600 }), NOW, young, half);
    expect(old).toMatchObject({ kind: "dead-letter" });
    expect((old as { reason: string }).reason).toContain("maximum event age of 5000 ms");
  });
});
