import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RolloutPhase } from '../../proto/gen/bpfleet/v1/rollout.js';
import { emptyStatus } from './vocabulary.js';

const P = RolloutPhase;

describe('emptyStatus', () => {
  it('starts pending at step 0', () => {
    const s = emptyStatus();
    assert.equal(s.phase, P.ROLLOUT_PHASE_PENDING);
    assert.equal(s.step, 0);
    assert.deepEqual(s.hosts, []);
  });
});
