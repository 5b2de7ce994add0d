import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mannWhitneyGreater, smallestPValue } from './mann-whitney.js';

// Expected values were worked out by hand below and agree with
//   scipy.stats.mannwhitneyu(a, b, alternative='greater', method='asymptotic', use_continuity=True)
// (scipy 1.17), which uses the same normal approximation with tie and continuity corrections.
// The erf approximation is good to 1.5e-7, hence the tolerance.
const close = (actual: number, expected: number, tol = 1e-6) =>
  assert.ok(Math.abs(actual - expected) <= tol, `${actual} is not within ${tol} of ${expected}`);

describe('mannWhitneyGreater', () => {
  it('a = [6..10] entirely above b = [1..5]: significant', () => {
    // Ranks of a: 6..10, sum 40; U = 40 - 5·6/2 = 25 (the maximum n1·n2).
    // mean = 12.5, var = 25/12 · 11 = 22.9167, z = (25 - 12.5 - 0.5)/4.7871 = 2.5067,
    // p = 1 - Φ(2.5067) = 0.006093 (scipy: 0.006092890177672406).
    const r = mannWhitneyGreater([6, 7, 8, 9, 10], [1, 2, 3, 4, 5]);
    assert.equal(r.u, 25);
    close(r.pValue, 0.006092890177672406);
  });

  it('a = [1..5] entirely below b = [6..10]: nowhere near significant', () => {
    // U = 15 - 15 = 0, z = (0 - 12.5 - 0.5)/4.7871 = -2.7156, p = 0.99669.
    const r = mannWhitneyGreater([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]);
    assert.equal(r.u, 0);
    close(r.pValue, 0.9966923245172357);
  });

  it('interleaved samples give no evidence either way', () => {
    // a = odd ranks 1,3,5,7,9: sum 25, U = 10; z = (10 - 12.5 - 0.5)/4.7871 = -0.6267.
    const r = mannWhitneyGreater([1, 3, 5, 7, 9], [2, 4, 6, 8, 10]);
    assert.equal(r.u, 10);
    close(r.pValue, 0.7345653480157459);
  });

  it('averages the ranks of ties and corrects the variance for them', () => {
    // Sorted: 1a 2a 2a 2b 2b 3a 4b 5b. The four 2s share ranks 2..5 (3.5 each).
    // Rank sum of a = 1 + 3.5 + 3.5 + 6 = 14, U = 14 - 10 = 4.
    // Tie term Σ(t³ - t) = 64 - 4 = 60; var = 16/12 · (9 - 60/56) = 10.5714;
    // z = (4 - 8 - 0.5)/3.2514 = -1.3840, p = 0.91683.
    const r = mannWhitneyGreater([1, 2, 2, 3], [2, 2, 4, 5]);
    assert.equal(r.u, 4);
    close(r.pValue, 0.9168254484641196);
  });

  it('drop rates piling up at 0: a few non-zero canary samples are not yet significant', () => {
    // Eight zeros share ranks 1..8 (4.5 each); 0.1 → 9, 0.2 → 10.
    // Rank sum of a = 3·4.5 + 9 + 10 = 32.5, U = 17.5; tie term 8³ - 8 = 504;
    // var = 25/12 · (11 - 504/90) = 11.25, z = (17.5 - 12.5 - 0.5)/3.3541 = 1.3416, p = 0.08986.
    const r = mannWhitneyGreater([0, 0, 0, 0.1, 0.2], [0, 0, 0, 0, 0]);
    assert.equal(r.u, 17.5);
    close(r.pValue, 0.08985624743949988);
  });

  it('is one-sided: swapping the cohorts moves p to the other tail', () => {
    const a = [3, 4, 5, 6, 7, 8];
    const b = [1, 2, 3, 4, 5];
    const forward = mannWhitneyGreater(a, b);
    const backward = mannWhitneyGreater(b, a);
    assert.equal(forward.u + backward.u, a.length * b.length);
    assert.ok(forward.pValue < 0.5 && backward.pValue > 0.5);
  });

  it('gets more confident with more samples of the same shift', () => {
    const shifted = (n: number, by: number) => Array.from({ length: n }, (_, i) => (i % 10) + by);
    const small = mannWhitneyGreater(shifted(10, 1), shifted(10, 0)).pValue;
    const large = mannWhitneyGreater(shifted(200, 1), shifted(200, 0)).pValue;
    assert.ok(large < small, `${large} should be below ${small}`);
    assert.ok(large < 0.05);
  });

  it('all values tied: no variance, no evidence (p = 1)', () => {
    const r = mannWhitneyGreater([0, 0, 0], [0, 0, 0, 0]);
    assert.equal(r.u, 6);
    assert.equal(r.pValue, 1);
  });

  it('an empty cohort gives no evidence', () => {
    assert.deepEqual(mannWhitneyGreater([], [1, 2, 3]), { u: 0, pValue: 1 });
    assert.deepEqual(mannWhitneyGreater([1, 2, 3], []), { u: 0, pValue: 1 });
    assert.deepEqual(mannWhitneyGreater([], []), { u: 0, pValue: 1 });
  });

  it('U is the pairwise count of a over b (ties count half) on random cohorts full of ties', () => {
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let k = 0; k < 100; k++) {
      const draw = (n: number) => Array.from({ length: n }, () => Math.floor(next() * 6) / 4);
      const a = draw(1 + Math.floor(next() * 40));
      const b = draw(1 + Math.floor(next() * 60));
      let pairwise = 0;
      for (const x of a) for (const y of b) pairwise += x > y ? 1 : x === y ? 0.5 : 0;
      assert.equal(mannWhitneyGreater(a, b).u, pairwise, `a=${a} b=${b}`);
    }
  });

  it('does not reorder its inputs', () => {
    const a = [5, 1, 3];
    const b = [4, 2];
    mannWhitneyGreater(a, b);
    assert.deepEqual([a, b], [[5, 1, 3], [4, 2]]);
  });

  it('smallestPValue is the p of every a above every b, and one value against 38 never reaches 0.05', () => {
    const b = Array.from({ length: 39 }, (_, i) => i);
    assert.ok(Math.abs(smallestPValue(1, 39) - mannWhitneyGreater([100], b).pValue) < 1e-12);
    assert.ok(Math.abs(smallestPValue(3, 7) - mannWhitneyGreater([10, 11, 12], b.slice(0, 7)).pValue) < 1e-12);
    assert.ok(smallestPValue(1, 38) > 0.05 && smallestPValue(1, 39) < 0.05);
    assert.ok(smallestPValue(1, 1e6) > 0.04);
    assert.equal(smallestPValue(0, 5), 1);
  });
});
