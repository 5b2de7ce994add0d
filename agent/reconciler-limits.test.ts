/**
 * The reconciler's bounds (kind 4 of issue 11): an apply is checked before it takes a
 * place in its attachment's queue, a queue holds at most MAX_PENDING_APPLIES, queues of
 * drained attachments leave nothing behind, and the apply history keeps the last
 * MAX_APPLY_HISTORY records.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BpfleetError } from '../common/errors.js';
import type { Intent } from '../proto/gen/bpfleet/v1/agent.js';
import type { Module } from '../proto/gen/bpfleet/v1/module.js';
import { simArtifact } from './dataplane/sim/artifacts.js';
import { SimDriver } from './dataplane/sim/sim-driver.js';
import { MAX_APPLY_HISTORY, MAX_PENDING_APPLIES, Reconciler, type ModuleSource } from './reconciler.js';

const V1 = simArtifact({ name: 'pass-counter', version: '1.0.0' });
const V2 = simArtifact({ name: 'pass-counter', version: '2.0.0' });
const moduleOf = (a: typeof V1): Module => ({
  manifest: a.manifest, digest: a.digest, size: a.object.length, objectKey: a.digest, pushedAt: '', pushedBy: 't', signature: Buffer.alloc(0), keyId: '',
});

/** A source whose object reads wait until released: applies pile up behind the first. */
function gatedSource() {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const source: ModuleSource = {
    module: async (_n, version) => moduleOf(version === '1.0.0' ? V1 : V2),
    object: async (digest) => {
      await gate;
      return digest === V1.digest ? V1.object : V2.object;
    },
  };
  return { source, release };
}

function intent(generation: number, over: Partial<Intent> = {}): Intent {
  const a = generation % 2 ? V1 : V2;
  return {
    host: 'edge-1', attachment: 'xdp:eth0', module: { name: a.manifest.name, version: a.manifest.version, digest: a.digest },
    expectedDigest: '', rolloutId: 'r', generation, leaderEpoch: 1, ...over,
  };
}

const reason = (r: string) => (err: unknown) => err instanceof BpfleetError && err.reason === r;

describe('reconciler bounds', () => {
  it('refuses an apply past MAX_PENDING_APPLIES on one attachment, and drains to nothing', async () => {
    const { source, release } = gatedSource();
    const reconciler = new Reconciler('edge-1', new SimDriver({ now: () => 0 }), source, { report: async () => undefined });
    const queued = Array.from({ length: MAX_PENDING_APPLIES }, (_, i) => reconciler.apply(intent(i + 1)).catch((e: unknown) => e));
    assert.equal(reconciler.pendingApplies('xdp:eth0'), MAX_PENDING_APPLIES);
    await assert.rejects(reconciler.apply(intent(99)), reason('APPLY_QUEUE_FULL'));
    release();
    await Promise.all(queued);
    assert.equal(reconciler.pendingApplies('xdp:eth0'), 0);
    // A drained queue admits again (the apply itself may be refused for drift: it was admitted).
    const outcome = await reconciler.apply(intent(100)).catch((e: unknown) => e);
    assert.ok(!reason('APPLY_QUEUE_FULL')(outcome));
  });

  it('checks an intent before queueing it: bad attachments and other hosts take no place', async () => {
    const { source, release } = gatedSource();
    const reconciler = new Reconciler('edge-1', new SimDriver({ now: () => 0 }), source, { report: async () => undefined });
    for (let i = 0; i < 1000; i++) {
      await assert.rejects(reconciler.apply(intent(1, { attachment: `junk-${i}` })), reason('BAD_ATTACHMENT'));
      await assert.rejects(reconciler.apply(intent(1, { host: `other-${i}` })), reason('WRONG_HOST'));
    }
    assert.equal(reconciler.pendingApplies('junk-1'), 0);
    release();
  });

  it(`keeps the last ${MAX_APPLY_HISTORY} apply records`, async () => {
    const { source, release } = gatedSource();
    release();
    const reconciler = new Reconciler('edge-1', new SimDriver({ now: () => 0 }), source, { report: async () => undefined });
    const n = MAX_APPLY_HISTORY + 50;
    for (let g = 1; g <= n; g++) await reconciler.apply(intent(g, { expectedDigest: g === 1 ? '' : (g % 2 ? V2 : V1).digest }));
    assert.equal(reconciler.history.length, MAX_APPLY_HISTORY);
    assert.equal(reconciler.history.at(-1)!.generation, n);
    assert.equal(reconciler.history[0]!.generation, n - MAX_APPLY_HISTORY + 1);
  });
});
