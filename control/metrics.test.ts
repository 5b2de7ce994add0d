import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startTelemetry } from '../common/otel.js';
import { scrape } from '../e2e/support/prometheus.js';
import type { Host } from '../proto/gen/bpfleet/v1/control.js';
import { RolloutPhase, type Rollout, type Step } from '../proto/gen/bpfleet/v1/rollout.js';
import { endedStep, observeFleet, StepClock } from './metrics.js';
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

const mark = (phase: RolloutPhase, step: number, stepStartedAt: string) => ({ phase, step, stepStartedAt });

test('a step that moves on passed, and took from its start to the next step\'s start', () => {
  const ended = endedStep(mark(P.ROLLOUT_PHASE_PROGRESSING, 1, '2030-01-01T00:00:10.000Z'), rollout('r', P.ROLLOUT_PHASE_PROGRESSING, 2, '2030-01-01T00:00:15.500Z'));
  assert.deepEqual(ended, { kind: 'bake', outcome: 'passed', seconds: 5.5 });
});

test('leaving PROGRESSING for a rollback ends the current step as failed', () => {
  const ended = endedStep(mark(P.ROLLOUT_PHASE_PROGRESSING, 1, '2030-01-01T00:00:10.000Z'),
    rollout('r', P.ROLLOUT_PHASE_ROLLING_BACK, 1, '2030-01-01T00:00:10.000Z', '2030-01-01T00:00:13.000Z'));
  assert.deepEqual(ended, { kind: 'bake', outcome: 'failed', seconds: 3 });
});

test('the wave after the last step is "final_wave" and passes when the rollout succeeds', () => {
  const ended = endedStep(mark(P.ROLLOUT_PHASE_PROGRESSING, 3, '2030-01-01T00:00:20.000Z'),
    rollout('r', P.ROLLOUT_PHASE_SUCCEEDED, 3, '2030-01-01T00:00:20.000Z', '2030-01-01T00:00:21.000Z'));
  assert.deepEqual(ended, { kind: 'final_wave', outcome: 'passed', seconds: 1 });
});

test('pausing, staying in a step, or a status never started ends no step', () => {
  assert.equal(endedStep(mark(P.ROLLOUT_PHASE_PROGRESSING, 1, '2030-01-01T00:00:10.000Z'), rollout('r', P.ROLLOUT_PHASE_PAUSED, 1, '2030-01-01T00:00:10.000Z')), null);
  assert.equal(endedStep(mark(P.ROLLOUT_PHASE_PROGRESSING, 1, '2030-01-01T00:00:10.000Z'), rollout('r', P.ROLLOUT_PHASE_PROGRESSING, 1, '2030-01-01T00:00:10.000Z')), null);
  assert.equal(endedStep(mark(P.ROLLOUT_PHASE_PENDING, 0, ''), rollout('r', P.ROLLOUT_PHASE_PROGRESSING, 0, '2030-01-01T00:00:10.000Z')), null);
});

test('the step clock measures from the status each save replaced, and forgets finished rollouts', async (t) => {
  const telemetry = await startTelemetry({ serviceName: 'bpfleet-test', metricsPort: 0 });
  t.after(() => telemetry.shutdown());
  const clock = new StepClock();
  // This replica led once, saw step 0, lost leadership; another leader moved the rollout on.
  clock.persisted(rollout('r1', P.ROLLOUT_PHASE_PROGRESSING, 0, '2029-12-31T23:59:00.000Z'));
  clock.seen(rollout('r1', P.ROLLOUT_PHASE_PROGRESSING, 1, '2030-01-01T00:00:00.000Z'));
  clock.persisted(rollout('r1', P.ROLLOUT_PHASE_PROGRESSING, 2, '2030-01-01T00:00:04.000Z'));
  clock.persisted(rollout('r1', P.ROLLOUT_PHASE_SUCCEEDED, 2, '2030-01-01T00:00:04.000Z', '2030-01-01T00:00:06.000Z'));
  // Finished: a later save of the same id starts from nothing.
  clock.persisted(rollout('r1', P.ROLLOUT_PHASE_PROGRESSING, 3, '2030-01-01T00:01:00.000Z'));
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
  const stop = observeFleet({ rollouts: { list: async () => rollouts }, hosts: { list: async () => hosts }, leading: () => leading });

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
