/**
 * The etcd stores in common/etcd against a real etcd: intents in batched fenced
 * transactions and the watched host directory. Sizes go past etcd's
 * 128-operations-per-transaction limit on purpose.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Etcd3 } from 'etcd3';
import { CleanupStack } from '../../e2e/support/cleanup.js';
import { startEtcd, type EtcdServer } from '../../e2e/support/etcd.js';
import { prereqSkip } from '../../e2e/support/prereqs.js';
import { GetStateResponse } from '../../proto/gen/bpfleet/v1/agent.js';
import { Host } from '../../proto/gen/bpfleet/v1/control.js';
import { keys } from '../keys.js';
import { NotLeaderError, type Fence } from './fence.js';
import { HostDirectory } from './hosts.js';
import { IntentStore } from './intents.js';

const until = async (what: string, check: () => Promise<boolean>): Promise<void> => {
  const deadline = Date.now() + 5000;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('shared stores on a real etcd', { skip: await prereqSkip(['etcd']) }, () => {
  const cleanup = new CleanupStack();
  let server: EtcdServer;
  let etcd: Etcd3;
  let fence: Fence;
  const stale: Fence = { key: '/bpfleet/election/leader/test', epoch: 1 };

  before(async () => {
    server = await startEtcd();
    cleanup.defer(() => server.stop(), 'stop etcd');
    etcd = new Etcd3({ hosts: server.endpoint });
    cleanup.defer(() => etcd.close(), 'close client');
    const put = await etcd.put('/bpfleet/election/leader/test').value('me').exec();
    fence = { key: '/bpfleet/election/leader/test', epoch: Number(put.header.revision) };
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
      name, labels: { role: 'edge' }, kernel: '6.18', capabilities: ['xdp'], registeredAt: '', agentVersion: '0', address: `127.0.0.1:1${name.length}`, attachments: [],
    })));
    await register('early');
    assert.deepEqual((await directory.list()).map((h) => h.name), ['early']);
    await register('late');
    await until('the late host', async () => (await directory.list()).length === 2);
    await etcd.put(keys.observed('late')).value(JSON.stringify(GetStateResponse.toJSON({
      host: 'late', attachments: [{ attachment: 'xdp:eth0', module: { name: 'm', version: '2.0.0', digest: 'sha256:new' }, progId: 9, linkId: 1, progTag: '', generation: 1, rolloutId: 'r', leaderEpoch: 1, updatedAt: '' }],
    })));
    await until('the late host\'s report', async () => (await directory.get('late'))?.attachments[0]?.version === '2.0.0');
    await etcd.delete().key(keys.host('early'));
    await until('the early host to leave', async () => (await directory.list()).map((h) => h.name).join() === 'late');
  });

});
