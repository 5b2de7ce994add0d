/**
 * The "paired" method: a difference in differences. Each host is compared with itself — its
 * samples during the step against its own samples from just before it, on the old version —
 * which takes the host-to-host spread (one host's base drop rate or run time above another's)
 * out of the comparison; the canary hosts' changes are then compared with the baseline hosts'
 * changes over the same two windows, which takes out what moved every host alike (diurnal
 * load, a traffic shift). The unit of the test is the host, not the sample, so the samples of
 * one host, which are not independent, are not counted as independent evidence.
 * bench/results/analysis.json measures it against the cohort methods (docs/ANALYSIS.md).
 */
import { hodgesLehmann } from './kayenta.js';
import { mannWhitneyGreater } from './mann-whitney.js';
import { quantile, sorted } from './summary.js';

/**
 * How far before the step's start the method reads each host's reports: the "before" window.
 * 30 reports at the agent's default report interval (1 s); the telemetry store keeps 10 min.
 */
export const PRE_WINDOW_MS = 30_000;
/** One-sided significance of the Mann–Whitney test over hosts. */
export const PAIRED_ALPHA = 0.05;

/**
 * One host's change of a metric: the median of its samples during the step minus the median
 * of its samples before it, in the metric's unit; null when either window has none. Medians,
 * so that a burst in one interval or a lost report does not move the host's change.
 */
export function hostChange(before: readonly number[], during: readonly number[]): number | null {
  if (before.length === 0 || during.length === 0) return null;
  return quantile(sorted(during), 0.5) - quantile(sorted(before), 0.5);
}

export interface PairedComparison {
  /** Canary and baseline hosts' changes, ascending. */
  canary: Float64Array;
  baseline: Float64Array;
  /** Hodges–Lehmann shift of the canary hosts' changes over the baseline hosts'. */
  shift: number;
  /** One-sided Mann–Whitney p-value, hosts as units: "canary hosts changed more". */
  pValue: number;
}

/**
 * Canary hosts' changes against baseline hosts' changes (both non-empty). No outlier fence:
 * the ranks already bound what one noisy host can do, and a fence on the baseline would make
 * a noisy canary host look like a regression.
 */
export function comparePaired(canaryChanges: readonly number[], baselineChanges: readonly number[]): PairedComparison {
  const canary = sorted(canaryChanges);
  const baseline = sorted(baselineChanges);
  return { canary, baseline, shift: hodgesLehmann(canary, baseline).estimate, pValue: mannWhitneyGreater(canary, baseline).pValue };
}
