import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Intent } from '../../proto/gen/bpfleet/v1/agent.js';
import type { Host } from '../../proto/gen/bpfleet/v1/control.js';
import { HostPhase, RolloutPhase, type Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import { AttachmentStatus } from '../../proto/gen/bpfleet/v1/agent.js';
import { fleet, rolloutOf, step, T0 } from '../rollout/rollouts.fixture.js';
import { describeUses, versionUses } from './retire-rules.js';

const host = (name: string, version: string): Host => ({
  name, labels: {}, address: '', kernel: '', capabilities: [], registeredAt: '', agentVersion: '', lagging: [], refused: '', claimedName: '',
  attachments: version ? [{ attachment: 'xdp:eth0', module: 'pass-counter', version, digest: '', progId: 1, status: AttachmentStatus.ATTACHMENT_STATUS_RUNNING, reason: '', unverified: '' }] : [],
});
const intent = (h: string, version: string): Intent => ({ host: h, attachment: 'xdp:eth0', module: { name: 'pass-counter', version, digest: '' }, expectedDigest: '', rolloutId: '', generation: 1, leaderEpoch: 1 });

/** A planned rollout of pass-counter@2.0.0 from 1.0.0, in `phase`. */
function rolloutFrom1(id: string, phase: RolloutPhase): Rollout {
  const r = rolloutOf({}, id);
  const planned = step({ rollout: r, hosts: fleet(1), now: T0 }).rollout;
  planned.status!.phase = phase;
  planned.status!.hosts[0]!.phase = HostPhase.HOST_PHASE_UPDATED;
  return planned;
}

describe('versionUses', () => {
  it('names hosts running it, hosts whose intent names it, and unfinished rollouts targeting or restoring it', () => {
    const uses = versionUses('pass-counter', '1.0.0', {
      hosts: [host('h1', '1.0.0'), host('h2', '2.0.0'), host('h3', '')],
      intents: [intent('h1', '1.0.0'), intent('h4', '1.0.0'), intent('h2', '2.0.0')],
      rollouts: [rolloutFrom1('r-back', RolloutPhase.ROLLOUT_PHASE_PROGRESSING), rolloutFrom1('r-done', RolloutPhase.ROLLOUT_PHASE_SUCCEEDED)],
    });
    assert.deepEqual(uses, { running: ['h1'], intended: ['h1', 'h4'], rollouts: ['r-back'] });
    assert.equal(describeUses(uses), 'running on h1; the desired state of h4; used by unfinished rollout r-back');
  });

  it('finds nothing for a version only finished rollouts and other modules mention', () => {
    const other = { ...host('h1', ''), attachments: [{ attachment: 'xdp:eth0', module: 'other', version: '1.0.0', digest: '', progId: 1, status: AttachmentStatus.ATTACHMENT_STATUS_RUNNING, reason: '', unverified: '' }] };
    const uses = versionUses('pass-counter', '1.0.0', { hosts: [other], intents: [], rollouts: [rolloutFrom1('r-done', RolloutPhase.ROLLOUT_PHASE_SUCCEEDED)] });
    assert.equal(describeUses(uses), '');
  });

  it('lists at most ten names, then how many more', () => {
    const hosts = Array.from({ length: 12 }, (_, i) => host(`h${i + 1}`, '1.0.0'));
    assert.equal(describeUses(versionUses('pass-counter', '1.0.0', { hosts, intents: [], rollouts: [] })), 'running on h1, h2, h3, h4, h5, h6, h7, h8, h9, h10 and 2 more');
  });
});
