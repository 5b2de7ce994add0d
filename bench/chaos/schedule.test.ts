import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FAULT_KINDS, faultSchedule, prng, rolloutPlan } from './schedule.js';

describe('chaos schedule', () => {
  test('the same seed gives the same faults; another seed other faults', () => {
    const a = faultSchedule({ seed: 7, durationMs: 600_000, meanGapMs: 5_000 });
    assert.deepEqual(faultSchedule({ seed: 7, durationMs: 600_000, meanGapMs: 5_000 }), a);
    assert.notDeepEqual(faultSchedule({ seed: 8, durationMs: 600_000, meanGapMs: 5_000 }), a);
  });

  test('faults are in time order, inside [start, duration), gaps within [mean/2, 3·mean/2], every kind drawn', () => {
    const s = faultSchedule({ seed: 1, durationMs: 600_000, meanGapMs: 4_000, startMs: 10_000 });
    assert.ok(s.length > 100);
    assert.ok(s[0]!.atMs >= 12_000 && s.at(-1)!.atMs < 600_000);
    for (let i = 1; i < s.length; i++) {
      const gap = s[i]!.atMs - s[i - 1]!.atMs;
      assert.ok(gap >= 1_999 && gap <= 6_001, `gap ${gap}`);
    }
    assert.deepEqual(new Set(s.map((f) => f.kind)), new Set(FAULT_KINDS));
    assert.ok(s.every((f) => f.pick >= 0 && f.pick < 1));
  });

  test('only the kinds asked for; bad options are refused', () => {
    const s = faultSchedule({ seed: 3, durationMs: 60_000, meanGapMs: 1_000, kinds: ['kill-agent'] });
    assert.ok(s.every((f) => f.kind === 'kill-agent'));
    assert.throws(() => faultSchedule({ seed: 3, durationMs: 0, meanGapMs: 1_000 }), RangeError);
    assert.throws(() => faultSchedule({ seed: 3, durationMs: 1_000, meanGapMs: 1_000, kinds: [] }), RangeError);
  });

  test('prng: deterministic, in [0, 1), roughly uniform', () => {
    const r = prng(42);
    const xs = Array.from({ length: 10_000 }, r);
    assert.deepEqual(Array.from({ length: 5 }, prng(42)), xs.slice(0, 5));
    assert.ok(xs.every((x) => x >= 0 && x < 1));
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    assert.ok(Math.abs(mean - 0.5) < 0.02, `mean ${mean}`);
  });

  test('rollout plan: about a third bad, never a bad undo or promote, deterministic', () => {
    const take = (seed: number) => { const g = rolloutPlan(seed); return Array.from({ length: 300 }, () => g.next().value!); };
    const plan = take(5);
    assert.deepEqual(take(5), plan);
    const bad = plan.filter((p) => p.bad);
    assert.ok(bad.length > 70 && bad.length < 130, `${bad.length} bad of 300`);
    assert.ok(bad.every((p) => p.scenario !== 'undo' && p.scenario !== 'promote'));
    assert.deepEqual(new Set(plan.filter((p) => !p.bad).map((p) => p.scenario)), new Set(['plain', 'pause-resume', 'promote', 'abort', 'undo']));
  });
});
