import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startTelemetry } from '../common/otel.js';
import { scrape } from '../e2e/support/prometheus.js';
import type { Host } from '../proto/gen/bpfleet/v1/control.js';
import { HostPhase, MetricResult, RolloutPhase, RolloutVerb, type HostProgress, type Rollout, type RolloutRequest, type Step } from '../proto/gen/bpfleet/v1/rollout.js';
import { observeFleet, recordMetricResults, recordStepEnds } from './metrics.js';
import { endedStep } from './rollout/events.js';
import { reconcile } from './rollout/reconcile.js';
import type { HostView } from './rollout/steps.js';
import { emptyStatus } from './rollout/vocabulary.js';

const P = RolloutPhase;
const steps: Step[] = [{ kind: { $case: 'canary', value: 1 } }, { kind: { $case: 'bakeMs', value: 4000 } }, { kind: { $case: 'percent', value: 100 } }];

function rollout(id: string, phase: RolloutPhase, step: number, stepStartedAt: string, updatedAt = stepStartedAt): Rollout {
  return {
    id, createdAt: '2030-01-01T00:00:00.000Z', createdBy: 'test', undoOf: '',
    spec: { module: 'm', version: '2.0.0', attachment: 'xdp:eth0', selector: {}, steps, maxUnavailable: '', analysis: undefined, onFailure: 0 as never },
    status: { ...emptyStatus(), phase, step, stepStartedAt, updatedAt },
  };
}

const at = (iso: string) => Date.parse(iso);
const pause: RolloutRequest = { seq: 1, verb: RolloutVerb.ROLLOUT_VERB_PAUSE, actor: 'alice', at: '', reason: '' };

/** The events of one reconcile() of `r` at `now`, over a fleet of `hosts`. */
const events = (r: Rollout, now: string, { hosts = [] as HostView[], requests = [] as RolloutRequest[] } = {}) =>
  reconcile({ rollout: r, target: { name: 'm', version: '2.0.0', digest: 'sha256:2' }, hosts, now: at(now), requests, analyze: () => assert.fail('no analysis here') }).events;

/** The steps those events ended. */
const stepEnds = (...args: Parameters<typeof events>) => events(...args).map(endedStep).filter((e) => e !== undefined);

const promoted = (r: Rollout): Rollout => ({ ...r, status: { ...r.status!, promoted: true } });
const failedHost: HostProgress = { host: 'h1', wave: 0, phase: HostPhase.HOST_PHASE_FAILED, previousDigest: '', previousVersion: '', message: 'VERIFIER_REJECTED: no', progId: 0, detail: '', rollbackAttempts: 0 };

test('a step that moves on passed, and took from its start to the next step\'s start', () => {
  const ended = stepEnds(promoted(rollout('r', P.ROLLOUT_PHASE_PROGRESSING, 1, '2030-01-01T00:00:10.000Z')), '2030-01-01T00:00:15.500Z');
  assert.deepEqual(ended, [{ step: 1, kind: 'bake', outcome: 'passed', durationMs: 5500 }]);
});

test('leaving PROGRESSING for a rollback ends the current step as failed', () => {
  const r = rollout('r', P.ROLLOUT_PHASE_PROGRESSING, 1, '2030-01-01T00:00:10.000Z');
  r.status!.hosts = [failedHost];
  const ended = stepEnds(r, '2030-01-01T00:00:13.000Z');
  assert.deepEqual(ended, [{ step: 1, kind: 'bake', outcome: 'failed', durationMs: 3000 }]);
});

test('the wave after the last step is "final_wave" and passes when the rollout succeeds', () => {
  const ended = stepEnds(rollout('r', P.ROLLOUT_PHASE_PROGRESSING, 3, '2030-01-01T00:00:20.000Z'), '2030-01-01T00:00:21.000Z');
  assert.deepEqual(ended, [{ step: 3, kind: 'final_wave', outcome: 'passed', durationMs: 1000 }]);
});

test('pausing, staying in a step, or a status never started ends no step', () => {
  assert.deepEqual(stepEnds(rollout('r', P.ROLLOUT_PHASE_PROGRESSING, 1, '2030-01-01T00:00:10.000Z'), '2030-01-01T00:00:11.000Z', { requests: [pause] }), []);
  assert.deepEqual(stepEnds(rollout('r', P.ROLLOUT_PHASE_PROGRESSING, 1, '2030-01-01T00:00:10.000Z'), '2030-01-01T00:00:11.000Z'), []);
  const fleet: HostView[] = [{ name: 'h1', labels: {}, capabilities: ['xdp'], running: null }];
  assert.deepEqual(stepEnds(rollout('r', P.ROLLOUT_PHASE_PENDING, 0, ''), '2030-01-01T00:00:10.000Z', { hosts: fleet }), []);
});

test('the step-duration histogram records the steps the persisted events ended, and nothing else', async (t) => {
  const telemetry = await startTelemetry({ serviceName: 'bpfleet-test', metricsPort: 0 });
  t.after(() => telemetry.shutdown());
  // The bake at step 2 passes after 4s; the percent step after it is done 2s later.
  recordStepEnds(events(promoted(rollout('r1', P.ROLLOUT_PHASE_PROGRESSING, 1, '2030-01-01T00:00:00.000Z')), '2030-01-01T00:00:04.000Z'));
  recordStepEnds(events(rollout('r1', P.ROLLOUT_PHASE_PROGRESSING, 2, '2030-01-01T00:00:04.000Z'), '2030-01-01T00:00:06.000Z'));
  // A pause ends no step.
  recordStepEnds(events(rollout('r2', P.ROLLOUT_PHASE_PROGRESSING, 1, '2030-01-01T00:00:00.000Z'), '2030-01-01T00:00:01.000Z', { requests: [pause] }));
  const m = await scrape(telemetry.metricsUrl!);
  assert.equal(m.sum('bpfleet_rollout_step_duration_count', { bpfleet_rollout_step_kind: 'bake', bpfleet_rollout_step_outcome: 'passed' }), 1);
  assert.equal(m.sum('bpfleet_rollout_step_duration_sum', { bpfleet_rollout_step_kind: 'bake' }), 4);
  assert.equal(m.sum('bpfleet_rollout_step_duration_count', { bpfleet_rollout_step_kind: 'percent', bpfleet_rollout_step_outcome: 'passed' }), 1);
  assert.equal(m.sum('bpfleet_rollout_step_duration_count'), 2);
});

test('fleet gauges come from the stores at scrape time, and only from the leader', async (t) => {
  const telemetry = await startTelemetry({ serviceName: 'bpfleet-test', metricsPort: 0 });
  t.after(() => telemetry.shutdown());
  let leading = false;
  const rollouts = [rollout('a', P.ROLLOUT_PHASE_SUCCEEDED, 3, ''), rollout('b', P.ROLLOUT_PHASE_SUCCEEDED, 3, ''), rollout('c', P.ROLLOUT_PHASE_PROGRESSING, 1, '')];
  const host = (name: string, version: string): Host => ({
    name, address: '', labels: {}, capabilities: [], kernel: '', registeredAt: '', agentVersion: '',
    attachments: [{ attachment: 'xdp:eth0', module: 'm', version, digest: '', progId: 1 }],
  } as unknown as Host);
  const hosts = [host('h1', '1.0.0'), host('h2', '2.0.0'), host('h3', '2.0.0')];
  const stop = observeFleet({ rollouts: { list: async () => rollouts }, hosts: { list: async () => hosts, refused: async () => [] }, leading: () => leading });

  const follower = await scrape(telemetry.metricsUrl!);
  assert.equal(follower.sum('bpfleet_controller_leader'), 0);
  assert.equal(follower.sum('bpfleet_rollout_count'), 0);
  assert.equal(follower.sum('bpfleet_module_host_count'), 0);

  leading = true;
  const leader = await scrape(telemetry.metricsUrl!);
  assert.equal(leader.sum('bpfleet_controller_leader'), 1);
  assert.equal(leader.sum('bpfleet_rollout_count', { bpfleet_rollout_phase: 'succeeded' }), 2);
  assert.equal(leader.sum('bpfleet_rollout_count', { bpfleet_rollout_phase: 'progressing' }), 1);
  assert.equal(leader.get('bpfleet_rollout_count{bpfleet_rollout_phase="rolled_back",otel_scope_name="bpfleet"}'), 0, 'every phase is reported, zero included');
  assert.equal(leader.sum('bpfleet_module_host_count', { bpfleet_module_version: '2.0.0', bpfleet_module_name: 'm', bpfleet_attachment: 'xdp:eth0' }), 2);
  assert.equal(leader.sum('bpfleet_module_host_count', { bpfleet_module_version: '1.0.0' }), 1);

  rollouts.push(rollout('d', P.ROLLOUT_PHASE_ROLLED_BACK, 1, ''));
  hosts[0] = host('h1', '2.0.0');
  const later = await scrape(telemetry.metricsUrl!);
  assert.equal(later.sum('bpfleet_rollout_count', { bpfleet_rollout_phase: 'rolled_back' }), 1);
  assert.equal(later.sum('bpfleet_module_host_count', { bpfleet_module_version: '2.0.0' }), 3);
  assert.equal(later.get('bpfleet_module_host_count{bpfleet_attachment="xdp:eth0",bpfleet_module_name="m",bpfleet_module_version="1.0.0",otel_scope_name="bpfleet"}'), 0,
    'a version no host runs any more drops to 0, not its last count');
  stop();
});

test('metric results export their p-values and effects relative to the limit, by metric and test', async (t) => {
  const telemetry = await startTelemetry({ serviceName: 'bpfleet-test', metricsPort: 0 });
  t.after(() => telemetry.shutdown());
  recordMetricResults([
    MetricResult.fromPartial({ metric: 'drop_rate', test: 'kayenta', effect: 0.01, limit: 0.005, pValue: 0.003, alpha: 0.01 }),
    MetricResult.fromPartial({ metric: 'run_time_ns_per_packet', test: 'threshold', effect: 5, limit: 20 }),
    MetricResult.fromPartial({ metric: 'drop_rate', test: 'samples', effect: 1, limit: 3 }),
  ]);
  const m = await scrape(telemetry.metricsUrl!);
  assert.equal(m.sum('bpfleet_analysis_p_value_count', { bpfleet_analysis_metric: 'drop_rate', bpfleet_analysis_test: 'kayenta' }), 1);
  assert.equal(m.sum('bpfleet_analysis_p_value_sum'), 0.003, 'only a result whose test has a significance level has a p-value');
  assert.equal(m.sum('bpfleet_analysis_effect_ratio_sum', { bpfleet_analysis_test: 'kayenta' }), 2);
  assert.equal(m.sum('bpfleet_analysis_effect_ratio_sum', { bpfleet_analysis_test: 'threshold' }), 0.25);
  assert.equal(m.sum('bpfleet_analysis_effect_ratio_count'), 2, 'too few samples is no effect');
});
