import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Intent } from '../../proto/gen/bpfleet/v1/agent.js';
import { DrainState, type HostDrain } from '../../proto/gen/bpfleet/v1/control.js';
import { HostPhase, RolloutPhase, type HostProgress, type Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import { fleet, rolloutOf, step, T0 } from '../rollout/rollouts.fixture.js';
import { drainProgress, drainStep, removalsNeeded, rolloutsHolding, type HostLook, type RunningProgram } from './drain-rules.js';

const NOW = new Date(T0);
const PROG: RunningProgram = { attachment: 'xdp:eth0', module: 'pass-counter@1.0.0', digest: `sha256:${'a'.repeat(64)}` };
const DRAIN: HostDrain = { host: 'h01', state: DrainState.DRAIN_STATE_DRAINING, requestedBy: 'alice', requestedAt: NOW.toISOString(), reason: '', decommission: false, message: 'recorded', drainedAt: '' };
const look = (over: Partial<HostLook> = {}): HostLook => ({ registered: true, running: [], holding: [], intents: new Map(), now: NOW, ...over });

function planned(id: string, hosts: string[], phase: RolloutPhase): Rollout {
  const r = rolloutOf({}, id);
  const progress = hosts.map((host): HostProgress => ({ host, wave: 0, phase: HostPhase.HOST_PHASE_PENDING, previousDigest: '', previousVersion: '', message: '', progId: 0, detail: '', rollbackAttempts: 0 }));
  r.status = { ...step({ rollout: r, hosts: fleet(1), now: T0 }).rollout.status!, phase, hosts: progress };
  return r;
}

describe('rolloutsHolding', () => {
  it('names unfinished rollouts whose plan includes the host, in any unfinished phase, and no finished one', () => {
    const rollouts = [
      planned('r-paused', ['h01', 'h02'], RolloutPhase.ROLLOUT_PHASE_PAUSED),
      planned('r-back', ['h01'], RolloutPhase.ROLLOUT_PHASE_ROLLING_BACK),
      planned('r-other', ['h02'], RolloutPhase.ROLLOUT_PHASE_PROGRESSING),
      planned('r-done', ['h01'], RolloutPhase.ROLLOUT_PHASE_SUCCEEDED),
    ];
    assert.deepEqual(rolloutsHolding('h01', { role: 'edge' }, rollouts), ['r-paused', 'r-back']);
  });

  it('names a rollout not yet planned whose selector matches the host, not one whose selector does not', () => {
    const pending = rolloutOf({ selector: { role: 'edge' } }, 'r-pending');
    const elsewhere = rolloutOf({ selector: { role: 'core' } }, 'r-core');
    assert.deepEqual(rolloutsHolding('h01', { role: 'edge' }, [pending, elsewhere]), ['r-pending']);
    assert.deepEqual(rolloutsHolding('h01', null, [pending]), [], 'an unregistered host cannot be selected');
  });
});

describe('removalsNeeded', () => {
  it('skips an attachment whose intent already removes exactly the running program', () => {
    const removal = { attachment: 'xdp:eth0', module: undefined, expectedDigest: PROG.digest } as Intent;
    assert.deepEqual(removalsNeeded([PROG], new Map([['xdp:eth0', removal]])), []);
    const stale = { ...removal, expectedDigest: `sha256:${'c'.repeat(64)}` };
    assert.deepEqual(removalsNeeded([PROG], new Map([['xdp:eth0', stale]])), [PROG], 'a removal of another digest is no removal of this one');
    const install = { attachment: 'xdp:eth0', module: { name: 'pass-counter', version: '1.0.0', digest: PROG.digest }, expectedDigest: '' } as Intent;
    assert.deepEqual(removalsNeeded([PROG], new Map([['xdp:eth0', install]])), [PROG]);
  });
});

describe('drainStep', () => {
  it('removes nothing while a rollout holds the host, naming it', () => {
    const s = drainStep(DRAIN, look({ running: [PROG], holding: ['r-1'] }));
    assert.deepEqual(s.remove, []);
    assert.equal(s.drain.state, DrainState.DRAIN_STATE_DRAINING);
    assert.equal(s.drain.message, 'waiting for rollout r-1 to finish');
  });

  it('removes what runs, then is DRAINED once nothing does (and stays unchanged after)', () => {
    const removing = drainStep(DRAIN, look({ running: [PROG] }));
    assert.deepEqual(removing.remove, [PROG]);
    assert.equal(removing.drain.message, 'removing pass-counter@1.0.0 on xdp:eth0');
    const drained = drainStep(removing.drain, look());
    assert.equal(drained.drain.state, DrainState.DRAIN_STATE_DRAINED);
    assert.equal(drained.drain.drainedAt, NOW.toISOString());
    assert.equal(drained.forget, false);
    assert.equal(drainStep(drained.drain, look({ now: new Date(T0 + 5000) })).drain, drained.drain, 'nothing to write when nothing changed');
  });

  it('a drained host that runs a program again (an agent back with old pins) is draining again', () => {
    const drained = { ...DRAIN, state: DrainState.DRAIN_STATE_DRAINED, drainedAt: NOW.toISOString() };
    const s = drainStep(drained, look({ running: [PROG] }));
    assert.equal(s.drain.state, DrainState.DRAIN_STATE_DRAINING);
    assert.deepEqual(s.remove, [PROG]);
  });

  it('an unregistered host keeps draining: its removals are written for its agent to find', () => {
    const s = drainStep(DRAIN, look({ registered: false, running: [PROG] }));
    assert.equal(s.drain.state, DrainState.DRAIN_STATE_DRAINING);
    assert.deepEqual(s.remove, [PROG]);
    assert.match(s.drain.message, /not registered: pass-counter@1\.0\.0 on xdp:eth0 will be removed when its agent comes back/);
  });

  it('a decommission forgets the host once it runs nothing, or at once when its agent is gone', () => {
    const d = { ...DRAIN, decommission: true };
    assert.equal(drainStep(d, look({ running: [PROG] })).forget, false, 'a live agent removes its programs first');
    for (const l of [look(), look({ registered: false, running: [PROG] })]) {
      const s = drainStep(d, l);
      assert.equal(s.forget, true);
      assert.equal(s.drain.state, DrainState.DRAIN_STATE_DECOMMISSIONED);
    }
  });

  it('a decommissioned host that registers again is an ordinary drain, never forgotten under its running agent', () => {
    const gone = { ...DRAIN, decommission: true, state: DrainState.DRAIN_STATE_DECOMMISSIONED, drainedAt: NOW.toISOString() };
    assert.equal(drainStep(gone, look({ registered: false })).drain, gone);
    const back = drainStep(gone, look({ running: [PROG] }));
    assert.equal(back.forget, false);
    assert.equal(back.drain.decommission, false);
    assert.equal(back.drain.state, DrainState.DRAIN_STATE_DRAINING);
    assert.deepEqual(back.remove, [PROG]);
  });
});

describe('planning a rollout', () => {
  it('leaves drained hosts out of the plan', () => {
    const hosts = fleet(3);
    hosts[1]!.drained = true;
    const d = step({ rollout: rolloutOf(), hosts, now: T0 });
    assert.deepEqual(d.rollout.status!.hosts.map((h) => h.host).sort(), ['h01', 'h03']);
  });

  it('fails, saying so, when every host the selector matches is drained', () => {
    const d = step({ rollout: rolloutOf(), hosts: fleet(2, { drained: true }), now: T0 });
    assert.equal(d.rollout.status!.phase, RolloutPhase.ROLLOUT_PHASE_FAILED);
    assert.match(d.rollout.status!.message, /every host that matches the selector \{\} is drained \(h01, h02\); undrain one with bpfleet hosts undrain/);
  });
});

describe('drainProgress', () => {
  it('orders draining < drained < decommissioned (the enum values are strings that sort otherwise)', () => {
    const order = [DrainState.DRAIN_STATE_DRAINING, DrainState.DRAIN_STATE_DRAINED, DrainState.DRAIN_STATE_DECOMMISSIONED].map(drainProgress);
    assert.deepEqual(order, [0, 1, 2]);
    assert.equal(drainProgress(DrainState.DRAIN_STATE_UNSPECIFIED), -1);
  });
});
