/**
 * The short chaos run (about a minute of faults; `npm run chaos` is the long one): a mixed
 * fleet of kernel hosts and sim hosts (THE SIM DATAPLANE for the latter) on a 3-member etcd
 * and a 3-node NATS cluster, rollouts back to back under faults from a fixed seed, and no
 * invariant violated.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { prereqSkip } from '../../e2e/support/prereqs.js';
import { runChaos } from './runner.js';

const skip = await prereqSkip(['root', 'etcd', 'nats', 'netns', 'clang']);

describe('chaos (short): rollouts under random faults keep every invariant', { skip }, () => {
  test('seed 11: 60 s of faults over 3 kernel hosts + 100 sim hosts', async (t) => {
    const report = await runChaos({
      seed: Number(process.env.CHAOS_SEED ?? 11), durationMs: 60_000, kernelHosts: 3, simHosts: 100, controlReplicas: 2,
      meanFaultGapMs: 5_000, rolloutBoundMs: 180_000, log: (l) => t.diagnostic(l),
    });
    t.diagnostic(JSON.stringify({ faults: report.faults, rollouts: report.rollouts, peakRssBytes: report.peakRssBytes, etcd: report.etcdDbBytes }));
    assert.deepEqual(report.violations, []);
    assert.ok(report.rollouts.completed >= 2, `${report.rollouts.completed} rollouts completed`);
    assert.ok(Object.values(report.faults).reduce((a, b) => a + b, 0) >= 5, 'faults were injected');
  });
});
