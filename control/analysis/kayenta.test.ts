import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hodgesLehmann, withoutOutliers } from './kayenta.js';
import { sorted } from './summary.js';

/** Median of all pairwise differences, the textbook definition, for checking the bisection. */
function bruteHL(c: number[], b: number[]): number {
  const d = c.flatMap((x) => b.map((y) => x - y)).sort((x, y) => x - y);
  const n = d.length;
  return n % 2 ? d[(n - 1) / 2]! : (d[n / 2 - 1]! + d[n / 2]!) / 2;
}

describe('hodgesLehmann', () => {
  it('finds the median pairwise difference, within the gap between two differences', () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let trial = 0; trial < 20; trial++) {
      const c = Array.from({ length: 5 + trial }, () => rnd() + 0.3);
      const b = Array.from({ length: 9 + 2 * trial }, () => rnd());
      const got = hodgesLehmann(sorted(c), sorted(b));
      const want = bruteHL(c, b);
      const diffs = c.flatMap((x) => b.map((y) => x - y)).sort((x, y) => x - y);
      // The estimate lies between the two middle differences (both equal for an odd count).
      const mid = diffs.length / 2;
      assert.ok(got.estimate >= diffs[Math.ceil(mid) - 1]! - 1e-12 && got.estimate <= diffs[Math.floor(mid)]! + 1e-12, `${got.estimate} vs ${want}`);
      assert.ok(got.low <= got.estimate && got.estimate <= got.high);
    }
  });

  it('an interval that excludes 0 when the canary is clearly higher, and includes it for the same samples', () => {
    const b = sorted(Array.from({ length: 50 }, (_, i) => i / 50));
    const shifted = sorted(Array.from({ length: 50 }, (_, i) => i / 50 + 0.5));
    const up = hodgesLehmann(shifted, b);
    assert.ok(Math.abs(up.estimate - 0.5) < 0.03, String(up.estimate));
    assert.ok(up.low > 0);
    const same = hodgesLehmann(b, b);
    assert.ok(Math.abs(same.estimate) < 1e-9 && same.low < 0 && same.high > 0);
  });
});

describe('withoutOutliers', () => {
  it('drops samples beyond 3 IQRs outside the quartiles and keeps the rest', () => {
    const xs = sorted([1, 2, 3, 4, 5, 6, 7, 8, 100, -90]);
    assert.deepEqual([...withoutOutliers(xs)], [1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('keeps a cohort whose quartiles coincide whole', () => {
    const xs = sorted([0, 0, 0, 0, 0, 0, 0.5]);
    assert.equal(withoutOutliers(xs).length, 7);
  });
});
