import { describe, expect, it } from "vitest";
import { type AutoscaleSettings, ConcurrencyMeter, decide, type Sample } from "./autoscaler.js";

const settings: AutoscaleSettings = {
  concurrency: 4,
  targetUtilization: 0.5,
  min: 0,
  max: 10,
  stableWindowMs: 60_000,
  panicWindowMs: 6_000,
  panicThreshold: 2,
};
const calm = { panicUntil: 0, panicDesired: 0 };

/** One sample a second over the last `seconds`, all with the same concurrency. */
function steady(now: number, seconds: number, concurrency: number): Sample[] {
  return Array.from({ length: seconds }, (_, i) => ({ at: now - (seconds - 1 - i) * 1000, concurrency }));
}

describe("autoscaler decisions", () => {
  it.each([
    { what: "no traffic wants no instance", samples: steady(100_000, 60, 0), ready: 1, desired: 0 },
    {
      what: "concurrency 2 at 4×0.5 per instance wants 1",
      samples: steady(100_000, 60, 2),
      ready: 1,
      desired: 1,
    },
    { what: "concurrency 7 wants 4", samples: steady(100_000, 60, 7), ready: 4, desired: 4 },
    { what: "more than max is capped", samples: steady(100_000, 60, 100), ready: 10, desired: 10 },
  ])("$what", ({ samples, ready, desired }) => {
    expect(decide(samples, 100_000, ready, settings, calm).desired).toBe(desired);
  });

  it("min keeps instances even without traffic", () => {
    expect(decide(steady(100_000, 60, 0), 100_000, 2, { ...settings, min: 2 }, calm).desired).toBe(2);
  });

  it("a burst in the panic window scales up at once, before the stable window notices", () => {
    const samples = [...steady(94_000, 54, 0), ...steady(100_000, 6, 16)];
    const decision = decide(samples, 100_000, 1, settings, calm);
    expect(decision.panic).toBe(true);
    expect(decision.desired).toBe(8);
    expect(decision.stableConcurrency).toBeLessThan(2);
  });

  it("never scales down while panicking, even when the burst ebbs", () => {
    const first = decide([...steady(94_000, 54, 0), ...steady(100_000, 6, 16)], 100_000, 1, settings, calm);
    const later = decide(
      [...steady(100_000, 60, 0), { at: 110_000, concurrency: 0 }],
      110_000,
      8,
      settings,
      first.state,
    );
    expect(later.panic).toBe(true);
    expect(later.desired).toBe(8);
  });

  it("leaves panic after a stable window and follows the stable average again", () => {
    const first = decide([...steady(94_000, 54, 0), ...steady(100_000, 6, 16)], 100_000, 1, settings, calm);
    const after = decide(steady(170_000, 60, 2), 170_000, 8, settings, first.state);
    expect(after.panic).toBe(false);
    expect(after.desired).toBe(1);
  });
});

describe("concurrency meter", () => {
  it("averages in-flight counts over time, not over events", () => {
    const meter = new ConcurrencyMeter(0, 60_000);
    meter.change(0, 4);
    meter.change(250, 0);
    meter.change(500, 2);
    expect(meter.sample(1000).concurrency).toBeCloseTo((4 * 250 + 0 * 250 + 2 * 500) / 1000);
    expect(meter.sample(2000).concurrency).toBe(2);
  });

  it("forgets samples older than its window", () => {
    const meter = new ConcurrencyMeter(0, 3000);
    for (let t = 1000; t <= 10_000; t += 1000) meter.sample(t);
    expect(meter.samples.map((s) => s.at)).toEqual([8000, 9000, 10_000]);
  });
});
