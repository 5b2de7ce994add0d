/**
 * Canary analysis with a ground truth: the false rollback rate on A/A steps (the same version
 * on canary and baseline) and the power to catch known regressions within 10 report
 * intervals, for each analysis method at the spec's defaults, with 1 canary and with 5 %
 * canaries of a 100-host simulated fleet (bench/analysis/fleet-model.ts); then how
 * minSamples moves both. Every step is decided by the product's analyze() and assess() on
 * simulated TelemetryReports; runs are reproducible (seeded).
 *
 * Writes bench/results/analysis.json and bench/results/analysis.md.
 * Run: npm run bench:analysis (BPFLEET_BENCH_ANALYSIS_TRIALS=100 for a quick run).
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DEFAULT_ANALYSIS } from '../control/rollout/spec.js';
import { PRE_WINDOW_MS } from '../control/analysis/paired.js';
import { AnalysisMethod } from '../proto/gen/bpfleet/v1/rollout.js';
import { machine, writeResult } from './dataplane/report.js';
import { BENCH_METRICS, runExperiment, SCENARIOS, type Settings } from './analysis/experiment.js';
import { FLEET } from './analysis/fleet-model.js';
import { errorTable, sweepTable, timeTable } from './analysis/table.js';

const TRIALS = Number(process.env.BPFLEET_BENCH_ANALYSIS_TRIALS ?? 1000);
const SEED = Number(process.env.BPFLEET_BENCH_ANALYSIS_SEED ?? 20261127);
const POWER_HORIZON = 10;
const AA_HORIZON = 30;
const CANARIES = [1, Math.round(FLEET.hosts * 0.05)];
const METHODS = [AnalysisMethod.ANALYSIS_METHOD_MANN_WHITNEY, AnalysisMethod.ANALYSIS_METHOD_KAYENTA, AnalysisMethod.ANALYSIS_METHOD_THRESHOLD, AnalysisMethod.ANALYSIS_METHOD_PAIRED];
const SWEEP_MIN_SAMPLES = [3, 10, 30];

function main(): void {
  const started = Date.now();
  const m = machine();
  const common = { model: FLEET, seed: SEED, canaryCounts: CANARIES, powerHorizon: POWER_HORIZON, aaHorizon: AA_HORIZON };
  const defaults: Settings[] = METHODS.map((method) => ({ method, bakeIntervals: 0 }));
  const atDefaults = runExperiment({ ...common, trials: TRIALS, scenarios: SCENARIOS, settings: defaults });
  const sweepTrials = Math.max(50, Math.round(TRIALS / 4));
  const sweep = runExperiment({
    ...common, trials: sweepTrials, scenarios: SCENARIOS.slice(0, 3),
    // A step waiting for more samples holds, and holds count against inconclusiveLimit: raised
    // with minSamples so that a slow verdict is not mistaken for a failed one.
    settings: METHODS.flatMap((method) => SWEEP_MIN_SAMPLES.map((minSamples) => ({
      method, minSamples, inconclusiveLimit: Math.max(DEFAULT_ANALYSIS.inconclusiveLimit, minSamples + 10), bakeIntervals: 0,
    }))),
  });
  const seconds = (Date.now() - started) / 1000;
  const result = {
    benchmark: 'analysis',
    at: new Date().toISOString(),
    machine: m,
    seconds,
    seed: SEED,
    trials: TRIALS,
    sweepTrials,
    fleet: FLEET,
    canaryCounts: CANARIES,
    metrics: BENCH_METRICS,
    pairedPreWindowMs: PRE_WINDOW_MS,
    specDefaults: { ...DEFAULT_ANALYSIS, method: undefined, metrics: undefined },
    powerHorizonIntervals: POWER_HORIZON,
    aaHorizonIntervals: AA_HORIZON,
    atDefaults,
    minSamplesSweep: sweep,
  };
  const path = writeResult('analysis', result);
  const md = [
    `# Analysis benchmark results`, '',
    `${TRIALS} trials per cell (sweep: ${sweepTrials}), seed ${SEED}, ${FLEET.hosts} hosts, metrics ${BENCH_METRICS.map((x) => `${x.name} maxIncrease ${x.maxIncrease}`).join(', ')}; `
      + `regressions must fail within ${POWER_HORIZON} report intervals, A/A steps are followed for ${AA_HORIZON}. `
      + `Machine: ${m.nproc} vCPUs (${m.cpu}), Node ${m.node}; ${seconds.toFixed(0)} s.`, '',
    '## At the spec defaults', '', errorTable(atDefaults), '',
    '## Report intervals to the right verdict (median / 90th percentile)', '', timeTable(atDefaults), '',
    '## minSamples', '', sweepTable(sweep), '',
  ].join('\n');
  writeFileSync(fileURLToPath(new URL('results/analysis.md', import.meta.url)), md);
  console.log(md);
  console.log(`wrote ${path}`);
}

main();
