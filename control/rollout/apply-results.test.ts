import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HostPhase } from '../../proto/gen/bpfleet/v1/rollout.js';
import { recordApply, type ApplyAction } from './apply-results.js';
import { describe as describeEvent } from './events.js';
import { fleet, hostOf, OLD, rolloutOf, step, T0, TARGET } from './rollouts.fixture.js';

const H = HostPhase;

describe('recordApply', () => {
  it('ignores results for hosts the rollout did not plan', () => {
    const r = step({ rollout: rolloutOf(), hosts: fleet(2), now: T0 }).rollout;
    const out = recordApply(r, { kind: 'apply', host: 'stranger', module: TARGET, expectedDigest: '', purpose: 'update' }, { ok: true, progId: 1 }, T0);
    assert.deepEqual(out.rollout.status!.hosts, r.status!.hosts);
    assert.match(describeEvent(out.event), /unplanned host stranger/);
  });

  it('does not modify the rollout it is given', () => {
    const r = step({ rollout: rolloutOf(), hosts: fleet(2), now: T0 }).rollout;
    const copy = structuredClone(r);
    recordApply(r, { kind: 'apply', host: r.status!.hosts[0]!.host, module: TARGET, expectedDigest: '', purpose: 'update' }, { ok: true, progId: 1 }, T0 + 5);
    assert.deepEqual(r, copy);
  });

  it('a successful rollback marks the host ROLLED_BACK and clears its message', () => {
    const r = step({ rollout: rolloutOf(), hosts: fleet(2), now: T0 }).rollout;
    const h = r.status!.hosts[0]!;
    h.phase = H.HOST_PHASE_ROLLING_BACK;
    h.message = 'UNAVAILABLE: earlier attempt';
    const out = recordApply(r, { kind: 'apply', host: h.host, module: OLD, expectedDigest: TARGET.digest, purpose: 'rollback' }, { ok: true, progId: 5 }, T0 + 5);
    assert.equal(hostOf(out.rollout, h.host).phase, H.HOST_PHASE_ROLLED_BACK);
    assert.equal(hostOf(out.rollout, h.host).message, '');
    assert.equal(out.rollout.status!.updatedAt, new Date(T0 + 5).toISOString());
  });
});

describe('recordApply: the detail of a failure', () => {
  const LOG = Array.from({ length: 60 }, (_, i) => `verifier line ${i + 1}`).join('\n');

  it('keeps the last 30 lines of a failed update, through the rollback, and clears it on a later update', () => {
    const r = step({ rollout: rolloutOf(), hosts: fleet(2), now: T0 }).rollout;
    const host = r.status!.hosts[0]!.host;
    const update: ApplyAction = { kind: 'apply', host, module: TARGET, expectedDigest: OLD.digest, purpose: 'update' };
    const failed = recordApply(r, update, { ok: false, reason: 'VERIFIER_REJECTED', message: 'R1 offset is outside of the packet', detail: LOG }, T0 + 1).rollout;
    const kept = hostOf(failed, host).detail.split('\n');
    assert.equal(kept.length, 30);
    assert.deepEqual([kept[0], kept[29]], ['verifier line 31', 'verifier line 60']);

    const rollback: ApplyAction = { kind: 'apply', host, module: OLD, expectedDigest: TARGET.digest, purpose: 'rollback' };
    const unreachable = recordApply(failed, rollback, { ok: false, reason: 'UNAVAILABLE', message: 'agent down' }, T0 + 2).rollout;
    assert.equal(hostOf(unreachable, host).detail, hostOf(failed, host).detail, 'a failure without a detail keeps the one there');
    const rolledBack = recordApply(unreachable, rollback, { ok: true, progId: 9 }, T0 + 3).rollout;
    assert.equal(hostOf(rolledBack, host).detail, hostOf(failed, host).detail, 'the rollback keeps why it happened');

    const updated = recordApply(rolledBack, update, { ok: true, progId: 10 }, T0 + 4).rollout;
    assert.equal(hostOf(updated, host).detail, '');
  });
});
