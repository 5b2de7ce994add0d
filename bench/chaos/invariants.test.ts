import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AttachmentWatch, EtcdSizeWatch, RssWatch, badVersionContained, duplicateApplies, rolloutOverdue } from './invariants.js';

const tags = new Map([['aaaa', '1.0.0'], ['bbbb', '2.0.0']]);

describe('chaos invariants', () => {
  test('attachments: no program is fine before the host was ever managed, a violation after', () => {
    const w = new AttachmentWatch(5_000);
    assert.deepEqual(w.check({ host: 'h1', atMs: 0, ifacePresent: true, progTag: null }, tags), []);
    assert.deepEqual(w.check({ host: 'h1', atMs: 1_000, ifacePresent: true, progTag: 'aaaa' }, tags), []);
    const v = w.check({ host: 'h1', atMs: 2_000, ifacePresent: true, progTag: null }, tags);
    assert.equal(v.length, 1);
    assert.equal(v[0]!.invariant, 'program-on-managed-attachment');
    assert.match(v[0]!.detail, /h1: no XDP program on eth0/);
  });

  test('attachments: a deleted interface is excused, and for the grace period after it is back, not longer', () => {
    const w = new AttachmentWatch(5_000);
    w.check({ host: 'h2', atMs: 0, ifacePresent: true, progTag: 'bbbb' }, tags);
    assert.deepEqual(w.check({ host: 'h2', atMs: 1_000, ifacePresent: false, progTag: null }, tags), []);
    assert.deepEqual(w.check({ host: 'h2', atMs: 5_900, ifacePresent: true, progTag: null }, tags), []);
    const late = w.check({ host: 'h2', atMs: 6_100, ifacePresent: true, progTag: null }, tags);
    assert.equal(late.length, 1);
    assert.match(late[0]!.detail, /interface back 5100 ms ago, grace 5000 ms/);
  });

  test('attachments: a program no rollout intended is a violation', () => {
    const w = new AttachmentWatch(5_000);
    const v = w.check({ host: 'h3', atMs: 0, ifacePresent: true, progTag: 'cccc' }, tags);
    assert.equal(v[0]!.invariant, 'only-intended-versions');
  });

  test('applies: twice for one generation in one agent run is a violation; across runs or generations it is not', () => {
    const r = { host: 'h1', attachment: 'xdp:eth0', digest: 'sha256:ab', agentRun: 'run1' };
    assert.deepEqual(duplicateApplies([{ ...r, generation: 1 }, { ...r, generation: 2 }, { ...r, generation: 2, agentRun: 'run2' }], 0), []);
    const v = duplicateApplies([{ ...r, generation: 3 }, { ...r, generation: 3 }], 9);
    assert.equal(v.length, 1);
    assert.match(v[0]!.detail, /h1 xdp:eth0: generation 3 applied 2 times/);
  });

  test('bad version: more hosts than the canary, or a SUCCEEDED rollout, is a violation', () => {
    const base = { rolloutId: 'r1', canary: 1, finalPhase: null, atMs: 0 };
    assert.deepEqual(badVersionContained({ ...base, hostsOnBad: ['h1'] }), []);
    assert.equal(badVersionContained({ ...base, hostsOnBad: ['h1', 'sim-4'] }).length, 1);
    assert.equal(badVersionContained({ ...base, hostsOnBad: [], finalPhase: 'ROLLOUT_PHASE_SUCCEEDED' }).length, 1);
    assert.deepEqual(badVersionContained({ ...base, hostsOnBad: [], finalPhase: 'ROLLOUT_PHASE_FAILED' }), []);
  });

  test('RSS and etcd size: peaks kept, one violation per process over its ceiling', () => {
    const rss = new RssWatch((p) => (p.startsWith('agent') ? 100 : 1000));
    assert.deepEqual(rss.check('agent-h1', 90, 0), []);
    assert.equal(rss.check('agent-h1', 150, 1).length, 1);
    assert.deepEqual(rss.check('agent-h1', 160, 2), []);
    assert.deepEqual(rss.check('control', 500, 2), []);
    assert.equal(rss.peak.get('agent-h1'), 160);
    const etcd = new EtcdSizeWatch(64);
    assert.deepEqual(etcd.check('etcd0', 10, 0), []);
    assert.equal(etcd.check('etcd0', 65, 1).length, 1);
    assert.equal(etcd.peak.get('etcd0'), 65);
  });

  test('a rollout past its bound is overdue', () => {
    assert.deepEqual(rolloutOverdue({ rolloutId: 'r', createdAtMs: 0, nowMs: 60_000, boundMs: 60_000, phase: 'P' }), []);
    assert.match(rolloutOverdue({ rolloutId: 'r', createdAtMs: 0, nowMs: 61_000, boundMs: 60_000, phase: 'ROLLOUT_PHASE_PAUSED' })[0]!.detail, /still ROLLOUT_PHASE_PAUSED 61 s after creation \(bound 60 s\)/);
  });
});
