import { AnalysisMethod, Verdict, type AnalysisRun, type Metric, type MetricResult } from '../../proto/gen/bpfleet/v1/rollout.js';
import { CONFIDENCE, hodgesLehmann, withoutOutliers } from './kayenta.js';
import { mannWhitneyGreater } from './mann-whitney.js';
import { comparePaired, PAIRED_ALPHA, PAIRED_ALPHA_HOSTS, type OwnSamples } from './paired.js';
import { mean, sorted, summarize } from './summary.js';

export interface CohortSamples {
  /** Samples during the step. */
  canary: number[];
  baseline: number[];
  /** False when every selected host is on the new version: no baseline can exist. */
  baselineExpected: boolean;
  /**
   * For the paired method: each host's change since before the step (paired.ts hostChange),
   * for the hosts that have samples in both windows, and how many canary hosts with samples
   * during the step had none before it (a new host, a host updated in an earlier step).
   */
  changes?: { canary: number[]; baseline: number[]; own: OwnSamples; unpairedCanary: number };
}

/** Significance needed before a relative increase counts as real (mann-whitney). */
export const ALPHA = 0.05;
/** One-sided significance of the kayenta method: the lower bound of its 98 % interval above 0. */
export const KAYENTA_ALPHA = (1 - CONFIDENCE) / 2;

/**
 * The method a spec without one gets, and a stored spec from before methods existed
 * (ANALYSIS_METHOD_UNSPECIFIED). Chosen from bench/results/analysis.json (docs/ANALYSIS.md):
 * the only method under 1 % false rollbacks on A/A steps, with 1 canary and with 5 %
 * canaries (the cohort methods: 7–31 %, from host-to-host spread), while catching ≥ 95 % of
 * +1 point drop-rate increases and of +20 % run-time regressions.
 */
export const DEFAULT_METHOD = AnalysisMethod.ANALYSIS_METHOD_PAIRED;

/** The spec's words for each method, in the order docs and error messages list them. */
export const METHOD_NAMES: ReadonlyMap<string, AnalysisMethod> = new Map([
  ['mann-whitney', AnalysisMethod.ANALYSIS_METHOD_MANN_WHITNEY],
  ['kayenta', AnalysisMethod.ANALYSIS_METHOD_KAYENTA],
  ['threshold', AnalysisMethod.ANALYSIS_METHOD_THRESHOLD],
  ['paired', AnalysisMethod.ANALYSIS_METHOD_PAIRED],
]);

/** The spec's word for `method` (UNSPECIFIED reads as DEFAULT_METHOD). */
export function methodName(method: AnalysisMethod): string {
  const m = method === AnalysisMethod.ANALYSIS_METHOD_UNSPECIFIED ? DEFAULT_METHOD : method;
  for (const [name, value] of METHOD_NAMES) if (value === m) return name;
  return 'unknown';
}

/**
 * Verdict for one metric. Absolute limits (`max`) judge the canary alone; relative limits
 * (`maxIncrease`) need the baseline, and how the two cohorts are compared is `method`:
 * - mann-whitney: the difference of means above the limit and a one-sided Mann–Whitney p
 *   below ALPHA;
 * - kayenta: outliers set aside, then the Hodges–Lehmann shift above the limit and the
 *   lower bound of its 98 % interval above 0 (kayenta.ts);
 * - threshold: the difference of means above the limit, no test;
 * - paired: each host's change since before the step, canary hosts' against baseline hosts'
 *   (paired.ts): the Hodges–Lehmann shift of the changes above the limit, a one-sided
 *   Mann–Whitney p below PAIRED_ALPHA against the canary hosts' own samples from before the
 *   step, and one below PAIRED_ALPHA_HOSTS over hosts (the result's pValue is the former).
 *   Without a canary or a baseline host that has samples from before the step, the kayenta
 *   comparison, and the reason says so.
 * A relative increase above the limit that is not significant is inconclusive, so noise
 * cannot fail a rollout and a lack of evidence can never pass one. Whatever the method, what
 * is not evidence is inconclusive, never a pass: fewer than max(1, minSamples) samples in
 * either cohort compared, a sample that is not a finite number, and a canary with neither a
 * baseline nor an absolute `max` to judge it by. The result carries both
 * cohorts' summaries and what was compared with what (MetricResult in rollout.proto).
 */
export function judgeMetric(metric: Metric, samples: CohortSamples, minSamples: number, requested: AnalysisMethod = DEFAULT_METHOD): MetricResult {
  const pairs = samples.changes;
  const unpairable = requested !== AnalysisMethod.ANALYSIS_METHOD_PAIRED ? ''
    : !pairs?.canary.length ? 'no canary host has samples from before the step'
      : !pairs.baseline.length ? 'no baseline host has samples from before the step' : '';
  const method = unpairable ? AnalysisMethod.ANALYSIS_METHOD_KAYENTA : requested;
  const fallback = unpairable ? `${unpairable}, compared as cohorts (kayenta): ` : '';
  const kayenta = method === AnalysisMethod.ANALYSIS_METHOD_KAYENTA;
  const rawCanary = sorted(samples.canary);
  const rawBaseline = sorted(samples.baseline);
  const canaryKept = kayenta ? withoutOutliers(rawCanary) : rawCanary;
  const baselineKept = kayenta ? withoutOutliers(rawBaseline) : rawBaseline;
  const canary = mean(canaryKept);
  const baseline = mean(baselineKept);
  const base: MetricResult = {
    metric: metric.name,
    canary,
    baseline,
    canarySamples: samples.canary.length,
    baselineSamples: samples.baseline.length,
    canarySummary: summarize(canaryKept, rawCanary.length - canaryKept.length),
    baselineSummary: summarize(baselineKept, rawBaseline.length - baselineKept.length),
    verdict: Verdict.VERDICT_PASS,
    reason: '',
    test: '',
    effect: 0,
    limit: 0,
    pValue: 1,
    alpha: 0,
  };
  const result = (verdict: Verdict, reason: string, explain: Partial<MetricResult> = {}): MetricResult => ({ ...base, ...explain, verdict, reason });
  // No sample, no evidence, whatever minSamples says: zero traffic is never a pass.
  const needed = Math.max(1, minSamples);
  if (samples.canary.length < needed) {
    return result(Verdict.VERDICT_INCONCLUSIVE, `canary has ${samples.canary.length} of ${needed} samples needed`, { test: 'samples', effect: samples.canary.length, limit: needed });
  }
  // Checked on the raw samples: kayenta's fence could set an Infinity aside, and a NaN in the
  // paired method's changes compares false with every limit.
  const pairedInUse = method === AnalysisMethod.ANALYSIS_METHOD_PAIRED && pairs;
  if (!allFinite(samples.canary) || (samples.baselineExpected && !allFinite(samples.baseline))
    || (pairedInUse && !(allFinite(pairs.canary) && allFinite(pairs.baseline) && allFinite(pairs.own.before) && allFinite(pairs.own.during)))) {
    return result(Verdict.VERDICT_INCONCLUSIVE, `canary ${canary} vs baseline ${baseline}: not a number, no evidence`);
  }
  if (metric.max > 0 && canary > metric.max) {
    return result(Verdict.VERDICT_FAIL, `canary ${fmt(canary)} is above the limit ${fmt(metric.max)}`, { test: 'max', effect: canary, limit: metric.max });
  }
  if (!samples.baselineExpected && !(metric.max > 0)) {
    // Only an absolute limit judges a canary alone: a relative one has nothing to compare to.
    return result(Verdict.VERDICT_INCONCLUSIVE, `canary ${fmt(canary)}: no baseline hosts and no absolute limit (max) to judge it by`);
  }
  if (!samples.baselineExpected && !(metric.max > 0)) {
    // Only an absolute limit judges a canary alone: a relative one has nothing to compare to.
    return { ...base, verdict: Verdict.VERDICT_INCONCLUSIVE, reason: `canary ${fmt(canary)}: no baseline hosts and no absolute limit (max) to judge it by` };
  }
  if (metric.maxIncrease > 0 && samples.baselineExpected) {
    if (samples.baseline.length < needed) {
      return result(Verdict.VERDICT_INCONCLUSIVE, `baseline has ${samples.baseline.length} of ${needed} samples needed`, { test: 'samples', effect: samples.baseline.length, limit: needed });
    }
    const limit = metric.maxIncrease;
    const vs = `canary ${fmt(canary)} vs baseline ${fmt(baseline)}`;
    if (method === AnalysisMethod.ANALYSIS_METHOD_THRESHOLD) {
      const effect = canary - baseline;
      const explain = { test: 'threshold', effect, limit };
      if (effect > limit) return result(Verdict.VERDICT_FAIL, `${vs}: +${fmt(effect)} exceeds +${fmt(limit)}`, explain);
      return result(Verdict.VERDICT_PASS, vs, explain);
    }
    if (method === AnalysisMethod.ANALYSIS_METHOD_PAIRED && pairs) {
      const c = comparePaired(pairs.canary, pairs.baseline, pairs.own);
      const explain = {
        test: 'paired', effect: c.shift, limit, pValue: c.pOwn, alpha: PAIRED_ALPHA,
        canarySummary: summarize(c.canary), baselineSummary: summarize(c.baseline),
      };
      const left = pairs.unpairedCanary ? `; ${pairs.unpairedCanary} canary host(s) without samples from before the step left out` : '';
      const text = `change since before the step: canary hosts ${signed(explain.canarySummary.median)} (median of ${c.canary.length}) vs baseline hosts ${signed(explain.baselineSummary.median)} (median of ${c.baseline.length}), shift ${signed(c.shift)}${left}`;
      if (c.shift > limit) {
        const overHosts = c.hostsTestable ? `p=${c.pHosts.toFixed(4)} (needs < ${PAIRED_ALPHA_HOSTS})` : 'not tested (too few hosts to reach significance)';
        const ps = `Mann-Whitney against their own history p=${c.pOwn.toFixed(4)} (needs < ${PAIRED_ALPHA}), over hosts ${overHosts}`;
        if (c.pOwn < PAIRED_ALPHA && (!c.hostsTestable || c.pHosts < PAIRED_ALPHA_HOSTS)) return result(Verdict.VERDICT_FAIL, `${text} exceeds +${fmt(limit)} (${ps})`, explain);
        return result(Verdict.VERDICT_INCONCLUSIVE, `${text} above +${fmt(limit)} but not significant yet (${ps})`, explain);
      }
      return result(Verdict.VERDICT_PASS, text, explain);
    }
    if (kayenta) {
      const shift = hodgesLehmann(canaryKept, baselineKept);
      const { pValue } = mannWhitneyGreater(canaryKept, baselineKept);
      const explain = { test: 'kayenta', effect: shift.estimate, limit, pValue, alpha: KAYENTA_ALPHA };
      const shiftText = `${fallback}shift ${signed(shift.estimate)} (98% interval ${signed(shift.low)}..${signed(shift.high)})`;
      if (shift.estimate > limit) {
        if (pValue < KAYENTA_ALPHA) return result(Verdict.VERDICT_FAIL, `${vs}: ${shiftText} exceeds +${fmt(limit)}`, explain);
        return result(Verdict.VERDICT_INCONCLUSIVE, `${vs}: ${shiftText} above +${fmt(limit)} but not significant yet (p=${pValue.toFixed(4)})`, explain);
      }
      return result(Verdict.VERDICT_PASS, `${vs}: ${shiftText}`, explain);
    }
    const effect = canary - baseline;
    const { pValue } = mannWhitneyGreater(canaryKept, baselineKept);
    const explain = { test: 'mann-whitney', effect, limit, pValue, alpha: ALPHA };
    if (effect > limit) {
      if (pValue < ALPHA) return result(Verdict.VERDICT_FAIL, `${vs}: +${fmt(effect)} exceeds +${fmt(limit)} (Mann-Whitney p=${pValue.toFixed(4)})`, explain);
      return result(Verdict.VERDICT_INCONCLUSIVE, `${vs}: higher but not significant yet (p=${pValue.toFixed(4)})`, explain);
    }
    return result(Verdict.VERDICT_PASS, vs, explain);
  }
  return result(Verdict.VERDICT_PASS, samples.baselineExpected ? `canary ${fmt(canary)} vs baseline ${fmt(baseline)}` : `canary ${fmt(canary)} (no baseline hosts left)`,
    metric.max > 0 ? { test: 'max', effect: canary, limit: metric.max } : {});
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

function allFinite(xs: readonly number[]): boolean {
  return xs.every(Number.isFinite);
}

function signed(x: number): string {
  return x < 0 ? fmt(x) : `+${fmt(x)}`;
}
