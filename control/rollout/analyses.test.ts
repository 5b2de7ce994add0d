import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { codecs } from '../../common/etcd/codec.js';
import { RolloutPhase, Verdict, type AnalysisRun, type MetricResult } from '../../proto/gen/bpfleet/v1/rollout.js';
import { ANALYSES_KEPT, boundedRun, STALE_HOSTS_KEPT, SUMMARY_CHARS } from './analyses.js';
import { analyzer, canaryDone, fleet, step, T0 } from './rollouts.fixture.js';

describe('the analyses a rollout status keeps', () => {
  it('a bake held inconclusive 1000 times keeps the newest 32 and counts the rest', () => {
    const spec = { steps: [{ canary: 1 }, { bake: '1s' }, { percent: 100 }], analysis: { interval: '1s', inconclusiveLimit: 1000, metrics: [{ name: 'drop_rate', max: 0.1 }] } };
    const hosts = fleet(4);
    let r = canaryDone(spec, hosts);
    const a = analyzer(Verdict.VERDICT_INCONCLUSIVE);
    let now = T0 + 1000;
    for (let i = 0; i < 1000; i++, now += 1000) r = step({ rollout: r, hosts, now, analyze: a.analyze }).rollout;
    const s = r.status!;
    assert.equal(s.phase, RolloutPhase.ROLLOUT_PHASE_PROGRESSING, 'still holding');
    assert.equal(a.requests.length, 1000);
    assert.equal(s.analyses.length, ANALYSES_KEPT);
    assert.equal(s.analysesDropped, 1000 - ANALYSES_KEPT);
    assert.equal(s.analyses.at(-1)!.at, new Date(now - 1000).toISOString(), 'the newest is kept');
    // The interval still counts from the newest analysis: none before it is up.
    assert.equal(step({ rollout: r, hosts, now: now - 500, analyze: a.analyze }).requeueAfterMs, 500);
  });

  it('each run names at most 20 stale hosts and a summary of at most 2048 characters', () => {
    const run: AnalysisRun = {
      step: 1, verdict: Verdict.VERDICT_INCONCLUSIVE, metrics: [], at: new Date(T0).toISOString(),
      summary: `no recent telemetry from ${Array.from({ length: 5000 }, (_, i) => `host-${i}`).join(', ')}`,
      staleHosts: Array.from({ length: 5000 }, (_, i) => `host-${i}`),
    };
    const b = boundedRun(run);
    assert.equal(b.staleHosts.length, STALE_HOSTS_KEPT);
    assert.equal(b.summary.length, SUMMARY_CHARS);
    assert.match(b.summary, /^no recent telemetry from host-0, host-1.* … \(cut at 2048 of \d+ characters\)$/);
    assert.deepEqual(boundedRun({ ...run, summary: 'short', staleHosts: ['a'] }), { ...run, summary: 'short', staleHosts: ['a'] });
  });

  it('the kept analyses at their largest fit an etcd value with room to spare (< 1 MiB of the 1.5 MiB)', () => {
    const name = 'x'.repeat(253);
    const summary = { samples: 1e6, mean: 1e12, median: 1e12, iqr: 1e12, outliers: 1e6 };
    const metric: MetricResult = {
      metric: `counter:${'c'.repeat(64)}_rate`, canary: 1e12, baseline: 1e12, verdict: Verdict.VERDICT_FAIL, reason: 'r'.repeat(512),
      canarySamples: 1e6, baselineSamples: 1e6, test: 'mann-whitney', effect: 1e12, limit: 1e12, pValue: 1, alpha: 0.05,
      canarySummary: summary, baselineSummary: summary,
    };
    const worst = boundedRun({
      step: 63, verdict: Verdict.VERDICT_FAIL, metrics: Array.from({ length: 16 }, () => metric), at: new Date(T0).toISOString(),
      summary: 's'.repeat(100_000), staleHosts: Array.from({ length: 10_000 }, () => name),
    });
    const r = canaryDone({ steps: [{ canary: 1 }] }, fleet(1));
    r.status!.analyses = Array.from({ length: ANALYSES_KEPT }, () => worst);
    const bytes = codecs.rollout.encode(r).length;
    assert.ok(bytes < 1024 * 1024, `${bytes} bytes`);
  });
});
