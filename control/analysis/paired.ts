/**
 * The "paired" method: a difference in differences. Each host is compared with itself — its
 * samples during the step against its own samples from just before it, on the old version —
 * which takes the host-to-host spread (one host's base drop rate or run time above another's)
 * out of the comparison; the canary hosts' changes are then compared with the baseline hosts'
 * changes over the same two windows, which takes out what moved every host alike (diurnal
 * load, a traffic shift). A failure needs the shift of the changes above the limit and two
 * tests: one over hosts (the host as the unit, so the samples of one host, which are not
 * independent, do not count as independent evidence) and one of the canary hosts against
 * their own samples from before the step (which knows each host's own noise).
 * bench/results/analysis.json measures it against the cohort methods (docs/ANALYSIS.md).
 */
import { hodgesLehmann } from './kayenta.js';
import { mannWhitneyGreater, smallestPValue } from './mann-whitney.js';
import { quantile, sorted } from './summary.js';

/**
 * How far before the step's start the method reads each host's reports: the "before" window.
 * 30 reports at the agent's default report interval (1 s); the telemetry store keeps 10 min.
 */
export const PRE_WINDOW_MS = 30_000;
/**
 * One-sided significance of the Mann–Whitney test over hosts. 0.05, not lower: with one
 * canary host its p never goes below about 0.042 (mann-whitney.ts smallestPValue), so a lower
 * alpha would never let one canary host fail.
 */
export const PAIRED_ALPHA_HOSTS = 0.05;
/** One-sided significance of the test of the canary hosts against their own history (Kayenta's 98 % two-sided). */
export const PAIRED_ALPHA = 0.01;

/** One host's change of a metric since before the step. */
export interface HostChange {
  /** Median during the step minus median before it, in the metric's unit. */
  change: number;
  /** Median before the step. */
  before: number;
}

/**
 * A host's change from its samples before the step and during it; null when either window
 * has none. Medians, so that a burst in one interval or a lost report does not move it.
 */
export function hostChange(before: readonly number[], during: readonly number[]): HostChange | null {
  if (before.length === 0 || during.length === 0) return null;
  const b = quantile(sorted(before), 0.5);
  return { change: quantile(sorted(during), 0.5) - b, before: b };
}

/** The canary hosts' samples, each centred on its own host's median before the step, pooled. */
export interface OwnSamples {
  before: number[];
  during: number[];
}

export interface PairedComparison {
  /** Canary and baseline hosts' changes, ascending. */
  canary: Float64Array;
  baseline: Float64Array;
  /** Hodges–Lehmann shift of the canary hosts' changes over the baseline hosts'. */
  shift: number;
  /** One-sided Mann–Whitney p, hosts as units: "canary hosts changed more than baseline hosts". */
  pHosts: number;
  /**
   * One-sided Mann–Whitney p, samples as units: "canary hosts' samples during the step, less
   * the baseline hosts' median change, are higher than their own samples before it".
   */
  pOwn: number;
  /**
   * False when there are too few hosts for the test over hosts to reach PAIRED_ALPHA_HOSTS
   * at all (one canary host and fewer than 39 baseline hosts): then the test against the
   * hosts' own history decides alone.
   */
  hostsTestable: boolean;
}

/**
 * Canary hosts' changes against baseline hosts' changes (both non-empty), and the canary
 * hosts against their own history; a failure needs both significant (PAIRED_ALPHA_HOSTS,
 * PAIRED_ALPHA), the first only where it can be (hostsTestable). Two tests because each covers what the other cannot: the
 * test over hosts makes no assumption about the samples of one host but, with one canary
 * host, cannot tell a noisy host from a regression (its smallest p is about 1/baseline
 * hosts); the test against the host's own samples knows the host's own noise. No outlier
 * fence: the ranks already bound what one noisy host can do, and a fence on the baseline would
 * make a noisy canary host look like a regression.
 */
export function comparePaired(canaryChanges: readonly number[], baselineChanges: readonly number[], own: OwnSamples): PairedComparison {
  const canary = sorted(canaryChanges);
  const baseline = sorted(baselineChanges);
  const common = quantile(baseline, 0.5);
  const pHosts = mannWhitneyGreater(canary, baseline).pValue;
  const pOwn = mannWhitneyGreater(own.during.map((v) => v - common), own.before).pValue;
  const hostsTestable = smallestPValue(canary.length, baseline.length) < PAIRED_ALPHA_HOSTS;
  return { canary, baseline, shift: hodgesLehmann(canary, baseline).estimate, pHosts, pOwn, hostsTestable };
}
