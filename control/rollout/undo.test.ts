import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BpfleetError } from '../../common/errors.js';
import { HostPhase, RolloutPhase, type HostProgress, type Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import { emptyStatus } from './vocabulary.js';
import { toRolloutSpec } from './spec.js';
import { undoSpec } from './undo.js';

const NEW = `sha256:${'2'.repeat(64)}`;
const OLD = `sha256:${'1'.repeat(64)}`;

function host(name: string, phase: HostPhase, previousVersion = '1.0.0', previousDigest = OLD): HostProgress {
  return { host: name, wave: 0, phase, previousDigest, previousVersion, message: '', progId: 0, detail: '', rollbackAttempts: 0 };
}

function finished(phase: RolloutPhase, hosts: HostProgress[], over: Partial<Rollout> = {}): Rollout {
  return {
    id: 'r-1',
    spec: toRolloutSpec({ module: 'pass-counter', version: '2.0.0', attachment: 'xdp:eth0', selector: { role: 'edge' }, steps: [{ canary: 1 }, { bake: '5s' }, { percent: 100 }] }),
    status: { ...emptyStatus(), phase, hosts, digest: NEW },
    createdAt: '2026-01-01T10:00:00.000Z',
    createdBy: 'alice',
    undoOf: '',
    ...over,
  };
}

function refusal(f: () => unknown): BpfleetError {
  try {
    f();
  } catch (err) {
    assert.ok(err instanceof BpfleetError);
    assert.equal(err.code, 'FAILED_PRECONDITION');
    return err;
  }
  assert.fail('not refused');
}

const U = HostPhase.HOST_PHASE_UPDATED;

describe('undoSpec', () => {
  it('aims the same selector, steps and analysis at the version the rollout replaced', () => {
    const r = finished(RolloutPhase.ROLLOUT_PHASE_SUCCEEDED, [host('h1', U), host('h2', U), host('h3', U, '2.0.0', NEW)]);
    const spec = undoSpec(r, [r]);
    assert.deepEqual(spec, { ...r.spec!, version: '1.0.0' });
    assert.notEqual(spec.steps, r.spec!.steps, 'a copy, not the original');
  });

  it('undoes a halted failure that left its canary on the new version', () => {
    const r = finished(RolloutPhase.ROLLOUT_PHASE_FAILED, [host('h1', U), host('h2', HostPhase.HOST_PHASE_PENDING)]);
    assert.equal(undoSpec(r, []).version, '1.0.0');
  });

  it('refuses a rollout that is still running', () => {
    const e = refusal(() => undoSpec(finished(RolloutPhase.ROLLOUT_PHASE_PROGRESSING, [host('h1', U)]), []));
    assert.equal(e.reason, 'ROLLOUT_ACTIVE');
    assert.match(e.message, /abort it/);
  });

  it('refuses when no host was left changed', () => {
    const e = refusal(() => undoSpec(finished(RolloutPhase.ROLLOUT_PHASE_ROLLED_BACK, [host('h1', HostPhase.HOST_PHASE_ROLLED_BACK)]), []));
    assert.equal(e.reason, 'NOTHING_TO_UNDO');
  });

  it('refuses, naming hosts, when the previous versions differ', () => {
    const r = finished(RolloutPhase.ROLLOUT_PHASE_SUCCEEDED, [host('h1', U), host('h2', U, '1.1.0', `sha256:${'3'.repeat(64)}`)]);
    const e = refusal(() => undoSpec(r, []));
    assert.equal(e.reason, 'MIXED_PREVIOUS_VERSIONS');
    assert.match(e.message, /1\.0\.0 \(h1\), 1\.1\.0 \(h2\)/);
  });

  it('refuses when hosts ran nothing before: a rollout cannot remove a module', () => {
    const r = finished(RolloutPhase.ROLLOUT_PHASE_SUCCEEDED, [host('h1', U, '', '')]);
    const e = refusal(() => undoSpec(r, []));
    assert.equal(e.reason, 'NO_PREVIOUS_VERSION');
    assert.match(e.message, /h1 ran nothing on xdp:eth0/);
  });

  it('refuses when a later rollout of the same module and attachment changed hosts', () => {
    const r = finished(RolloutPhase.ROLLOUT_PHASE_SUCCEEDED, [host('h1', U)]);
    const later = finished(RolloutPhase.ROLLOUT_PHASE_SUCCEEDED, [], { id: 'r-2', createdAt: '2026-01-01T11:00:00.000Z' });
    const e = refusal(() => undoSpec(r, [r, later]));
    assert.equal(e.reason, 'SUPERSEDED');
    assert.match(e.message, /r-2/);
    // One that was rolled back, or is on another attachment, does not count.
    const rolledBack = { ...later, status: { ...later.status!, phase: RolloutPhase.ROLLOUT_PHASE_ROLLED_BACK } };
    const elsewhere = { ...later, spec: { ...later.spec!, attachment: 'xdp:eth1' } };
    assert.equal(undoSpec(r, [r, rolledBack, elsewhere]).version, '1.0.0');
  });
});
