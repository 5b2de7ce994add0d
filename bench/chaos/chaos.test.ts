/**
 * The short chaos run (40 s of faults after about a minute of fleet start-up; `npm run chaos` is the long one): a mixed
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
  test('seed 11: 40 s of faults over 3 kernel hosts + 100 sim hosts', async (t) => {
    const report = await runChaos({
      seed: Number(process.env.CHAOS_SEED ?? 11), durationMs: 40_000, kernelHosts: 3, simHosts: 100, controlReplicas: 2,
      meanFaultGapMs: 4_000, rolloutBoundMs: 180_000, log: (l) => t.diagnostic(l),
    });
    t.diagnostic(JSON.stringify({ faults: report.faults, rollouts: report.rollouts, witness: report.witness, peakRssBytes: report.peakRssBytes, etcd: report.etcdDbBytes }));
    assert.deepEqual(report.violations, []);
    // The witnesses saw what they check: programs on the kernel hosts, applies, the bad version's canary.
    assert.ok((report.witness.samplesByVersion['1.0.0'] ?? 0) + (report.witness.samplesByVersion['2.0.0'] ?? 0) > 30, JSON.stringify(report.witness));
    assert.ok(report.applyRecordsChecked > 100, `${report.applyRecordsChecked} apply records`);
    assert.ok(report.rollouts.completed >= 2, `${report.rollouts.completed} rollouts completed`);
    assert.ok(Object.values(report.faults).reduce((a, b) => a + b, 0) >= 5, 'faults were injected');
  });
});
