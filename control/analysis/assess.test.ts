import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Verdict } from '../../proto/gen/bpfleet/v1/rollout.js';
import { assess } from './assess.js';

const run = (verdict: Verdict) => ({ verdict, summary: 'drop_rate: canary 0.20 > max 0.05' });
const counters = (failuresInStep = 0, inconclusiveInARow = 0) => ({ failuresInStep, inconclusiveInARow });
const limits = (failureLimit = 0, inconclusiveLimit = 0) => ({ failureLimit, inconclusiveLimit });

describe('assess: from a verdict to what the step does', () => {
  it('a pass passes and leaves the counters as they were', () => {
    assert.deepEqual(assess(run(Verdict.VERDICT_PASS), counters(2, 1), limits(5, 4)), { outcome: 'pass', counters: counters(2, 1) });
  });

  it('a failure with failureLimit 0 fails at once', () => {
    assert.deepEqual(assess(run(Verdict.VERDICT_FAIL), counters(), limits(0, 4)), {
      outcome: 'fail', reason: 'analysis failed: drop_rate: canary 0.20 > max 0.05', counters: counters(1, 0),
    });
  });

  it('a failure within failureLimit holds, counts it and breaks the inconclusive run', () => {
    assert.deepEqual(assess(run(Verdict.VERDICT_FAIL), counters(0, 3), limits(2, 4)), {
      outcome: 'hold', message: 'holding after failure 1 of 2 tolerated: drop_rate: canary 0.20 > max 0.05', counters: counters(1, 0),
    });
    assert.equal(assess(run(Verdict.VERDICT_FAIL), counters(1, 0), limits(2, 4)).outcome, 'hold');
    assert.equal(assess(run(Verdict.VERDICT_FAIL), counters(2, 0), limits(2, 4)).outcome, 'fail');
  });

  it('inconclusive holds up to inconclusiveLimit in a row, then fails naming how many', () => {
    assert.deepEqual(assess(run(Verdict.VERDICT_INCONCLUSIVE), counters(1, 1), limits(5, 2)), {
      outcome: 'hold', message: 'holding: drop_rate: canary 0.20 > max 0.05', counters: counters(1, 2),
    });
    assert.deepEqual(assess(run(Verdict.VERDICT_INCONCLUSIVE), counters(1, 2), limits(5, 2)), {
      outcome: 'fail', reason: 'no conclusive evidence after 3 analyses: drop_rate: canary 0.20 > max 0.05', counters: counters(1, 3),
    });
  });

  it('a verdict that is neither pass nor fail counts as inconclusive', () => {
    assert.deepEqual(assess(run(Verdict.VERDICT_UNSPECIFIED), counters(), limits()), {
      outcome: 'fail', reason: 'no conclusive evidence after 1 analyses: drop_rate: canary 0.20 > max 0.05', counters: counters(0, 1),
    });
  });

  it('does not change the counters it is given', () => {
    const given = counters(1, 1);
    assess(run(Verdict.VERDICT_FAIL), given, limits(5, 5));
    assess(run(Verdict.VERDICT_INCONCLUSIVE), given, limits(5, 5));
    assert.deepEqual(given, counters(1, 1));
  });
});
