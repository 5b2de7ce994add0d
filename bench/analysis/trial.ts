/**
 * One canary step over a simulated fleet, decided by the product's own code: analyze()
 * (samples, metrics, the method's judge, stale hosts) every analysis interval over the
 * window since the step started, and assess() turning verdicts into pass, hold or fail —
 * the loop of the bake step in control/rollout/steps.ts.
 */
import { analyze, readsFrom } from '../../control/analysis/analyze.js';
import { assess, type AnalysisCounters } from '../../control/analysis/assess.js';
import type { RolloutSpec } from '../../proto/gen/bpfleet/v1/rollout.js';
import type { TelemetryReport } from '../../proto/gen/bpfleet/v1/telemetry.js';
import { NEW, type SimulatedFleet } from './fleet-model.js';

export interface StepOutcome {
  outcome: 'pass' | 'fail' | 'hold';
  /** When the step was decided (or the last analysis, for hold), in report intervals since its start. */
  intervals: number;
  /** For a fail: true when it came from too many inconclusive verdicts rather than a failed one. */
  noEvidence: boolean;
}

/**
 * Runs the step's analyses at start + bake, then every analysis interval, up to `horizon`
 * report intervals after the start; the first pass or fail decides.
 */
export function runStep(fleet: SimulatedFleet, spec: RolloutSpec, bakeMs: number, reportMs: number, horizon: number): StepOutcome {
  const analysis = spec.analysis!;
  let counters: AnalysisCounters = { failuresInStep: 0, inconclusiveInARow: 0 };
  const end = fleet.start + horizon * reportMs;
  // Like the controller's telemetry reader: what the analysis reads, from readsFrom() on, led
  // by the report before it (TelemetryStore.since); the paired method reads further back.
  const first = readsFrom(analysis, fleet.start);
  const cut = new Map<string, readonly TelemetryReport[]>();
  const reportsOf = (h: string) => {
    let reports = cut.get(h);
    if (!reports) {
      const all = fleet.reports.get(h) ?? [];
      const i = all.findIndex((r) => r.timestampMs >= first);
      reports = i === -1 ? all.slice(-1) : i === 0 ? all : all.slice(i - 1);
      cut.set(h, reports);
    }
    return reports;
  };
  let at = fleet.start + bakeMs;
  let last = 0;
  for (; at <= end; at += analysis.intervalMs) {
    const to = at;
    // What the controller has heard by `to`: reports stamped later have not arrived yet.
    const heard = (h: string) => {
      const all = reportsOf(h);
      let n = all.length;
      while (n > 0 && all[n - 1]!.timestampMs > to) n--;
      return n === all.length ? all : all.slice(0, n);
    };
    const run = analyze({
      spec,
      step: 1,
      canary: { hosts: fleet.canaries, digest: NEW.digest },
      baseline: { hosts: fleet.baseline },
      from: fleet.start,
      to,
      reportsOf: heard,
    });
    const a = assess(run, counters, analysis);
    counters = a.counters;
    last = (to - fleet.start) / reportMs;
    if (a.outcome === 'pass') return { outcome: 'pass', intervals: last, noEvidence: false };
    if (a.outcome === 'fail') return { outcome: 'fail', intervals: last, noEvidence: counters.inconclusiveInARow > analysis.inconclusiveLimit };
  }
  return { outcome: 'hold', intervals: last, noEvidence: false };
}
