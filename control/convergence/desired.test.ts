import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AttachmentStatus } from '../../proto/gen/bpfleet/v1/agent.js';
import type { Host, HostAttachment } from '../../proto/gen/bpfleet/v1/control.js';
import { RolloutPhase, type Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import { toRolloutSpec } from '../rollout/spec.js';
import { emptyStatus } from '../rollout/vocabulary.js';
import { convergeActions, desiredFor, lagsOf, ownedScopes, scopeOf, type DesiredRecord } from './desired.js';

const V1 = `sha256:${'1'.repeat(64)}`;
const V2 = `sha256:${'2'.repeat(64)}`;
const V3 = `sha256:${'3'.repeat(64)}`;

function record(version: string, digest: string, revision: number, over: Partial<DesiredRecord> = {}): DesiredRecord {
  return { module: 'm', version, digest, attachment: 'xdp:eth0', selector: {}, rolloutId: `r-${version}`, at: `2026-01-01T00:00:0${revision}.000Z`, revision, ...over };
}

function running(version: string, digest: string, over: Partial<HostAttachment> = {}): HostAttachment {
  return { attachment: 'xdp:eth0', module: 'm', version, digest, progId: 7, status: AttachmentStatus.ATTACHMENT_STATUS_RUNNING, reason: '', unverified: '', ...over };
}

type HostIn = Pick<Host, 'name' | 'labels' | 'capabilities' | 'attachments'>;
const host = (name: string, attachments: HostAttachment[], labels: Record<string, string> = { env: 'prod' }): HostIn =>
  ({ name, labels, capabilities: ['xdp', 'tcx-ingress'], attachments });

function rollout(id: string, over: { phase: RolloutPhase; halt?: boolean; updated?: number; createdAt: string }): Rollout {
  const status = { ...emptyStatus(), phase: over.phase };
  status.hostCounts = { total: 3, pending: 0, updating: 0, updated: over.updated ?? 0, failed: 0, rollingBack: 0, rolledBack: 0, restoreFailed: 0, skipped: 0 };
  return {
    id, createdAt: over.createdAt, createdBy: 't', undoOf: '', status,
    spec: toRolloutSpec({ module: 'm', version: '9', attachment: 'xdp:eth0', steps: [{ canary: 1 }], ...(over.halt ? { onFailure: 'halt' } : {}) }),
  };
}

describe('desired state: which version covers a host', () => {
  it('takes the newest record whose selector matches, whatever its breadth', () => {
    const all = record('2', V2, 1);
    const prod = record('3', V3, 2, { selector: { env: 'prod' } });
    assert.equal(desiredFor({ env: 'prod' }, 'xdp:eth0', [all, prod])?.version, '3');
    assert.equal(desiredFor({ env: 'dev' }, 'xdp:eth0', [all, prod])?.version, '2', 'a selector that does not match is no candidate');
    const allLater = record('4', V3, 3);
    assert.equal(desiredFor({ env: 'prod' }, 'xdp:eth0', [all, prod, allLater])?.version, '4', 'a later, broader rollout covers the host too');
    assert.equal(desiredFor({ env: 'prod' }, 'tcx-ingress:eth0', [all, prod]), null, 'per attachment');
  });
});

describe('desired state: lag', () => {
  const records = [record('2', V2, 1)];
  it('flags nothing installed, another version, another module and a BROKEN attachment; not a host on the version', () => {
    assert.deepEqual(lagsOf(host('a', [running('2', V2)]), records), []);
    assert.deepEqual(lagsOf(host('b', []), records).map((l) => [l.reason, l.runningVersion, l.desiredVersion]), [['NOT_INSTALLED', '', '2']]);
    assert.deepEqual(lagsOf(host('c', [running('1', V1)]), records).map((l) => [l.reason, l.runningVersion]), [['OTHER_VERSION', '1']]);
    assert.deepEqual(lagsOf(host('d', [running('1', V1, { module: 'n' })]), records).map((l) => [l.reason, l.runningVersion]), [['OTHER_MODULE', 'n@1']]);
    assert.deepEqual(lagsOf(host('e', [running('2', V2, { status: AttachmentStatus.ATTACHMENT_STATUS_BROKEN, reason: 'NO_INTERFACE', progId: 0 })]), records).map((l) => l.reason), ['BROKEN'],
      'the right version pinned but not running on the interface is no convergence');
  });
  it('flags nothing where no record covers the host', () => {
    assert.deepEqual(lagsOf(host('a', [], { env: 'dev' }), [record('2', V2, 1, { selector: { env: 'prod' } })]), []);
  });
});

describe('desired state: convergence', () => {
  const records = [record('2', V2, 1)];
  it('installs the desired version on a returning host (old version) and a new one (nothing), replacing what runs', () => {
    const { actions, waiting } = convergeActions({ hosts: [host('old', [running('1', V1)]), host('new', []), host('ok', [running('2', V2)])], records, owned: new Map() });
    assert.deepEqual(actions.map((a) => [a.host, a.module.version, a.expectedDigest, a.rolloutId]), [['old', '2', V1, 'r-2'], ['new', '2', '', 'r-2']]);
    assert.deepEqual(waiting, []);
  });
  it('leaves a host alone while a rollout owns its module and attachment', () => {
    const owned = new Map([[scopeOf('m', 'xdp:eth0'), 'rollout r-9 is active on m xdp:eth0']]);
    const { actions, waiting } = convergeActions({ hosts: [host('old', [running('1', V1)])], records, owned });
    assert.deepEqual(actions, []);
    assert.deepEqual(waiting, [{ host: 'old', attachment: 'xdp:eth0', why: 'rollout r-9 is active on m xdp:eth0' }]);
  });
  it('never replaces another module, never installs onto a broken attachment or a hook the host lacks', () => {
    const { actions, waiting } = convergeActions({
      hosts: [
        host('other', [running('1', V1, { module: 'n' })]),
        host('broken', [running('1', V1, { status: AttachmentStatus.ATTACHMENT_STATUS_BROKEN, reason: 'NO_INTERFACE' })]),
        { ...host('nohook', []), capabilities: ['tcx-ingress'] },
      ],
      records, owned: new Map(),
    });
    assert.deepEqual(actions, []);
    assert.deepEqual(waiting.map((w) => w.host), ['other', 'broken', 'nohook']);
  });
});

describe('desired state: who owns a scope', () => {
  const records = [record('2', V2, 1, { at: '2026-01-01T00:00:10.000Z' })];
  it('an unfinished rollout owns its scope', () => {
    const owned = ownedScopes([rollout('r-a', { phase: RolloutPhase.ROLLOUT_PHASE_PROGRESSING, createdAt: '2026-01-01T00:00:20.000Z' })], records);
    assert.match(owned.get(scopeOf('m', 'xdp:eth0'))!, /r-a is active/);
  });
  it('a halted rollout that updated hosts after the record holds its scope; rolled back, succeeded or older ones do not', () => {
    const halted = (createdAt: string, updated = 1) => rollout('r-h', { phase: RolloutPhase.ROLLOUT_PHASE_FAILED, halt: true, updated, createdAt });
    assert.match(ownedScopes([halted('2026-01-01T00:00:20.000Z')], records).get(scopeOf('m', 'xdp:eth0'))!, /halted/);
    assert.equal(ownedScopes([halted('2026-01-01T00:00:05.000Z')], records).size, 0, 'a later success settled it');
    assert.equal(ownedScopes([halted('2026-01-01T00:00:20.000Z', 0)], records).size, 0, 'halted before touching a host');
    assert.equal(ownedScopes([rollout('r-b', { phase: RolloutPhase.ROLLOUT_PHASE_ROLLED_BACK, updated: 0, createdAt: '2026-01-01T00:00:20.000Z' })], records).size, 0);
    assert.equal(ownedScopes([halted('2026-01-01T00:00:20.000Z'), rollout('r-c', { phase: RolloutPhase.ROLLOUT_PHASE_ROLLED_BACK, createdAt: '2026-01-01T00:00:30.000Z' })], records).size, 0,
      'only the newest rollout of the scope counts');
  });
});
