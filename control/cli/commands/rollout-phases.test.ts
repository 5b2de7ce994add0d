import assert from 'node:assert/strict';
import { it } from 'node:test';
import { BpfleetError } from '../../../common/errors.js';
import { HostPhase } from '../../../proto/gen/bpfleet/v1/rollout.js';
import { parsePhases } from './rollout.js';

it('--phase takes the host phases as people write them, and names the words it takes otherwise', () => {
  assert.deepEqual(parsePhases('failed, Restore-Failed,rolled-back'), [HostPhase.HOST_PHASE_FAILED, HostPhase.HOST_PHASE_RESTORE_FAILED, HostPhase.HOST_PHASE_ROLLED_BACK]);
  assert.throws(() => parsePhases('failed,broken'), (err: BpfleetError) => err.reason === 'USAGE' && /"broken" is not a host phase; use pending, updating, updated, failed, rolling-back, rolled-back, restore-failed/.test(err.message));
});
