/**
 * One-sided Mann–Whitney U test: is `a` stochastically greater than `b`? Kayenta-style
 * canary judges use it because it assumes nothing about the distribution of a metric
 * (drop rates pile up at 0 and 1; run times are long-tailed).
 *
 * Normal approximation with tie correction and continuity correction; exact enough for
 * the cohort sizes a canary analysis sees (a handful of samples up to thousands).
 */
export interface MannWhitneyResult {
  u: number;
  /** P(a is not greater than b) under the null hypothesis; small means "a is greater". */
  pValue: number;
}

export function mannWhitneyGreater(a: ArrayLike<number>, b: ArrayLike<number>): MannWhitneyResult {
  const n1 = a.length;
  const n2 = b.length;
  if (n1 === 0 || n2 === 0) return { u: 0, pValue: 1 };
  // Each cohort sorted on its own as doubles, then merged: no object per sample, and
  // cohorts of tens of thousands of samples are judged every analysis interval.
  const xa = Float64Array.from(a).sort();
  const xb = Float64Array.from(b).sort();
  let rankSumA = 0;
  let tieTerm = 0;
  let i = 0;
  let j = 0;
  let ranked = 0;
  while (i < n1 || j < n2) {
    const v = j >= n2 || (i < n1 && xa[i]! <= xb[j]!) ? xa[i]! : xb[j]!;
    let inA = 0;
    let inB = 0;
    for (; i < n1 && xa[i] === v; i++) inA++;
    for (; j < n2 && xb[j] === v; j++) inB++;
    // NaN equals nothing, itself included: it is a group of one.
    if (inA + inB === 0) {
      if (i < n1 && Number.isNaN(xa[i])) {
        i++;
        inA++;
      } else {
        j++;
        inB++;
      }
    }
    const t = inA + inB;
    rankSumA += (inA * (2 * ranked + t + 1)) / 2;
    tieTerm += t * t * t - t;
    ranked += t;
  }
  const u = rankSumA - (n1 * (n1 + 1)) / 2;
  const n = n1 + n2;
  const mean = (n1 * n2) / 2;
  const variance = ((n1 * n2) / 12) * (n + 1 - tieTerm / (n * (n - 1)));
  if (variance <= 0) return { u, pValue: u > mean ? 0 : 1 };
  const z = (u - mean - 0.5) / Math.sqrt(variance);
  return { u, pValue: 1 - normalCdf(z) };
}

/**
 * The smallest p-value mannWhitneyGreater gives for n1 against n2 distinct values (every `a`
 * above every `b`); 1 when either is empty. With n1 = 1 it never goes below about 0.042
 * (√3 standard deviations), and stays above 0.05 up to n2 = 38.
 */
export function smallestPValue(n1: number, n2: number): number {
  if (n1 === 0 || n2 === 0) return 1;
  const mean = (n1 * n2) / 2;
  return 1 - normalCdf((n1 * n2 - mean - 0.5) / Math.sqrt((n1 * n2 * (n1 + n2 + 1)) / 12));
}

function normalCdf(z: number): number {
  return 0.5 * (1 + erf(z / Math.SQRT2));
}

// Abramowitz–Stegun 7.1.26: |error| < 1.5e-7, plenty for a significance threshold.
function erf(x: number): number {
  const sign = x < 0 ? -1 : 1;
  const ax = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * ax);
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496735) * t + 0.254829592) * t * Math.exp(-ax * ax);
  return sign * y;
}
