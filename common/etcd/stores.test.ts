/**
 * The etcd stores both sides share, against a real etcd: intents in batched fenced
 * transactions (written by the leader, read and watched by each agent), host records
 * (written by agents) joined by the watched host directory, and the module registry.
 * Sizes go past etcd's 128-operations-per-transaction limit on purpose.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Etcd3 } from 'etcd3';
import { CleanupStack } from '../../dev/cleanup.js';
import { etcdWithLeader } from '../../e2e/support/etcd-leader.js';
import { prereqSkip } from '../../e2e/support/prereqs.js';
import { AttachmentStatus, GetStateResponse, type Intent } from '../../proto/gen/bpfleet/v1/agent.js';
import { Host } from '../../proto/gen/bpfleet/v1/control.js';
import type { Module } from '../../proto/gen/bpfleet/v1/module.js';
import { keys } from '../keys.js';
import type { BpfleetError } from '../errors.js';
import { NotLeaderError, type Fence } from './fence.js';
import { HostDirectory, HostRecords } from './hosts.js';
import { IntentStore } from './intents.js';
import { ModuleRegistry } from './modules.js';
import type { WatchEvent } from './watch.js';

const until = async (what: string, check: () => Promise<boolean>): Promise<void> => {
  const deadline = Date.now() + 5000;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('shared stores on a real etcd', { skip: await prereqSkip(['etcd']) }, () => {
  const cleanup = new CleanupStack();
  let etcd: Etcd3;
  let fence: Fence;
  const stale: Fence = { key: '/bpfleet/election/leader/test', epoch: 1 };

  before(async () => {
    ({ etcd, fence } = await etcdWithLeader(cleanup));
  });
  after(() => cleanup.runAll());

  test('intents: hundreds in batched transactions, each with the next generation of its host', async () => {
    const store = new IntentStore(etcd);
    const drafts = Array.from({ length: 300 }, (_, i) => ({
      host: `h${i}`, attachment: 'xdp:eth0', module: { name: 'm', version: '2.0.0', digest: 'sha256:new' }, expectedDigest: 'sha256:old', rolloutId: 'r',
    }));
    const first = await store.writeAll(drafts, fence);
    assert.ok(first.every((i) => i.generation === 1 && i.leaderEpoch === fence.epoch));
    const again = await store.writeAll(drafts.slice(100, 105), fence);
    assert.deepEqual(again.map((i) => i.generation), [2, 2, 2, 2, 2]);
    assert.equal((await store.get('h101', 'xdp:eth0'))!.generation, 2);
    assert.equal((await store.get('h1', 'xdp:eth0'))!.generation, 1);
  });

  test('intents under a stale fence, or twice for one attachment, are refused and write nothing', async () => {
    const store = new IntentStore(etcd);
    const draft = (host: string) => ({ host, attachment: 'tcx-ingress:eth0', module: undefined, expectedDigest: '', rolloutId: 'r' });
    await assert.rejects(store.writeAll([draft('x1'), draft('x2')], stale), NotLeaderError);
    await assert.rejects(store.writeAll([draft('x1'), draft('x1')], fence), /two intents for x1/);
    assert.equal(await store.get('x1', 'tcx-ingress:eth0'), null);
  });

  test('the host directory follows registrations, reports and departures through its watch', async () => {
    const directory = new HostDirectory(etcd);
    cleanup.defer(() => directory.close(), 'close directory');
    const register = (name: string) => etcd.put(keys.host(name)).value(JSON.stringify(Host.toJSON({
      name, labels: { role: 'edge' }, kernel: '6.18', capabilities: ['xdp'], registeredAt: '', agentVersion: '0', address: `127.0.0.1:1${name.length}`, attachments: [], lagging: [], refused: '', claimedName: '',
    })));
    await register('early');
    assert.deepEqual((await directory.list()).map((h) => h.name), ['early']);
    await register('late');
    await until('the late host', async () => (await directory.list()).length === 2);
    await etcd.put(keys.observed('late')).value(JSON.stringify(GetStateResponse.toJSON({
      host: 'late', labels: {}, attachments: [{ attachment: 'xdp:eth0', module: { name: 'm', version: '2.0.0', digest: 'sha256:new' }, progId: 9, linkId: 1, progTag: '', generation: 1, rolloutId: 'r', leaderEpoch: 1, updatedAt: '', status: AttachmentStatus.ATTACHMENT_STATUS_RUNNING, reason: '', message: '' }],
    })));
    await until('the late host\'s report', async () => (await directory.get('late'))?.attachments[0]?.version === '2.0.0');
    await etcd.delete().key(keys.host('early'));
    await until('the early host to leave', async () => (await directory.list()).map((h) => h.name).join() === 'late');
    assert.deepEqual(await directory.departed(), [], 'a host that never reported is unknown once gone');
    await etcd.put(keys.observed('early')).value(JSON.stringify(GetStateResponse.toJSON({ host: 'early', labels: { role: 'edge' }, attachments: [] })));
    await until('the early host among the departed, with its labels', async () => JSON.stringify(await directory.departed()) === JSON.stringify([{ name: 'early', labels: { role: 'edge' } }]));
    await register('early');
    await until('the early host back', async () => (await directory.departed()).length === 0);
  });

  test('an intent write that must find a key absent refuses with ROLLOUT_ACTIVE when it is there, and writes nothing', async () => {
    const store = new IntentStore(etcd);
    const lock = keys.activeLock('m', 'xdp:eth0');
    await etcd.put(lock).value('r-active');
    const draft = { host: 'c1', attachment: 'xdp:eth0', module: { name: 'm', version: '1.0.0', digest: 'sha256:a' }, expectedDigest: '', rolloutId: 'r' };
    await assert.rejects(store.writeAll([draft], fence, [lock]), (err: BpfleetError) => err.reason === 'ROLLOUT_ACTIVE');
    assert.equal(await store.get('c1', 'xdp:eth0'), null);
    await etcd.delete().key(lock);
    const [written] = await store.writeAll([draft], fence, [lock]);
    assert.equal(written!.generation, 1);
  });

  test('a registration rewritten in place to claim another name leaves the fleet, is listed refused, and comes back when honest', async () => {
    const directory = new HostDirectory(etcd);
    cleanup.defer(() => directory.close(), 'close directory');
    const register = (key: string, name: string) => etcd.put(keys.host(key)).value(JSON.stringify(Host.toJSON({
      name, labels: {}, kernel: '6.18', capabilities: ['xdp'], registeredAt: '', agentVersion: '0', address: '127.0.0.1:2', attachments: [], lagging: [], refused: '', claimedName: '',
    })));
    const names = async () => (await directory.list()).map((h) => h.name).join();
    await register('turncoat', 'turncoat');
    await until('the honest registration', async () => (await names()).includes('turncoat'));
    await register('turncoat', 'early');
    await until('the rewritten registration to leave the fleet', async () => !(await names()).includes('turncoat'));
    assert.ok((await directory.list()).every((h) => h !== undefined), 'no hole in the fleet where the host left');
    assert.deepEqual((await directory.refused()).map((r) => [r.host, r.claimed]), [['turncoat', 'early']]);
    const listed = (await directory.listAll()).find((h) => h.name === 'turncoat');
    assert.equal(listed?.claimedName, 'early');
    assert.ok(listed?.refused === 'NAME_MISMATCH' || listed?.refused === 'DUPLICATE_NAME', String(listed?.refused));
    await register('turncoat', 'turncoat');
    await until('the honest registration to return', async () => (await names()).includes('turncoat'));
    assert.deepEqual(await directory.refused(), []);
    await etcd.delete().key(keys.host('turncoat'));
  });

  test('an agent lists its own intents, then watches them change from the next revision', async () => {
    const store = new IntentStore(etcd);
    const draft = (host: string, attachment: string) => ({ host, attachment, module: { name: 'm', version: '1.0.0', digest: 'sha256:a' }, expectedDigest: '', rolloutId: 'r' });
    await store.writeAll([draft('w1', 'xdp:eth0'), draft('w1', 'xdp:eth1'), draft('w2', 'xdp:eth0')], fence);
    const listed = await store.list('w1');
    assert.deepEqual([...listed.items.keys()], [keys.intent('w1', 'xdp:eth0'), keys.intent('w1', 'xdp:eth1')]);
    assert.ok([...listed.items.values()].every((i) => i.host === 'w1' && i.generation === 1));

    const stop = new AbortController();
    const seen: WatchEvent<Intent>[] = [];
    const watching = (async () => {
      for await (const change of store.watch('w1', { signal: stop.signal, fromRevision: listed.revision + 1 })) seen.push(change);
    })();
    await store.writeAll([draft('w2', 'xdp:eth0'), draft('w1', 'xdp:eth1')], fence);
    await until('the w1 intent change', async () => seen.length > 0);
    stop.abort();
    await watching;
    assert.equal(seen.length, 1, 'only the watched host\'s intents, each change once');
    const [change] = seen;
    assert.ok(change?.kind === 'put');
    assert.equal(change.key, keys.intent('w1', 'xdp:eth1'));
    assert.equal(change.value.generation, 2);
  });

  test('host records: an agent registers on its lease and reports; the directory joins both; a revoked lease leaves', async () => {
    const records = new HostRecords(etcd);
    const directory = new HostDirectory(etcd);
    cleanup.defer(() => directory.close(), 'close directory');
    assert.equal(await records.lastReported('leased'), null);
    const lease = etcd.lease(30);
    await records.register(lease, {
      name: 'leased', labels: {}, kernel: '6.18', capabilities: ['xdp'], registeredAt: '', agentVersion: '0', address: '127.0.0.1:2', attachments: [], lagging: [],
    });
    const state: GetStateResponse = {
      host: 'leased', labels: {}, attachments: [{ attachment: 'xdp:eth0', module: { name: 'm', version: '3.0.0', digest: 'sha256:c' }, progId: 7, linkId: 2, progTag: '', generation: 4, rolloutId: 'r', leaderEpoch: 2, updatedAt: '', status: AttachmentStatus.ATTACHMENT_STATUS_RUNNING, reason: '', message: '' }],
    };
    await records.report('leased', state);
    assert.deepEqual(await records.lastReported('leased'), state);
    await until('the leased host with its report', async () => (await directory.get('leased'))?.attachments[0]?.progId === 7);
    await lease.revoke();
    await until('the leased host to leave', async () => (await directory.get('leased')) === null);
  });

  test('the module registry: one digest per name@version, read back by get, require and list', async () => {
    const registry = new ModuleRegistry(etcd);
    const module = (version: string, digest: string): Module => ({
      manifest: { name: 'reg', version, description: '', programs: [], persistentMaps: [], counters: [] },
      digest, size: 1, objectKey: digest, pushedAt: '', pushedBy: 't', signature: Buffer.alloc(0), keyId: '',
    });
    assert.equal((await registry.create(module('1.0.0', 'sha256:1'))).created, true);
    assert.equal((await registry.create(module('1.0.0', 'sha256:1'))).created, false);
    await assert.rejects(registry.create(module('1.0.0', 'sha256:2')), /already exists with digest sha256:1/);
    await registry.create(module('1.1.0', 'sha256:3'));
    assert.equal((await registry.get('reg', '1.1.0'))?.digest, 'sha256:3');
    assert.equal(await registry.get('reg', '9.9.9'), null);
    await assert.rejects(registry.require('reg', '9.9.9'), /known versions: 1\.0\.0, 1\.1\.0/);
    assert.deepEqual((await registry.list('reg')).map((m) => m.manifest!.version), ['1.0.0', '1.1.0']);
  });
});
