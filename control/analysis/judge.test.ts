import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Verdict, type Metric, type MetricResult } from '../../proto/gen/bpfleet/v1/rollout.js';
import { ALPHA, combine, judgeMetric } from './judge.js';
import { mannWhitneyGreater } from './mann-whitney.js';

const dropRate = (max: number, maxIncrease: number): Metric => ({ name: 'drop_rate', max, maxIncrease });
const V = Verdict;

describe('judgeMetric', () => {
  it('is inconclusive while the canary has fewer than minSamples', () => {
    const r = judgeMetric(dropRate(0.05, 0.02), { canary: [0.9, 0.9], baseline: [0, 0, 0], baselineExpected: true }, 3);
    assert.equal(r.verdict, V.VERDICT_INCONCLUSIVE, 'even a terrible value is not judged on too few samples');
    assert.equal(r.reason, 'canary has 2 of 3 samples needed');
    assert.equal(r.canarySamples, 2);
    assert.equal(r.baselineSamples, 3);
  });

  it('an empty canary is inconclusive, never a pass', () => {
    const r = judgeMetric(dropRate(0.05, 0), { canary: [], baseline: [], baselineExpected: false }, 1);
    assert.equal(r.verdict, V.VERDICT_INCONCLUSIVE);
  });

  it('fails on the absolute limit from the canary alone, with no baseline needed', () => {
    const r = judgeMetric(dropRate(0.05, 0), { canary: [0.05, 0.1, 0.15], baseline: [], baselineExpected: true }, 3);
    assert.equal(r.verdict, V.VERDICT_FAIL);
    assert.ok(Math.abs(r.canary - 0.1) < 1e-12, 'the mean of the canary samples');
    assert.equal(r.reason, 'canary 0.1 is above the limit 0.05');
  });

  it('passes at exactly the absolute limit: only a value above it fails', () => {
    // Binary-exact values, so the mean is exactly the limit.
    const r = judgeMetric(dropRate(0.25, 0), { canary: [0.25, 0.125, 0.375], baseline: [], baselineExpected: false }, 3);
    assert.equal(r.canary, 0.25);
    assert.equal(r.verdict, V.VERDICT_PASS);
  });

  it('max 0 means no absolute limit: with no baseline either, nothing can pass', () => {
    const r = judgeMetric(dropRate(0, 0), { canary: [1, 1, 1], baseline: [], baselineExpected: false }, 3);
    assert.equal(r.verdict, V.VERDICT_INCONCLUSIVE);
    assert.equal(r.reason, 'canary 1: no baseline hosts and no absolute limit (max) to judge it by');
  });

  it('no sample is no evidence even with minSamples 0 (zero traffic)', () => {
    const r = judgeMetric(dropRate(0.05, 0), { canary: [], baseline: [], baselineExpected: false }, 0);
    assert.equal(r.verdict, V.VERDICT_INCONCLUSIVE);
    assert.equal(r.reason, 'canary has 0 of 1 samples needed');
  });

  it('a metric that is not a number never passes', () => {
    for (const canary of [[NaN, 0, 0], [Infinity, 0, 0]]) {
      const r = judgeMetric(dropRate(0.05, 0.02), { canary, baseline: [0, 0, 0], baselineExpected: true }, 3);
      assert.equal(r.verdict, V.VERDICT_INCONCLUSIVE, String(canary));
      assert.match(r.reason, /not a number, no evidence/);
    }
  });

  it('a relative limit with a baseline expected but missing is inconclusive', () => {
    const r = judgeMetric(dropRate(0, 0.02), { canary: [0, 0, 0], baseline: [0], baselineExpected: true }, 3);
    assert.equal(r.verdict, V.VERDICT_INCONCLUSIVE);
    assert.equal(r.reason, 'baseline has 1 of 3 samples needed');
  });

  it('a relative limit alone cannot pass once no baseline host is left', () => {
    const r = judgeMetric(dropRate(0, 0.02), { canary: [0.5, 0.5, 0.5], baseline: [], baselineExpected: false }, 3);
    assert.equal(r.verdict, V.VERDICT_INCONCLUSIVE);
  });

  it('with no baseline host left, the absolute limit judges the canary alone', () => {
    const r = judgeMetric(dropRate(0.05, 0.02), { canary: [0.01, 0.01, 0.01], baseline: [], baselineExpected: false }, 3);
    assert.equal(r.verdict, V.VERDICT_PASS);
    assert.equal(r.reason, 'canary 0.01 (no baseline hosts left)');
  });

  it('fails a significant increase above maxIncrease', () => {
    const canary = [0.2, 0.21, 0.22, 0.23, 0.24, 0.25];
    const baseline = [0, 0.01, 0.0, 0.02, 0.01, 0];
    const r = judgeMetric(dropRate(0, 0.05), { canary, baseline, baselineExpected: true }, 3);
    assert.equal(r.verdict, V.VERDICT_FAIL);
    const p = mannWhitneyGreater(canary, baseline).pValue;
    assert.ok(p < ALPHA);
    assert.match(r.reason, /^canary 0\.225 vs baseline 0\.00667: \+0\.218 exceeds \+0\.05 \(Mann-Whitney p=0\.00\d\d\)$/);
  });

  it('holds an increase above maxIncrease that is not significant: noise cannot fail a rollout', () => {
    // One outlier lifts the canary mean by 0.3 but the ranks say nothing.
    const canary = [0, 0, 0, 0, 1.5];
    const baseline = [0, 0, 0, 0, 0];
    const r = judgeMetric(dropRate(0, 0.05), { canary, baseline, baselineExpected: true }, 3);
    assert.ok(mannWhitneyGreater(canary, baseline).pValue >= ALPHA);
    assert.equal(r.verdict, V.VERDICT_INCONCLUSIVE);
    assert.match(r.reason, /higher but not significant yet \(p=0\.\d{4}\)/);
  });

  it('passes a significant increase that stays within maxIncrease', () => {
    const canary = [0.011, 0.012, 0.013, 0.014, 0.015];
    const baseline = [0.001, 0.002, 0.003, 0.004, 0.005];
    assert.ok(mannWhitneyGreater(canary, baseline).pValue < ALPHA, 'significant, but small');
    const r = judgeMetric(dropRate(0, 0.05), { canary, baseline, baselineExpected: true }, 3);
    assert.equal(r.verdict, V.VERDICT_PASS);
    assert.match(r.reason, /^canary 0\.013 vs baseline 0\.003$/);
  });

  it('passes a canary that is better than the baseline', () => {
    const r = judgeMetric(dropRate(0, 0.01), { canary: [0, 0, 0], baseline: [0.5, 0.6, 0.7], baselineExpected: true }, 3);
    assert.equal(r.verdict, V.VERDICT_PASS);
    assert.equal(r.baseline, 0.6);
  });

  it('checks the absolute limit before the relative one', () => {
    const r = judgeMetric(dropRate(0.1, 0.05), { canary: [0.5, 0.5, 0.5], baseline: [], baselineExpected: true }, 3);
    assert.equal(r.verdict, V.VERDICT_FAIL);
    assert.match(r.reason, /above the limit/);
  });
});

describe('combine', () => {
  const result = (metric: string, verdict: Verdict): MetricResult =>
    ({ metric, verdict, reason: `${metric} says ${verdict}`, canary: 0, baseline: 0, canarySamples: 3, baselineSamples: 3 });

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
