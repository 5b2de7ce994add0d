import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HostPhase, RolloutPhase, type HostProgress, type Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import { emptyStatus } from '../rollout/vocabulary.js';
import { mergeHosts } from './follow.js';

const host = (name: string, wave: number, phase: HostPhase): HostProgress =>
  ({ host: name, wave, phase, previousDigest: '', previousVersion: '', message: '', progId: 0, detail: '', rollbackAttempts: 0 });

function rollout(hosts: HostProgress[], over: Partial<Rollout['status']> = {}): Rollout {
  return { id: 'r', spec: undefined, createdAt: '', createdBy: '', undoOf: '', status: { ...emptyStatus(), hosts, ...over } };
}

describe('mergeHosts: a WatchRollout follower', () => {
  const first = rollout([host('b', 1, HostPhase.HOST_PHASE_PENDING), host('a', 0, HostPhase.HOST_PHASE_UPDATING)], { hostCounts: { total: 3, pending: 2, updating: 1, updated: 0, failed: 0, rollingBack: 0, rolledBack: 0, restoreFailed: 0, skipped: 0 }, hostsOmitted: 1 });

  it('takes a whole view as it is', () => {
    assert.equal(mergeHosts(null, first), first);
    const again = rollout([host('z', 0, HostPhase.HOST_PHASE_FAILED)]);
    assert.equal(mergeHosts(first, again), again, 'a new first message (after a failover) replaces what was merged');
  });

  it('replaces changed hosts by name, adds new ones, keeps wave-then-name order and the record of the delta', () => {
    const delta = rollout([host('a', 0, HostPhase.HOST_PHASE_UPDATED), host('c', 1, HostPhase.HOST_PHASE_PENDING)], {
      phase: RolloutPhase.ROLLOUT_PHASE_PAUSED, hostsChangedOnly: true,
      hostCounts: { total: 3, pending: 2, updating: 0, updated: 1, failed: 0, rollingBack: 0, rolledBack: 0, restoreFailed: 0, skipped: 0 },
    });
    const merged = mergeHosts(first, delta);
    assert.deepEqual(merged.status!.hosts.map((h) => [h.host, h.phase]), [
      ['a', HostPhase.HOST_PHASE_UPDATED], ['b', HostPhase.HOST_PHASE_PENDING], ['c', HostPhase.HOST_PHASE_PENDING],
    ]);
    assert.equal(merged.status!.phase, RolloutPhase.ROLLOUT_PHASE_PAUSED);
    assert.equal(merged.status!.hostsChangedOnly, false, 'the merged view is whole');
    assert.equal(merged.status!.hostsOmitted, 0, 'the host the first message left out arrived');
  });
});
