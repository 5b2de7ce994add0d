/**
 * What the reconciler checks before it calls the driver (signature policy, the registry
 * record) and where it calls the swap checkpoint. Pure logic over the in-memory sim: the
 * kernel side of the same is e2e/signatures.test.ts and e2e/crash-safety.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BpfleetError } from '../common/errors.js';
import { generateKeyPair, parsePrivateKey, signModule, TrustedKeys, type KeyPair } from '../common/signing.js';
import type { GetStateResponse, Intent } from '../proto/gen/bpfleet/v1/agent.js';
import type { Module } from '../proto/gen/bpfleet/v1/module.js';
import type { SwapPoint } from './crash-hook.js';
import type { ModuleArtifact } from './dataplane/driver.js';
import { simArtifact } from './dataplane/sim/artifacts.js';
import { SimDriver } from './dataplane/sim/sim-driver.js';
import { Reconciler, type ReconcilerOptions } from './reconciler.js';

const HOST = 'edge-1';
const V1 = simArtifact({ name: 'pass-counter', version: '1.0.0' });
const V2 = simArtifact({ name: 'pass-counter', version: '2.0.0' });
const RELEASE = generateKeyPair();
const ROGUE = generateKeyPair();

function record(a: ModuleArtifact, key?: KeyPair): Module {
  const sig = key ? signModule(a.manifest, a.digest, parsePrivateKey(key.privateKey, 'key')) : { signature: Buffer.alloc(0), keyId: '' };
  return { manifest: a.manifest, digest: a.digest, size: a.object.length, objectKey: a.digest, pushedAt: '', pushedBy: 't', ...sig };
}

/** `modules` as the registry files them: under their own name@version unless told otherwise. */
function setup(modules: (Module | [version: string, Module])[], options: ReconcilerOptions) {
  const filed = modules.map((m) => (Array.isArray(m) ? m : [m.manifest!.version, m] as const));
  const driver = new SimDriver({ now: () => 0 });
  const objects = new Map([[V1.digest, V1.object], [V2.digest, V2.object]]);
  const fetched: string[] = [];
  const reports: GetStateResponse[] = [];
  const reconciler = new Reconciler(HOST, driver, {
    module: async (name, version) => filed.find(([v, m]) => m.manifest!.name === name && v === version)?.[1] ?? null,
    object: async (digest) => {
      fetched.push(digest);
      return objects.get(digest)!;
    },
  }, { report: async (s) => void reports.push(s) }, () => new Date(0), options);
  return { driver, reconciler, fetched, reports };
}

const intent = (a: ModuleArtifact, generation: number, expectedDigest = ''): Intent => ({
  host: HOST, attachment: 'xdp:eth0', module: { name: a.manifest.name, version: a.manifest.version, digest: a.digest },
  expectedDigest, rolloutId: 'r', generation, leaderEpoch: 1,
});

async function reasonOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'APPLIED';
  } catch (err) {
    assert.ok(err instanceof BpfleetError, String(err));
    return err.reason;
  }
}

describe('reconciler: signature policy', () => {
  const policy = { signatures: { require: true, trusted: TrustedKeys.of([RELEASE.publicKey]) } };

  it('refuses unsigned, untrusted and replayed modules before fetching or loading anything', async () => {
    // V1's signature on V2's record: the object and version it covers are V1's.
    const replayed = { ...record(V1, RELEASE), manifest: V2.manifest, digest: V2.digest };
    const cases: [Module, string][] = [[record(V2), 'UNSIGNED'], [record(V2, ROGUE), 'UNTRUSTED_KEY'], [replayed, 'BAD_SIGNATURE']];
    for (const [m, reason] of cases) {
      const only = setup([record(V1, RELEASE), m], policy);
      await only.reconciler.apply(intent(V1, 1));
      const before = { running: await only.driver.observe(), fetched: [...only.fetched], reports: only.reports.length };
      assert.equal(await reasonOf(only.reconciler.apply(intent(V2, 2, V1.digest))), reason);
      assert.deepEqual({ running: await only.driver.observe(), fetched: only.fetched, reports: only.reports.length }, before, `${reason} changed something`);
    }
  });

  it('installs a module signed by a trusted key', async () => {
    const s = setup([record(V1, RELEASE), record(V2, RELEASE)], policy);
    await s.reconciler.apply(intent(V1, 1));
    const r = await s.reconciler.apply(intent(V2, 2, V1.digest));
    assert.equal(r.changed, true);
    assert.equal((await s.driver.observe())[0]?.digest, V2.digest);
  });

  it('refuses a registry record filed under another version, signed or not', async () => {
    const s = setup([['2.0.0', { ...record(V1), digest: V2.digest }]], {});
    assert.equal(await reasonOf(s.reconciler.apply(intent(V2, 1))), 'REGISTRY_MISMATCH');
    assert.deepEqual(await s.driver.observe(), []);
  });
});

describe('reconciler: swap checkpoint', () => {
  it('passes before-report only for an install that replaced a running program', async () => {
    const seen: SwapPoint[] = [];
    const s = setup([record(V1), record(V2)], { checkpoint: (p) => void seen.push(p) });
    await s.reconciler.apply(intent(V1, 1));
    assert.deepEqual(seen, [], 'a first attach is not a swap');
    const reportsBefore = s.reports.length;
    await s.reconciler.apply(intent(V2, 2, V1.digest));
    assert.deepEqual(seen, ['before-report']);
    assert.equal(s.reports.length, reportsBefore + 1, 'the report follows the checkpoint');
    await s.reconciler.apply(intent(V2, 3, V1.digest));
    assert.deepEqual(seen, ['before-report'], 'an install that changed nothing is not a swap');
  });
});
