/**
 * What the reconciler checks before it calls the driver (signature policy, the registry
 * record) and where it calls the swap checkpoint. Pure logic over the in-memory sim: the
 * kernel side of the same is e2e/signatures.test.ts and e2e/crash-safety.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BpfleetError } from '../common/errors.js';
import { generateKeyPair, parsePrivateKey, signModule, TrustedKeys, type KeyPair } from '../common/signing.js';
import { AttachmentStatus, type GetStateResponse, type Intent } from '../proto/gen/bpfleet/v1/agent.js';
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
function setup(modules: (Module | [version: string, Module])[], options: ReconcilerOptions, driver = new SimDriver({ now: () => 0 })) {
  const filed = modules.map((m) => (Array.isArray(m) ? m : [m.manifest!.version, m] as const));
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

describe('reconciler: adoption after a restart is checked against the signature policy', () => {
  const policy = { signatures: { require: true, trusted: TrustedKeys.of([RELEASE.publicKey]) } };
  /** V1 installed by an agent without a policy, then a restart with `policy` adopting it. */
  async function restarted(modules: Module[], options: ReconcilerOptions = policy) {
    const before = setup(modules, {});
    await before.reconciler.apply(intent(V1, 1));
    const after = setup(modules, options, before.driver);
    await after.reconciler.adopt(before.reconciler.state().attachments);
    return after;
  }
  const only = (s: { reconciler: Reconciler }) => s.reconciler.state().attachments[0]!;

  it('a program whose module fails the policy is UNVERIFIED with the reason, keeps running, and its own intent is refused', async () => {
    const s = await restarted([record(V1), record(V2, RELEASE)]);
    assert.deepEqual([only(s).status, only(s).reason, only(s).module?.digest], [AttachmentStatus.ATTACHMENT_STATUS_UNVERIFIED, 'UNSIGNED', V1.digest]);
    assert.match(only(s).message, /not signed/);
    assert.equal(s.reports.at(-1)!.attachments[0]!.status, AttachmentStatus.ATTACHMENT_STATUS_UNVERIFIED, 'reported as such');
    assert.equal((await s.driver.observe())[0]?.digest, V1.digest, 'left running');
    assert.equal((only(s).generation), 1, 'the marks of the apply that installed it stay');

    assert.equal(await reasonOf(s.reconciler.apply(intent(V1, 2))), 'UNSIGNED', 'never claimed as satisfying its intent');
    assert.equal(only(s).status, AttachmentStatus.ATTACHMENT_STATUS_UNVERIFIED);

    const r = await s.reconciler.apply(intent(V2, 3, V1.digest));
    assert.equal(r.changed, true, 'a verified version replaces it');
    assert.deepEqual([only(s).status, only(s).reason, only(s).module?.digest], [AttachmentStatus.ATTACHMENT_STATUS_RUNNING, '', V2.digest]);
  });

  it('each reason the policy gives is the reported one: untrusted key, a module the registry lost', async () => {
    assert.equal(only(await restarted([record(V1, ROGUE)])).reason, 'UNTRUSTED_KEY');
    const lost = setup([record(V1)], {});
    await lost.reconciler.apply(intent(V1, 1));
    const s = setup([], policy, lost.driver);
    await s.reconciler.adopt([]);
    assert.equal(only(s).reason, 'MODULE_NOT_FOUND');
  });

  it('a program whose module passes the policy is adopted RUNNING; without a policy nothing is checked', async () => {
    assert.equal(only(await restarted([record(V1, RELEASE)])).status, AttachmentStatus.ATTACHMENT_STATUS_RUNNING);
    assert.equal(only(await restarted([record(V1)], {})).status, AttachmentStatus.ATTACHMENT_STATUS_RUNNING);
  });

  it('an UNVERIFIED program may be removed: removing runs no code', async () => {
    const s = await restarted([record(V1)]);
    const removal: Intent = { ...intent(V1, 2, V1.digest), module: undefined };
    const r = await s.reconciler.apply(removal);
    assert.equal(r.changed, true);
    assert.deepEqual(await s.driver.observe(), []);
    assert.deepEqual(s.reconciler.state().attachments, []);
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
