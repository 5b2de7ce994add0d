import { Verdict, type AnalysisRun, type Metric, type MetricResult } from '../../proto/gen/bpfleet/v1/rollout.js';
import { mannWhitneyGreater } from './mann-whitney.js';

export interface CohortSamples {
  canary: number[];
  baseline: number[];
  /** False when every selected host is on the new version: no baseline can exist. */
  baselineExpected: boolean;
}

/** Significance needed before a relative increase counts as real. */
export const ALPHA = 0.05;

const mean = (xs: readonly number[]): number => (xs.length ? xs.reduce((s, x) => s + x, 0) / xs.length : 0);

/**
 * Verdict for one metric. Absolute limits (`max`) judge the canary alone; relative limits
 * (`maxIncrease`) need the baseline and a significant Mann–Whitney difference, so noise
 * cannot fail a rollout and a lack of evidence can never pass one.
 */
export function judgeMetric(metric: Metric, samples: CohortSamples, minSamples: number): MetricResult {
  const canary = mean(samples.canary);
  const baseline = mean(samples.baseline);
  const base = {
    metric: metric.name,
    canary,
    baseline,
    canarySamples: samples.canary.length,
    baselineSamples: samples.baseline.length,
  };
  // No sample, no evidence, whatever minSamples says: zero traffic is never a pass.
  const needed = Math.max(1, minSamples);
  if (samples.canary.length < needed) {
    return { ...base, verdict: Verdict.VERDICT_INCONCLUSIVE, reason: `canary has ${samples.canary.length} of ${needed} samples needed` };
  }
  if (!Number.isFinite(canary) || (samples.baselineExpected && samples.baseline.length && !Number.isFinite(baseline))) {
    return { ...base, verdict: Verdict.VERDICT_INCONCLUSIVE, reason: `canary ${canary} vs baseline ${baseline}: not a number, no evidence` };
  }
  if (metric.max > 0 && canary > metric.max) {
    return { ...base, verdict: Verdict.VERDICT_FAIL, reason: `canary ${fmt(canary)} is above the limit ${fmt(metric.max)}` };
  }
  if (!samples.baselineExpected && !(metric.max > 0)) {
    // Only an absolute limit judges a canary alone: a relative one has nothing to compare to.
    return { ...base, verdict: Verdict.VERDICT_INCONCLUSIVE, reason: `canary ${fmt(canary)}: no baseline hosts and no absolute limit (max) to judge it by` };
  }
  if (metric.maxIncrease > 0 && samples.baselineExpected) {
    if (samples.baseline.length < minSamples) {
      return { ...base, verdict: Verdict.VERDICT_INCONCLUSIVE, reason: `baseline has ${samples.baseline.length} of ${minSamples} samples needed` };
    }
    const increase = canary - baseline;
    if (increase > metric.maxIncrease) {
      const { pValue } = mannWhitneyGreater(samples.canary, samples.baseline);
      if (pValue < ALPHA) {
        return { ...base, verdict: Verdict.VERDICT_FAIL, reason: `canary ${fmt(canary)} vs baseline ${fmt(baseline)}: +${fmt(increase)} exceeds +${fmt(metric.maxIncrease)} (Mann-Whitney p=${pValue.toFixed(4)})` };
      }
      return { ...base, verdict: Verdict.VERDICT_INCONCLUSIVE, reason: `canary ${fmt(canary)} vs baseline ${fmt(baseline)}: higher but not significant yet (p=${pValue.toFixed(4)})` };
    }
  }
  return { ...base, verdict: Verdict.VERDICT_PASS, reason: samples.baselineExpected ? `canary ${fmt(canary)} vs baseline ${fmt(baseline)}` : `canary ${fmt(canary)} (no baseline hosts left)` };
}

/** The worst metric wins: any fail fails, else any inconclusive holds. */
export function combine(step: number, results: MetricResult[], at: string): AnalysisRun {
  const verdict = results.some((r) => r.verdict === Verdict.VERDICT_FAIL)
    ? Verdict.VERDICT_FAIL
    : results.some((r) => r.verdict === Verdict.VERDICT_INCONCLUSIVE) || results.length === 0
      ? Verdict.VERDICT_INCONCLUSIVE
      : Verdict.VERDICT_PASS;
  const worst = results.find((r) => r.verdict === verdict);
  const summary = worst ? `${worst.metric}: ${worst.reason}` : 'no metrics';
  return { step, verdict, metrics: results, at, summary, staleHosts: [] };
}

function fmt(x: number): string {
  return Math.abs(x) >= 100 ? x.toFixed(0) : Number(x.toPrecision(3)).toString();
}
