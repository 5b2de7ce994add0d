import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { prereqSkip } from '../e2e/support/prereqs.js';
import { procRef } from './claims.js';
import { CleanupStack } from './cleanup.js';
import { startNats, startNatsCluster } from './nats.js';
import { ArtifactStore } from '../common/artifacts.js';

const alive = (pid: number): boolean => procRef(pid) !== undefined;

describe('nats fixture', { skip: await prereqSkip(['nats']) }, () => {
  const cleanup = new CleanupStack();
  after(() => cleanup.runAll());

  test('starts with JetStream; restart keeps the port and the store; stop leaves nothing', async () => {
    const started = Date.now();
    const nats = await startNats();
    cleanup.defer(() => nats.stop(), 'stop nats');
    const startMs = Date.now() - started;
    assert.match(nats.url, /^nats:\/\/127\.0\.0\.1:\d+$/);

    const nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    const account = await jsm.getAccountInfo();
    assert.ok(account.limits, 'JetStream account info has limits');
    await jsm.streams.add({ name: 'TELEMETRY', subjects: ['telemetry.>'] });
    await nc.close();

    const { url, port } = nats;
    const oldPid = nats.process!.pid;
    await nats.kill('SIGTERM');
    assert.equal(nats.running, false);
    assert.equal(alive(oldPid), false);
    await assert.rejects(connect({ servers: url, reconnect: false, timeout: 500 }));

    await nats.restart();
    assert.equal(nats.url, url);
    assert.equal(nats.port, port);
    const nc2 = await connect({ servers: nats.url });
    const jsm2 = await jetstreamManager(nc2);
    const info = await jsm2.streams.info('TELEMETRY');
    assert.deepEqual(info.config.subjects, ['telemetry.>']);
    await nc2.close();

    const pid = nats.process!.pid;
    await nats.stop();
    assert.equal(alive(pid), false, 'nats-server still alive after stop');
    assert.equal(existsSync(nats.storeDir), false, 'store dir still there after stop');
    process.stderr.write(`nats ready in ${startMs} ms\n`);
  });

  test('survives SIGKILL: restart recovers the store', async () => {
    const nats = await startNats();
    cleanup.defer(() => nats.stop(), 'stop nats');
    const nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'S', subjects: ['s.>'] });
    await nc.close();

    await nats.kill();
    await nats.restart();
    const nc2 = await connect({ servers: nats.url });
    cleanup.defer(() => nc2.close(), 'close connection');
    assert.equal((await (await jetstreamManager(nc2)).streams.info('S')).config.name, 'S');
  });

  test('a 3-node cluster: the object store with replicas 3 keeps serving with one node SIGKILLed, and the node comes back', async () => {
    const cluster = await startNatsCluster(3);
    cleanup.defer(() => cluster.stop(), 'stop nats cluster');
    assert.equal(cluster.urls.length, 3);
    const nc = await connect({ servers: cluster.urls });
    const store = await ArtifactStore.open(nc, { replicas: 3 });
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info('OBJ_bpfleet-modules');
    assert.equal(info.config.num_replicas, 3);
    assert.equal(info.cluster?.replicas?.length, 2, 'two followers besides the leader');
    const { digest } = await store.put(new Uint8Array([1, 2, 3]));
    await cluster.members[0]!.kill('SIGKILL');
    const other = await connect({ servers: cluster.urls.slice(1) });
    // The killed node may have led JetStream or the stream: the rest elect another, usually
    // within seconds; a full CI run once took over 20 s (meta leader, then stream leader).
    const deadline = Date.now() + 60_000;
    let read: Uint8Array | undefined;
    while (!read) {
      read = await ArtifactStore.open(other, { create: false }).then((s) => s.get(digest)).catch((err: unknown) => {
        if (Date.now() > deadline) throw err;
        return undefined;
      });
    }
    assert.deepEqual([...read], [1, 2, 3]);
    await cluster.members[0]!.restart();
    assert.ok(cluster.members[0]!.running);
    await other.close();
    await nc.close();
  });
});
