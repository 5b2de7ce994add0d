import type { CohortSummary } from '../../proto/gen/bpfleet/v1/rollout.js';

/** The q-quantile (0..1) of ascending `sorted`, interpolated between ranks (R's type 7); NaN when empty. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const pos = (n - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(n - 1, lo + 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export function mean(xs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  return xs.length ? s / xs.length : 0;
}

/** Ascending copy as doubles (no object per sample: cohorts hold tens of thousands). */
export function sorted(xs: readonly number[]): Float64Array {
  return Float64Array.from(xs).sort();
}

/**
 * What a verdict reports of one cohort: count, mean, median and interquartile range of the
 * ascending samples it judged, and how many it set aside as outliers. Zeros when empty.
 */
export function summarize(asc: Float64Array, outliers = 0): CohortSummary {
  if (asc.length === 0) return { samples: 0, mean: 0, median: 0, iqr: 0, outliers };
  return { samples: asc.length, mean: mean(asc), median: quantile(asc, 0.5), iqr: quantile(asc, 0.75) - quantile(asc, 0.25), outliers };
}
