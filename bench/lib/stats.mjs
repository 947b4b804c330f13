/**
 * Summaries and number formatting shared by the benchmarks. Quantiles are nearest-rank: with 30 samples
 * the p99 is the largest one, with 5 it is the largest too — the report says how many samples there were.
 */

/** Nearest-rank quantile of an ascending array. */
function quantile(sorted, q) {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** n, median, p99, min, max and mean of `values`. */
export function summarize(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    n: sorted.length,
    median: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    min: sorted[0] ?? Number.NaN,
    max: sorted.at(-1) ?? Number.NaN,
    mean: sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length),
  };
}

/** `12.3 ms`; under 10 ms with two decimals, so sub-millisecond latencies stay readable. */
export function ms(v) {
  if (!Number.isFinite(v)) return "–";
  return `${v < 10 ? v.toFixed(2) : v.toFixed(1)} ms`;
}

/** Signed milliseconds: `+0.21 ms`. */
export function plusMs(v) {
  if (!Number.isFinite(v)) return "–";
  return `${v >= 0 ? "+" : "−"}${ms(Math.abs(v))}`;
}

/** `0.62×` */
export function ratio(a, b) {
  if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) return "–";
  return `${(a / b).toFixed(2)}×`;
}

/** `93 %` */
export function percent(v, digits = 0) {
  return Number.isFinite(v) ? `${v.toFixed(digits)} %` : "–";
}

/** `41.2 MiB` */
export function mib(bytes) {
  return Number.isFinite(bytes) ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : "–";
}

/** `12,345` */
export function count(v) {
  return Number.isFinite(v) ? Math.round(v).toLocaleString("en-US") : "–";
}

/** `12.3 s` */
export function seconds(msValue) {
  return `${(msValue / 1000).toFixed(1)} s`;
}

/** The verdict cell of a target row. */
export function verdict(met) {
  return met === undefined ? "n/a" : met ? "✅ met" : "❌ not met";
}
