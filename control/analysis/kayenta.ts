/**
 * The pieces of Netflix Kayenta's canary judge (NetflixACAJudge with its Mann–Whitney
 * classifier) that bpfleet's "kayenta" method uses: outliers beyond 3 interquartile ranges
 * outside the quartiles are set aside, and the canary is compared with the baseline by the
 * Hodges–Lehmann shift (the median of all canary − baseline differences) and its 98 %
 * confidence interval, obtained by inverting the Mann–Whitney test. Source: Kayenta's
 * judge (github.com/spinnaker/kayenta, kayenta-judge: IQRDetector factor 3,
 * MannWhitneyClassifier confLevel 0.98).
 */
import { quantile } from './summary.js';

/** Samples further than this many IQRs below the 1st or above the 3rd quartile are outliers. */
export const IQR_FENCE = 3;
/** Two-sided confidence of the interval of the shift. */
export const CONFIDENCE = 0.98;
// Upper 1 % point of the standard normal: the interval's bound at 98 % two-sided.
const Z_CONFIDENCE = 2.3263478740408408;

/**
 * `asc` (ascending) without its outliers, as a view of the same memory. A cohort whose
 * quartiles coincide (a metric at 0 most of the time) has no fence to speak of: kept whole.
 */
export function withoutOutliers(asc: Float64Array): Float64Array {
  if (asc.length < 4) return asc;
  const q1 = quantile(asc, 0.25);
  const q3 = quantile(asc, 0.75);
  const iqr = q3 - q1;
  if (!(iqr > 0)) return asc;
  const lo = q1 - IQR_FENCE * iqr;
  const hi = q3 + IQR_FENCE * iqr;
  let start = 0;
  let end = asc.length;
  while (start < end && asc[start]! < lo) start++;
  while (end > start && asc[end - 1]! > hi) end--;
  return asc.subarray(start, end);
}

/** Mann–Whitney U of (canary − d) against baseline, both ascending: pairs above, ties as ½. O(n1 + n2). */
function uShifted(canary: Float64Array, baseline: Float64Array, d: number): number {
  let below = 0;
  let atOrBelow = 0;
  let u = 0;
  for (let i = 0; i < canary.length; i++) {
    const x = canary[i]! - d;
    while (below < baseline.length && baseline[below]! < x) below++;
    if (atOrBelow < below) atOrBelow = below;
    while (atOrBelow < baseline.length && baseline[atOrBelow]! <= x) atOrBelow++;
    u += below + (atOrBelow - below) / 2;
  }
  return u;
}

/**
 * The smallest shift d with U(canary − d, baseline) ≤ target, by bisection: U falls as d
 * grows, from n1·n2 below the smallest difference to 0 above the largest. Bisection over the
 * shift rather than a sort of all n1·n2 differences keeps it O((n1 + n2) · 64) for cohorts
 * of any size.
 */
function shiftWhereU(canary: Float64Array, baseline: Float64Array, target: number): number {
  let lo = canary[0]! - baseline[baseline.length - 1]!;
  let hi = canary[canary.length - 1]! - baseline[0]!;
  for (let i = 0; i < 64 && hi > lo; i++) {
    const mid = lo + (hi - lo) / 2;
    if (mid === lo || mid === hi) break;
    if (uShifted(canary, baseline, mid) <= target) hi = mid;
    else lo = mid;
  }
  return hi;
}

export interface Shift {
  /** Hodges–Lehmann estimate of how much higher the canary is, in the metric's unit. */
  estimate: number;
  /** Lower and upper bounds of its CONFIDENCE interval. */
  low: number;
  high: number;
}

/** Hodges–Lehmann shift of ascending `canary` over ascending `baseline` with its 98 % interval; NaNs when either is empty. */
export function hodgesLehmann(canary: Float64Array, baseline: Float64Array): Shift {
  const n1 = canary.length;
  const n2 = baseline.length;
  if (n1 === 0 || n2 === 0) return { estimate: Number.NaN, low: Number.NaN, high: Number.NaN };
  const half = (n1 * n2) / 2;
  const sd = Math.sqrt((n1 * n2 * (n1 + n2 + 1)) / 12);
  return {
    estimate: shiftWhereU(canary, baseline, half),
    low: shiftWhereU(canary, baseline, half + Z_CONFIDENCE * sd),
    high: shiftWhereU(canary, baseline, half - Z_CONFIDENCE * sd),
  };
}
