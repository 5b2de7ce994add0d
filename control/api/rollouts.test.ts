import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BpfleetError } from '../../common/errors.js';
import { HookKind } from '../../proto/gen/bpfleet/v1/module.js';
import { RolloutPhase, type Rollout, type RolloutSpec } from '../../proto/gen/bpfleet/v1/rollout.js';
import type { ModuleRegistry } from '../../common/etcd/modules.js';
import type { RetiredVersions } from '../store/retired.js';
import type { RolloutStore } from '../store/rollouts.js';
import { requireId, startRollout } from './rollouts.js';

const SPEC = { module: 'pass-counter', version: '2.0.0', attachment: 'xdp:eth0' } as RolloutSpec;
const NOW = new Date('2026-01-02T03:04:05.678Z');

/** Stores that keep what startRollout created; `pushed` lists the module versions that exist, `retiredVersions` those retired. */
function fakeStores(pushed: string[], programs = [{ name: 'xdp_pass', hook: HookKind.HOOK_KIND_XDP }], retiredVersions: string[] = []) {
  const created: Rollout[] = [];
  const modules = {
    require: async (name: string, version: string) => {
      if (!pushed.includes(`${name}@${version}`)) throw new BpfleetError('NOT_FOUND', 'MODULE_NOT_FOUND', `module ${name}@${version} not found`);
      return { manifest: { name, version, programs }, digest: 'sha256:00', signature: Buffer.alloc(0), keyId: '' };
    },
  } as unknown as ModuleRegistry;
  const rollouts = { create: async (r: Rollout) => void created.push(structuredClone(r)) } as unknown as RolloutStore;
  const retired = { get: async (name: string, version: string) => (retiredVersions.includes(`${name}@${version}`) ? { at: '2026-01-01T00:00:00.000Z', by: 'carol', digest: 'sha256:00' } : null) } as unknown as RetiredVersions;
  return { deps: { modules, rollouts, retired, clock: () => NOW }, created };
}

describe('startRollout', () => {
  it('refuses a retired version with VERSION_RETIRED, naming who retired it, and stores nothing', async () => {
    const { deps, created } = fakeStores([], undefined, ['pass-counter@2.0.0']);
    await assert.rejects(startRollout(deps, SPEC, 'alice'), (err: BpfleetError) => {
      assert.equal(err.code, 'FAILED_PRECONDITION');
      assert.equal(err.reason, 'VERSION_RETIRED');
      assert.match(err.message, /pass-counter@2\.0\.0 was retired by carol at 2026-01-01T00:00:00\.000Z; roll out another version/);
      return true;
    });
    assert.deepEqual(created, []);
  });

  it('refuses a rollout onto a hook the module has no program for, naming the hook and its programs', async () => {
    const { deps, created } = fakeStores(['pass-counter@2.0.0'], [{ name: 'egress_count', hook: HookKind.HOOK_KIND_TCX_EGRESS }]);
    await assert.rejects(startRollout(deps, SPEC, 'alice'), (err: BpfleetError) => {
      assert.equal(err.code, 'FAILED_PRECONDITION');
      assert.equal(err.reason, 'NO_PROGRAM_FOR_HOOK');
      assert.equal(err.message, 'pass-counter@2.0.0 has no xdp program for xdp:eth0; its programs: egress_count (tcx-egress)');
      return true;
    });
    assert.deepEqual(created, [], 'nothing stored');
  });

  it('stores a PENDING rollout of the spec, named after the module and the time, and returns it', async () => {
    const { deps, created } = fakeStores(['pass-counter@2.0.0']);
    const r = await startRollout(deps, SPEC, 'alice@ci');
    assert.match(r.id, /^pass-counter-260102030405-[0-9a-f]{4}$/);
    assert.equal(r.spec, SPEC);
    assert.equal(r.status?.phase, RolloutPhase.ROLLOUT_PHASE_PENDING);
    assert.deepEqual(r.status?.hosts, []);
    assert.equal(r.createdAt, NOW.toISOString());
    assert.equal(r.createdBy, 'alice@ci');
    assert.equal(r.undoOf, '');
    assert.deepEqual(created, [r]);
  });

  it('names the rollout it undoes', async () => {
    const { deps } = fakeStores(['pass-counter@2.0.0']);
    assert.equal((await startRollout(deps, SPEC, 'bob', 'pass-counter-260101000000-ab12')).undoOf, 'pass-counter-260101000000-ab12');
  });

  it('refuses a version that was never pushed and stores nothing', async () => {
    const { deps, created } = fakeStores([]);
    await assert.rejects(startRollout(deps, SPEC, 'alice@ci'), (err: BpfleetError) => err.reason === 'MODULE_NOT_FOUND');
    assert.deepEqual(created, []);
  });
});

describe('startRollout under a fleet-wide signature policy', () => {
  it('refuses an unsigned module before storing anything', async () => {
    const { deps, created } = fakeStores(['pass-counter@2.0.0']);
    await assert.rejects(startRollout({ ...deps, signatures: { require: true, trusted: null } }, SPEC, 'alice@ci'),
      (err: BpfleetError) => err.code === 'PERMISSION_DENIED' && err.reason === 'UNSIGNED' && /pass-counter@2.0.0 is not signed and the fleet requires signed modules/.test(err.message));
    assert.deepEqual(created, []);
    await startRollout({ ...deps, signatures: { require: false, trusted: null } }, SPEC, 'alice@ci');
    assert.equal(created.length, 1, 'without require, an unsigned module passes');
  });
});

describe('requireId', () => {
  it('passes an id through and refuses an empty one as MISSING_ID', () => {
    assert.equal(requireId('r-1'), 'r-1');
    assert.throws(() => requireId(''), (err: BpfleetError) => err.code === 'INVALID_ARGUMENT' && err.reason === 'MISSING_ID');
  });
});
