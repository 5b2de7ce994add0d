import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AnalysisMethod, MetricResult, Verdict, type Metric } from '../../proto/gen/bpfleet/v1/rollout.js';
import { ALPHA, combine, judgeMetric, KAYENTA_ALPHA, METHOD_NAMES } from './judge.js';
import { mannWhitneyGreater } from './mann-whitney.js';

const dropRate = (max: number, maxIncrease: number): Metric => ({ name: 'drop_rate', max, maxIncrease });
const V = Verdict;
const MW = AnalysisMethod.ANALYSIS_METHOD_MANN_WHITNEY;

describe('judgeMetric', () => {
  it('is inconclusive while the canary has fewer than minSamples', () => {
    const r = judgeMetric(dropRate(0.05, 0.02), { canary: [0.9, 0.9], baseline: [0, 0, 0], baselineExpected: true }, 3, MW);
    assert.equal(r.verdict, V.VERDICT_INCONCLUSIVE, 'even a terrible value is not judged on too few samples');
    assert.equal(r.reason, 'canary has 2 of 3 samples needed');
    assert.equal(r.canarySamples, 2);
    assert.equal(r.baselineSamples, 3);
  });

  it('an empty canary is inconclusive, never a pass', () => {
    const r = judgeMetric(dropRate(0.05, 0), { canary: [], baseline: [], baselineExpected: false }, 1, MW);
    assert.equal(r.verdict, V.VERDICT_INCONCLUSIVE);
  });

  it('fails on the absolute limit from the canary alone, with no baseline needed', () => {
    const r = judgeMetric(dropRate(0.05, 0), { canary: [0.05, 0.1, 0.15], baseline: [], baselineExpected: true }, 3, MW);
    assert.equal(r.verdict, V.VERDICT_FAIL);
    assert.ok(Math.abs(r.canary - 0.1) < 1e-12, 'the mean of the canary samples');
    assert.equal(r.reason, 'canary 0.1 is above the limit 0.05');
  });

  it('passes at exactly the absolute limit: only a value above it fails', () => {
    // Binary-exact values, so the mean is exactly the limit.
    const r = judgeMetric(dropRate(0.25, 0), { canary: [0.25, 0.125, 0.375], baseline: [], baselineExpected: false }, 3, MW);
    assert.equal(r.canary, 0.25);
    assert.equal(r.verdict, V.VERDICT_PASS);
  });

  // Issue 11 kind 5, "evidence that is not evidence": the same for every method.
  for (const [name, method] of METHOD_NAMES) {
    it(`max 0 means no absolute limit: with no baseline either, nothing can pass (${name})`, () => {
      const r = judgeMetric(dropRate(0, 0), { canary: [1, 1, 1], baseline: [], baselineExpected: false }, 3, method);
      assert.equal(r.verdict, V.VERDICT_INCONCLUSIVE);
      assert.equal(r.reason, 'canary 1: no baseline hosts and no absolute limit (max) to judge it by');
    });

    it(`no sample is no evidence even with minSamples 0, zero traffic (${name})`, () => {
      const r = judgeMetric(dropRate(0.05, 0), { canary: [], baseline: [], baselineExpected: false }, 0, method);
      assert.equal(r.verdict, V.VERDICT_INCONCLUSIVE);
      assert.equal(r.reason, 'canary has 0 of 1 samples needed');
    });

    it(`a metric that is not a number never passes (${name})`, () => {
      for (const canary of [[NaN, 0, 0], [Infinity, 0, 0]]) {
        const r = judgeMetric(dropRate(0.05, 0.02), { canary, baseline: [0, 0, 0], baselineExpected: true }, 3, method);
        assert.equal(r.verdict, V.VERDICT_INCONCLUSIVE, String(canary));
        assert.match(r.reason, /not a number, no evidence/);
      }
    });

    it(`a relative limit with an empty baseline is inconclusive even with minSamples 0 (${name})`, () => {
      const r = judgeMetric(dropRate(0, 0.02), { canary: [0.01, 0.01, 0.01], baseline: [], baselineExpected: true }, 0, method);
      assert.equal(r.verdict, V.VERDICT_INCONCLUSIVE);
      assert.equal(r.reason, 'baseline has 0 of 1 samples needed');
    });
  }

  it('a relative limit with a baseline expected but missing is inconclusive', () => {
    const r = judgeMetric(dropRate(0, 0.02), { canary: [0, 0, 0], baseline: [0], baselineExpected: true }, 3, MW);
    assert.equal(r.verdict, V.VERDICT_INCONCLUSIVE);
    assert.equal(r.reason, 'baseline has 1 of 3 samples needed');
  });

  it('a relative limit alone cannot pass once no baseline host is left', () => {
    const r = judgeMetric(dropRate(0, 0.02), { canary: [0.5, 0.5, 0.5], baseline: [], baselineExpected: false }, 3, MW);
    assert.equal(r.verdict, V.VERDICT_INCONCLUSIVE);
  });

  it('with no baseline host left, the absolute limit judges the canary alone', () => {
    const r = judgeMetric(dropRate(0.05, 0.02), { canary: [0.01, 0.01, 0.01], baseline: [], baselineExpected: false }, 3, MW);
    assert.equal(r.verdict, V.VERDICT_PASS);
    assert.equal(r.reason, 'canary 0.01 (no baseline hosts left)');
  });

  it('fails a significant increase above maxIncrease', () => {
    const canary = [0.2, 0.21, 0.22, 0.23, 0.24, 0.25];
    const baseline = [0, 0.01, 0.0, 0.02, 0.01, 0];
    const r = judgeMetric(dropRate(0, 0.05), { canary, baseline, baselineExpected: true }, 3, MW);
    assert.equal(r.verdict, V.VERDICT_FAIL);
    const p = mannWhitneyGreater(canary, baseline).pValue;
    assert.ok(p < ALPHA);
    assert.match(r.reason, /^canary 0\.225 vs baseline 0\.00667: \+0\.218 exceeds \+0\.05 \(Mann-Whitney p=0\.00\d\d\)$/);
  });

  it('holds an increase above maxIncrease that is not significant: noise cannot fail a rollout', () => {
    // One outlier lifts the canary mean by 0.3 but the ranks say nothing.
    const canary = [0, 0, 0, 0, 1.5];
    const baseline = [0, 0, 0, 0, 0];
    const r = judgeMetric(dropRate(0, 0.05), { canary, baseline, baselineExpected: true }, 3, MW);
    assert.ok(mannWhitneyGreater(canary, baseline).pValue >= ALPHA);
    assert.equal(r.verdict, V.VERDICT_INCONCLUSIVE);
    assert.match(r.reason, /higher but not significant yet \(p=0\.\d{4}\)/);
  });

  it('passes a significant increase that stays within maxIncrease', () => {
    const canary = [0.011, 0.012, 0.013, 0.014, 0.015];
    const baseline = [0.001, 0.002, 0.003, 0.004, 0.005];
    assert.ok(mannWhitneyGreater(canary, baseline).pValue < ALPHA, 'significant, but small');
    const r = judgeMetric(dropRate(0, 0.05), { canary, baseline, baselineExpected: true }, 3, MW);
    assert.equal(r.verdict, V.VERDICT_PASS);
    assert.match(r.reason, /^canary 0\.013 vs baseline 0\.003$/);
  });

  it('passes a canary that is better than the baseline', () => {
    const r = judgeMetric(dropRate(0, 0.01), { canary: [0, 0, 0], baseline: [0.5, 0.6, 0.7], baselineExpected: true }, 3, MW);
    assert.equal(r.verdict, V.VERDICT_PASS);
    assert.equal(r.baseline, 0.6);
  });

  it('checks the absolute limit before the relative one', () => {
    const r = judgeMetric(dropRate(0.1, 0.05), { canary: [0.5, 0.5, 0.5], baseline: [], baselineExpected: true }, 3, MW);
    assert.equal(r.verdict, V.VERDICT_FAIL);
    assert.match(r.reason, /above the limit/);
  });
});

describe('combine', () => {
  const result = (metric: string, verdict: Verdict): MetricResult =>
    MetricResult.fromPartial({ metric, verdict, reason: `${metric} says ${verdict}`, canarySamples: 3, baselineSamples: 3 });

  it('the worst verdict wins and its reason is the summary', () => {
    const run = combine(2, [result('a', V.VERDICT_PASS), result('b', V.VERDICT_INCONCLUSIVE), result('c', V.VERDICT_FAIL)], '2026-01-01T00:00:00.000Z');
    assert.equal(run.verdict, V.VERDICT_FAIL);
    assert.equal(run.summary, `c: c says ${V.VERDICT_FAIL}`);
    assert.equal(run.step, 2);
    assert.equal(run.at, '2026-01-01T00:00:00.000Z');
    assert.equal(run.metrics.length, 3);
  });

  it('inconclusive beats pass', () => {
    const run = combine(0, [result('a', V.VERDICT_PASS), result('b', V.VERDICT_INCONCLUSIVE)], '');
    assert.equal(run.verdict, V.VERDICT_INCONCLUSIVE);
    assert.match(run.summary, /^b: /);
  });

  it('passes only when every metric passes', () => {
    assert.equal(combine(0, [result('a', V.VERDICT_PASS), result('b', V.VERDICT_PASS)], '').verdict, V.VERDICT_PASS);
  });

  it('no metrics is no evidence: inconclusive', () => {
    const run = combine(0, [], '');
    assert.equal(run.verdict, V.VERDICT_INCONCLUSIVE);
    assert.equal(run.summary, 'no metrics');
  });
});

describe('judgeMetric by method', () => {
  const canary = [0.2, 0.21, 0.22, 0.23, 0.24, 0.25];
  const baseline = [0, 0.01, 0.0, 0.02, 0.01, 0];

  it('mann-whitney explains itself: summaries, test, effect, limit, p-value and alpha', () => {
    const r = judgeMetric(dropRate(0, 0.05), { canary, baseline, baselineExpected: true }, 3, MW);
    assert.equal(r.test, 'mann-whitney');
    assert.equal(r.limit, 0.05);
    assert.ok(Math.abs(r.effect - (0.225 - 0.04 / 6)) < 1e-12);
    assert.equal(r.pValue, mannWhitneyGreater(canary, baseline).pValue);
    assert.equal(r.alpha, ALPHA);
    assert.deepEqual(r.canarySummary && { n: r.canarySummary.samples, median: r.canarySummary.median }, { n: 6, median: 0.225 });
    assert.ok(Math.abs(r.canarySummary!.iqr - 0.025) < 1e-12);
    assert.equal(r.baselineSummary!.median, 0.005);
  });

  it('threshold fails on the difference of means alone, even with no significance', () => {
    const r = judgeMetric(dropRate(0, 0.05), { canary: [0, 0, 0, 0, 1.5], baseline: [0, 0, 0, 0, 0], baselineExpected: true }, 3, AnalysisMethod.ANALYSIS_METHOD_THRESHOLD);
    assert.equal(r.verdict, V.VERDICT_FAIL);
    assert.equal(r.test, 'threshold');
    assert.equal(r.alpha, 0);
  });

  it('a spec without a method gets paired, which compares cohorts (kayenta) without samples from before the step', () => {
    const r = judgeMetric(dropRate(0, 0.05), { canary, baseline, baselineExpected: true }, 3);
    assert.equal(r.test, 'kayenta');
    assert.match(r.reason, /no canary host has samples from before the step, compared as cohorts \(kayenta\)/);
  });

  it('kayenta sets the outlier aside that would lift the mean, and judges the shift', () => {
    const c = [0.01, 0.012, 0.011, 0.013, 0.009, 0.01, 0.011, 0.9];
    const b = [0.01, 0.011, 0.012, 0.009, 0.01, 0.011, 0.013, 0.01];
    const r = judgeMetric(dropRate(0, 0.05), { canary: c, baseline: b, baselineExpected: true }, 3, AnalysisMethod.ANALYSIS_METHOD_KAYENTA);
    assert.equal(r.verdict, V.VERDICT_PASS);
    assert.equal(r.canarySummary!.outliers, 1);
    assert.equal(r.test, 'kayenta');
    assert.ok(Math.abs(r.effect) < 0.002);
    const mw = judgeMetric(dropRate(0, 0.05), { canary: c, baseline: b, baselineExpected: true }, 3, MW);
    assert.notEqual(mw.verdict, V.VERDICT_PASS, 'the mean with the outlier is above the limit');
  });

  it('kayenta fails a significant shift above the limit', () => {
    const r = judgeMetric(dropRate(0, 0.05), { canary, baseline, baselineExpected: true }, 3, AnalysisMethod.ANALYSIS_METHOD_KAYENTA);
    assert.equal(r.verdict, V.VERDICT_FAIL);
    assert.ok(r.pValue < KAYENTA_ALPHA);
    assert.match(r.reason, /shift \+0\.2\d* \(98% interval \+0\.\d+\.\.\+0\.\d+\) exceeds \+0\.05$/);
  });

  it('paired: a change that is not a number never passes (it compares false with every limit)', () => {
    const changes = { canary: [NaN], baseline: [0, 0, 0], own: { before: [0, 0, 0], during: [0, 0, 0] }, unpairedCanary: 0 };
    const r = judgeMetric(dropRate(0, 0.05), { canary: [0, 0, 0], baseline: [0, 0, 0], baselineExpected: true, changes }, 3, AnalysisMethod.ANALYSIS_METHOD_PAIRED);
    assert.equal(r.verdict, V.VERDICT_INCONCLUSIVE);
    assert.match(r.reason, /not a number, no evidence/);
    const before = judgeMetric(dropRate(0, 0.05), { canary: [0, 0, 0], baseline: [0, 0, 0], baselineExpected: true, changes: { ...changes, canary: [0], own: { before: [Infinity, 0, 0], during: [0, 0, 0] } } }, 3, AnalysisMethod.ANALYSIS_METHOD_PAIRED);
    assert.equal(before.verdict, V.VERDICT_INCONCLUSIVE, 'nor a sample from before the step');
  });

  it('paired: with changes but no baseline host and no max, the canary alone cannot pass', () => {
    const changes = { canary: [0], baseline: [0], own: { before: [0, 0, 0], during: [0, 0, 0] }, unpairedCanary: 0 };
    const r = judgeMetric(dropRate(0, 0.05), { canary: [0, 0, 0], baseline: [], baselineExpected: false, changes }, 3, AnalysisMethod.ANALYSIS_METHOD_PAIRED);
    assert.equal(r.verdict, V.VERDICT_INCONCLUSIVE);
    assert.match(r.reason, /no baseline hosts and no absolute limit/);
  });

  it('kayenta: an Infinity its outlier fence would set aside still never passes', () => {
    const c = [0.01, 0.012, 0.011, 0.013, 0.009, 0.01, 0.011, Infinity];
    const b = [0.01, 0.011, 0.012, 0.009, 0.01, 0.011, 0.013, 0.01];
    const r = judgeMetric(dropRate(0, 0.05), { canary: c, baseline: b, baselineExpected: true }, 3, AnalysisMethod.ANALYSIS_METHOD_KAYENTA);
    assert.equal(r.verdict, V.VERDICT_INCONCLUSIVE);
    assert.match(r.reason, /not a number, no evidence/);
  });
});
