/**
 * The analysis benchmark's harness in seconds (the full run: npm run bench:analysis): the
 * simulated fleet goes through the product's analysis, an obvious regression is caught, an
 * A/A step mostly passes, and a seed reproduces its run.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AnalysisMethod } from '../../proto/gen/bpfleet/v1/rollout.js';
import { runExperiment, SCENARIOS, type ExperimentOptions } from './experiment.js';
import { FLEET } from './fleet-model.js';

const METHODS = [AnalysisMethod.ANALYSIS_METHOD_MANN_WHITNEY, AnalysisMethod.ANALYSIS_METHOD_KAYENTA, AnalysisMethod.ANALYSIS_METHOD_THRESHOLD, AnalysisMethod.ANALYSIS_METHOD_PAIRED];
const options: ExperimentOptions = {
  model: FLEET,
  trials: 20,
  seed: 42,
  canaryCounts: [5],
  scenarios: [SCENARIOS[0]!, { name: 'drop rate +5 pt', effect: { dropAdd: 0.05, runTimeFactor: 1 }, regression: true }],
  settings: METHODS.map((method) => ({ method, bakeIntervals: 0 })),
  powerHorizon: 10,
  aaHorizon: 15,
};

describe('analysis benchmark harness', () => {
  const rows = runExperiment(options);

  it('every method catches an obvious regression within 10 intervals', () => {
    for (const r of rows.filter((x) => x.scenario === 'drop rate +5 pt')) {
      assert.equal(r.failRate, 1, `${r.method}: ${JSON.stringify(r)}`);
      assert.ok(r.intervalsToVerdictP90! <= 10);
    }
  });

  it('an A/A step mostly passes with every method', () => {
    for (const r of rows.filter((x) => x.scenario.startsWith('A/A'))) {
      assert.ok(r.passRate > 0.5, `${r.method}: ${JSON.stringify(r)}`);
    }
  });

  it('a seed reproduces its run', () => {
    assert.deepEqual(runExperiment({ ...options, trials: 5 }), runExperiment({ ...options, trials: 5 }));
  });
});
