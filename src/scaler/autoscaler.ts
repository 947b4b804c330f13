/**
 * Concurrency-based autoscaling decisions, after Knative's KPA: the number of
 * instances a function wants is the concurrency it sees divided by what one
 * instance should carry (its concurrency × target utilization), averaged over
 * a long stable window; a short panic window catches bursts, and while
 * panicking the scaler only ever scales up. Pure functions over samples, so
 * the rules are tested table-driven without processes or sleeps.
 */

export interface AutoscaleSettings {
  /** Requests one instance may hold at once. */
  concurrency: number;
  /** Fraction of `concurrency` to aim for (headroom for bursts). */
  targetUtilization: number;
  min: number;
  max: number;
  stableWindowMs: number;
  panicWindowMs: number;
  /** Panic when the panic-window demand reaches this multiple of the instances there are. */
  panicThreshold: number;
}

export const DEFAULT_AUTOSCALE = {
  targetUtilization: 0.7,
  stableWindowMs: 60_000,
  panicWindowMs: 6_000,
  panicThreshold: 2,
} as const;

/** One observation: the time-weighted average concurrency (in flight + waiting) over a tick. */
export interface Sample {
  at: number;
  concurrency: number;
}

export interface ScaleState {
  /** While `now < panicUntil` the function is in panic mode. */
  panicUntil: number;
  /** The desired count when panic began or last rose; panic never goes below it. */
  panicDesired: number;
}

export interface Decision {
  desired: number;
  panic: boolean;
  stableConcurrency: number;
  panicConcurrency: number;
  state: ScaleState;
}

export function average(samples: readonly Sample[], now: number, windowMs: number): number {
  let sum = 0;
  let n = 0;
  for (let i = samples.length - 1; i >= 0; i--) {
    const sample = samples[i];
    if (!sample || sample.at <= now - windowMs) break;
    sum += sample.concurrency;
    n++;
  }
  return n === 0 ? 0 : sum / n;
}

/**
 * How many instances the function should have now.
 * @param ready instances that serve (or are starting) for the current revision.
 */
export function decide(
  samples: readonly Sample[],
  now: number,
  ready: number,
  settings: AutoscaleSettings,
  state: ScaleState,
): Decision {
  const perInstance = Math.max(0.01, settings.concurrency * settings.targetUtilization);
  const stableConcurrency = average(samples, now, settings.stableWindowMs);
  const panicConcurrency = average(samples, now, settings.panicWindowMs);
  const stableDesired = Math.ceil(stableConcurrency / perInstance);
  const panicDesired = Math.ceil(panicConcurrency / perInstance);

  let next = { ...state };
  const burst = panicDesired >= settings.panicThreshold * Math.max(1, ready) && panicDesired > ready;
  if (burst) {
    next = {
      panicUntil: now + settings.stableWindowMs,
      panicDesired: Math.max(state.panicDesired, panicDesired),
    };
  }
  const panic = now < next.panicUntil;
  let desired: number;
  if (panic) {
    // Never scale down while panicking: a burst that ebbs for a moment is likely to come back.
    desired = Math.max(ready, panicDesired, next.panicDesired);
    next.panicDesired = desired;
  } else {
    desired = stableDesired;
    next = { panicUntil: 0, panicDesired: 0 };
  }
  desired = Math.min(settings.max, Math.max(settings.min, desired));
  return { desired, panic, stableConcurrency, panicConcurrency, state: next };
}

/**
 * Keeps the time-weighted concurrency of one function: `change` is called
 * whenever in-flight or waiting counts move; `sample` closes a tick.
 */
export class ConcurrencyMeter {
  #area = 0;
  #current = 0;
  #since: number;
  #tickStart: number;
  readonly samples: Sample[] = [];
  readonly #keepMs: number;

  constructor(now: number, keepMs: number) {
    this.#since = now;
    this.#tickStart = now;
    this.#keepMs = keepMs;
  }

  /** The concurrency just changed to `value` at `now`. */
  change(now: number, value: number): void {
    this.#area += this.#current * (now - this.#since);
    this.#current = value;
    this.#since = now;
  }

  /** Records the average over the tick that ends now and starts a new one. */
  sample(now: number): Sample {
    this.#area += this.#current * (now - this.#since);
    const span = now - this.#tickStart;
    const concurrency = span > 0 ? this.#area / span : this.#current;
    const sample = { at: now, concurrency };
    this.samples.push(sample);
    while (this.samples.length > 0 && (this.samples[0]?.at ?? now) <= now - this.#keepMs)
      this.samples.shift();
    this.#area = 0;
    this.#since = now;
    this.#tickStart = now;
    return sample;
  }
}
