/**
 * How many analyses a rollout's status keeps, and how big each may be. The rollout record is
 * rewritten whole on every pass and an etcd value is at most 1.5 MiB, while a legal spec can
 * run tens of thousands of analyses (64 steps × failureLimit + inconclusiveLimit each) and a
 * large fleet can name thousands of stale hosts in one. So the status keeps the newest
 * ANALYSES_KEPT, counts the rest in `analysesDropped`, and cuts each run's host list and
 * summary.
 */
import type { AnalysisRun, RolloutStatus } from '../../proto/gen/bpfleet/v1/rollout.js';

/** Analyses a status keeps, the newest; older ones are counted in `analysesDropped`. */
export const ANALYSES_KEPT = 32;
/** Stale hosts named per analysis (the summary says how many were left out). */
export const STALE_HOSTS_KEPT = 20;
/** Characters of an analysis summary kept; past it the summary is cut and says so. */
export const SUMMARY_CHARS = 2048;

/** `run` with at most STALE_HOSTS_KEPT stale hosts and a summary of at most SUMMARY_CHARS characters. */
export function boundedRun(run: AnalysisRun): AnalysisRun {
  const staleHosts = run.staleHosts.slice(0, STALE_HOSTS_KEPT);
  let summary = run.summary;
  if (summary.length > SUMMARY_CHARS) {
    const tail = ` … (cut at ${SUMMARY_CHARS} of ${summary.length} characters)`;
    summary = summary.slice(0, SUMMARY_CHARS - tail.length) + tail;
  }
  return { ...run, staleHosts, summary };
}

/**
 * Appends `run` (bounded, see boundedRun) to `status.analyses`, keeping the newest ANALYSES_KEPT and adding
 * the ones let go to `status.analysesDropped`. The current step's latest analysis is always
 * kept, so the interval between analyses still counts from it.
 */
export function recordAnalysis(status: RolloutStatus, run: AnalysisRun): void {
  status.analyses.push(boundedRun(run));
  const over = status.analyses.length - ANALYSES_KEPT;
  if (over <= 0) return;
  status.analyses.splice(0, over);
  status.analysesDropped += over;
}
