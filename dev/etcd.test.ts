import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { Etcd3 } from 'etcd3';
import { prereqSkip } from '../e2e/support/prereqs.js';
import { procRef } from './claims.js';
import { CleanupStack } from './cleanup.js';
import { startEtcd, startEtcdCluster } from './etcd.js';

const alive = (pid: number): boolean => procRef(pid) !== undefined;

function client(hosts: string | string[]): Etcd3 {
  return new Etcd3({ hosts, dialTimeout: 5_000, defaultCallOptions: () => ({ deadline: Date.now() + 5_000 }) });
}

describe('etcd fixture', { skip: await prereqSkip(['etcd']) }, () => {
  const cleanup = new CleanupStack();
  after(() => cleanup.runAll());

  test('starts, answers put/get, and stop leaves no process and no data dir', async () => {
    const started = Date.now();
    const etcd = await startEtcd();
    cleanup.defer(() => etcd.stop(), 'stop etcd');
    const startMs = Date.now() - started;
    assert.match(etcd.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);

    const c = client(etcd.endpoint);
    await c.put('/bpfleet/test/hello').value('world');
    assert.equal(await c.get('/bpfleet/test/hello').string(), 'world');
    c.close();

    const pid = etcd.process!.pid;
    assert.ok(existsSync(etcd.dataDir));
    await etcd.stop();
    assert.equal(alive(pid), false, 'etcd process still alive after stop');
    assert.equal(existsSync(etcd.dataDir), false, 'data dir still there after stop');
    assert.equal(etcd.running, false);
    process.stderr.write(`etcd ready in ${startMs} ms\n`);
  });

  test('kill then restart keeps endpoint and data', async () => {
    const etcd = await startEtcd();
    cleanup.defer(() => etcd.stop(), 'stop etcd');
    const c = client(etcd.endpoint);
    cleanup.defer(() => c.close(), 'close client');
    await c.put('k').value('v1');

    const endpoint = etcd.endpoint;
    const oldPid = etcd.process!.pid;
    await etcd.kill();
    assert.equal(etcd.running, false);
    assert.equal(alive(oldPid), false);

    await etcd.restart();
    assert.equal(etcd.endpoint, endpoint);
    assert.notEqual(etcd.process!.pid, oldPid);
    assert.equal(await c.get('k').string(), 'v1');
  });

  test('a 3-member cluster keeps serving with one member killed', async () => {
    const cluster = await startEtcdCluster(3);
    cleanup.defer(() => cluster.stop(), 'stop cluster');
    assert.equal(new Set(cluster.endpoints).size, 3);

    const all = client(cluster.endpoints);
    cleanup.defer(() => all.close(), 'close client');
    await all.put('ha').value('before');

    const [victim, ...rest] = cluster.members as [typeof cluster.members[0], ...typeof cluster.members];
    await victim.kill();
    const survivors = client(rest.map((m) => m.endpoint));
    cleanup.defer(() => survivors.close(), 'close survivors client');
    await survivors.put('ha').value('during');
    assert.equal(await survivors.get('ha').string(), 'during');

    await victim.restart();
    const back = client(victim.endpoint);
    cleanup.defer(() => back.close(), 'close victim client');
    assert.equal(await back.get('ha').string(), 'during');

    const pids = cluster.members.map((m) => m.process!.pid);
    const dirs = cluster.members.map((m) => m.dataDir);
    await cluster.stop();
    assert.deepEqual(pids.filter(alive), []);
    assert.deepEqual(dirs.filter((d) => existsSync(d)), []);
  });
});
