/**
 * The analysis benchmark's experiment: for each scenario (A/A or a known regression), canary
 * count and method, many simulated steps judged by the product's analysis, counted against
 * the ground truth. The same simulated fleets are judged by every method (paired), so the
 * methods differ only in how they compare the cohorts.
 */
import { methodName } from '../../control/analysis/judge.js';
import { PRE_WINDOW_MS } from '../../control/analysis/paired.js';
import { toRolloutSpec } from '../../control/rollout/spec.js';
import type { AnalysisMethod } from '../../proto/gen/bpfleet/v1/rollout.js';
import { simulateFleet, type Effect, type FleetModel } from './fleet-model.js';
import { Random } from './random.js';
import { runStep, type StepOutcome } from './trial.js';

export interface Scenario {
  name: string;
  effect: Effect;
  /** False for A/A: the right verdict is pass, and a fail is a false rollback. */
  regression: boolean;
}

export const SCENARIOS: readonly Scenario[] = [
  { name: 'A/A (same version)', effect: { dropAdd: 0, runTimeFactor: 1 }, regression: false },
  { name: 'drop rate +1 pt', effect: { dropAdd: 0.01, runTimeFactor: 1 }, regression: true },
  { name: 'drop rate +0.2 pt', effect: { dropAdd: 0.002, runTimeFactor: 1 }, regression: true },
  { name: 'run time +20 %', effect: { dropAdd: 0, runTimeFactor: 1.2 }, regression: true },
  { name: 'run time variance ×8, same mean', effect: { dropAdd: 0, runTimeFactor: 1, runTimeJitter: 0.4 }, regression: true },
];

/** What an operator states: the increases that matter. The same for every method. */
export const BENCH_METRICS = [
  { name: 'drop_rate', maxIncrease: 0.005 },
  { name: 'run_time_ns_per_packet', maxIncrease: 15 },
];

export interface Settings {
  method: AnalysisMethod;
  metrics?: readonly { name: string; max?: number; maxIncrease?: number }[];
  minSamples?: number;
  inconclusiveLimit?: number;
  /** Bake before the first analysis, in report intervals. */
  bakeIntervals: number;
}

export interface Row {
  method: string;
  minSamples: number;
  bakeIntervals: number;
  canaries: number;
  scenario: string;
  trials: number;
  /** Share of trials that failed (rolled back) within the horizon; for A/A the false rollback rate. */
  failRate: number;
  /** 95 % Wilson interval of failRate. */
  failRate95: [number, number];
  /** Of the fails, the share caused by too many inconclusive verdicts rather than a failed one. */
  failNoEvidenceRate: number;
  passRate: number;
  holdRate: number;
  /** Report intervals from the step start to the right verdict (pass for A/A, fail otherwise): median and 90th percentile. */
  intervalsToVerdictP50: number | null;
  intervalsToVerdictP90: number | null;
  horizon: number;
}

export interface ExperimentOptions {
  model: FleetModel;
  trials: number;
  seed: number;
  canaryCounts: readonly number[];
  scenarios: readonly Scenario[];
  settings: readonly Settings[];
  /** Report intervals a regression has to be caught within. */
  powerHorizon: number;
  /** Report intervals an A/A step is followed for: long enough for any hold to end. */
  aaHorizon: number;
}

export function specFor(s: Settings, model: FleetModel) {
  return toRolloutSpec({
    module: 'sim-fw',
    version: '2.0.0',
    attachment: 'xdp:eth0',
    steps: [{ canary: 1 }, { bake: `${s.bakeIntervals * model.reportMs}ms` }, { percent: 100 }],
    analysis: { method: methodName(s.method), ...(s.minSamples ? { minSamples: s.minSamples } : {}), ...(s.inconclusiveLimit !== undefined ? { inconclusiveLimit: s.inconclusiveLimit } : {}), metrics: s.metrics ?? BENCH_METRICS },
  });
}

/** Every settings × canary count × scenario, `trials` each; the same fleets for every settings. */
export function runExperiment(o: ExperimentOptions): Row[] {
  const rows: Row[] = [];
  const specs = o.settings.map((s) => specFor(s, o.model));
  // Every host reports from before the paired method's window on, as a fleet that ran the old
  // version for a while; the cohort methods read from the step start only.
  const before = Math.ceil(PRE_WINDOW_MS / o.model.reportMs) + 3;
  for (const canaries of o.canaryCounts) {
    for (const [si, scenario] of o.scenarios.entries()) {
      const horizon = scenario.regression ? o.powerHorizon : o.aaHorizon;
      const outcomes: StepOutcome[][] = o.settings.map(() => []);
      const rnd = new Random(o.seed + 7919 * si + 104729 * canaries);
      for (let t = 0; t < o.trials; t++) {
        const fleet = simulateFleet(o.model, rnd, canaries, scenario.effect, horizon, before);
        o.settings.forEach((s, i) => outcomes[i]!.push(runStep(fleet, specs[i]!, s.bakeIntervals * o.model.reportMs, o.model.reportMs, horizon)));
      }
      o.settings.forEach((s, i) => rows.push(summarize(s, specs[i]!.analysis!.minSamples, canaries, scenario, outcomes[i]!, horizon)));
    }
  }
  return rows;
}

function summarize(s: Settings, minSamples: number, canaries: number, scenario: Scenario, outcomes: StepOutcome[], horizon: number): Row {
  const n = outcomes.length;
  const fails = outcomes.filter((o) => o.outcome === 'fail');
  const right = outcomes.filter((o) => o.outcome === (scenario.regression ? 'fail' : 'pass')).map((o) => o.intervals).sort((a, b) => a - b);
  const pct = (q: number) => (right.length ? right[Math.min(right.length - 1, Math.ceil(q * right.length) - 1)]! : null);
  return {
    method: methodName(s.method),
    minSamples,
    bakeIntervals: s.bakeIntervals,
    canaries,
    scenario: scenario.name,
    trials: n,
    failRate: fails.length / n,
    failRate95: wilson(fails.length, n),
    failNoEvidenceRate: fails.length ? fails.filter((o) => o.noEvidence).length / fails.length : 0,
    passRate: outcomes.filter((o) => o.outcome === 'pass').length / n,
    holdRate: outcomes.filter((o) => o.outcome === 'hold').length / n,
    intervalsToVerdictP50: pct(0.5),
    intervalsToVerdictP90: pct(0.9),
    horizon,
  };
}

/** 95 % Wilson score interval of k successes in n trials. */
export function wilson(k: number, n: number): [number, number] {
  if (n === 0) return [0, 1];
  const z = 1.959963984540054;
  const p = k / n;
  const d = 1 + (z * z) / n;
  const c = (p + (z * z) / (2 * n)) / d;
  const h = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / d;
  return [Math.max(0, c - h), Math.min(1, c + h)];
}
