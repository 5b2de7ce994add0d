import { Verdict, type Analysis, type AnalysisRun } from '../../proto/gen/bpfleet/v1/rollout.js';

/** The analysis counters a rollout keeps for its current step (RolloutStatus fields). */
export interface AnalysisCounters {
  /** Failed verdicts so far in the step. */
  failuresInStep: number;
  /** Verdicts in a row that were neither pass nor fail. */
  inconclusiveInARow: number;
}

/**
 * What a step does with an analysis: pass (move on), hold (analyse again after the
 * interval, with `message` for the status) or fail (roll back or halt, for `reason`).
 * `counters` are the step's counters after this analysis.
 */
export type Assessment =
  | { outcome: 'pass'; counters: AnalysisCounters }
  | { outcome: 'hold'; message: string; counters: AnalysisCounters }
  | { outcome: 'fail'; reason: string; counters: AnalysisCounters };

/**
 * The verdict-to-outcome policy. A pass passes. A failure counts against the spec's
 * failureLimit (failures tolerated within one step; 0 fails on the first) and breaks a run
 * of inconclusive verdicts. Anything else counts against inconclusiveLimit (inconclusive
 * verdicts tolerated in a row). Past a limit the step fails; within it, it holds.
 */
export function assess(
  run: Pick<AnalysisRun, 'verdict' | 'summary'>,
  counters: AnalysisCounters,
  limits: Pick<Analysis, 'failureLimit' | 'inconclusiveLimit'>,
): Assessment {
  if (run.verdict === Verdict.VERDICT_PASS) return { outcome: 'pass', counters: { ...counters } };
  if (run.verdict === Verdict.VERDICT_FAIL) {
    const after = { failuresInStep: counters.failuresInStep + 1, inconclusiveInARow: 0 };
    if (after.failuresInStep > limits.failureLimit) return { outcome: 'fail', reason: `analysis failed: ${run.summary}`, counters: after };
    return { outcome: 'hold', message: `holding after failure ${after.failuresInStep} of ${limits.failureLimit} tolerated: ${run.summary}`, counters: after };
  }
  const after = { ...counters, inconclusiveInARow: counters.inconclusiveInARow + 1 };
  if (after.inconclusiveInARow > limits.inconclusiveLimit) {
    return { outcome: 'fail', reason: `no conclusive evidence after ${after.inconclusiveInARow} analyses: ${run.summary}`, counters: after };
  }
  return { outcome: 'hold', message: `holding: ${run.summary}`, counters: after };
}
