/**
 * The sim host pool (sim dataplane, for scale benchmarks) against real etcd and NATS: every
 * host registers on the pool's one lease, Apply reaches the host the intent names and no
 * other, intents written to etcd converge, and each host publishes its own telemetry.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { credentials, Metadata } from '@grpc/grpc-js';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Etcd3 } from 'etcd3';
import { parseAttachment } from '../../common/attachment.js';
import { ArtifactStore } from '../../common/artifacts.js';
import { fromServiceError } from '../../common/errors.js';
import { keys, subjects } from '../../common/keys.js';
import { createLogger } from '../../common/log.js';
import { simArtifact } from '../../agent/dataplane/sim/artifacts.js';
import { CleanupStack } from '../../dev/cleanup.js';
import { startEtcd } from '../../dev/etcd.js';
import { startNats } from '../../dev/nats.js';
import { prereqSkip } from '../../e2e/support/prereqs.js';
import { AgentServiceClient, GetStateResponse, Intent, type ApplyResponse } from '../../proto/gen/bpfleet/v1/agent.js';
import { Module } from '../../proto/gen/bpfleet/v1/module.js';
import { TelemetryReport } from '../../proto/gen/bpfleet/v1/telemetry.js';
import { HOST_METADATA, SimHostPool } from './pool.js';

const v1 = simArtifact({ name: 'pool-probe', version: '1.0.0' });
const ref = { name: 'pool-probe', version: '1.0.0', digest: v1.digest };
const xdp = parseAttachment('xdp:eth0');

const until = async (what: string, check: () => Promise<boolean> | boolean): Promise<void> => {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
};

describe('sim host pool (sim dataplane)', { skip: await prereqSkip(['etcd', 'nats']) }, () => {
  const cleanup = new CleanupStack();
  let etcd: Etcd3;
  let nc: NatsConnection;
  let pool: SimHostPool;
  let client: AgentServiceClient;

  const apply = (intent: Intent): Promise<ApplyResponse> => new Promise((resolve, reject) =>
    client.apply({ intent }, (err, res) => (err ? reject(fromServiceError(err)) : resolve(res))));
  const intentFor = (host: string, generation: number): Intent =>
    ({ host, attachment: 'xdp:eth0', module: ref, expectedDigest: '', rolloutId: 'test', generation, leaderEpoch: 1 });

  before(async () => {
    const etcdServer = await startEtcd();
    cleanup.defer(() => etcdServer.stop(), 'stop etcd');
    const natsServer = await startNats();
    cleanup.defer(() => natsServer.stop(), 'stop nats');
    etcd = new Etcd3({ hosts: etcdServer.endpoint });
    cleanup.defer(() => etcd.close(), 'close etcd client');
    nc = await connect({ servers: natsServer.url });
    cleanup.defer(() => nc.drain(), 'close nats');
    await (await ArtifactStore.open(nc)).put(v1.object);
    const module: Module = { manifest: v1.manifest, digest: v1.digest, size: v1.object.length, objectKey: ArtifactStore.objectKey(v1.digest), pushedAt: '', pushedBy: 'test', signature: Buffer.alloc(0), keyId: '' };
    await etcd.put(keys.module('pool-probe', '1.0.0')).value(JSON.stringify(Module.toJSON(module)));
    pool = await SimHostPool.start({
      hosts: 3, namePrefix: 'sim-', labels: (i) => ({ role: 'edge', index: String(i) }), listen: '127.0.0.1:0',
      etcdEndpoints: [etcdServer.endpoint], natsServers: [natsServer.url], telemetryIntervalMs: 100, leaseTtlSeconds: 10, transport: { mode: 'insecure' },
      pps: 1000, log: createLogger('sim-pool-test', { level: 'warn' }),
    });
    cleanup.defer(() => pool.stop(), 'stop pool');
    client = new AgentServiceClient(pool.address, credentials.createInsecure());
    cleanup.defer(() => client.close(), 'close agent client');
  });
  after(() => cleanup.runAll());

  test('every host is registered at the pool\'s address, all on one lease', async () => {
    const res = await etcd.getAll().prefix(keys.hostsPrefix).exec();
    const hosts = res.kvs.map((kv) => ({ host: JSON.parse(kv.value.toString()), lease: String(kv.lease) }));
    assert.deepEqual(hosts.map((h) => h.host.name).sort(), ['sim-1', 'sim-2', 'sim-3']);
    assert.ok(hosts.every((h) => h.host.address === pool.address));
    assert.deepEqual(hosts.map((h) => h.host.labels.index).sort(), ['1', '2', '3']);
    assert.equal(new Set(hosts.map((h) => h.lease)).size, 1);
    assert.notEqual(hosts[0]!.lease, '0');
  });

  test('Apply goes to the host the intent names, and only to it', async () => {
    const res = await apply(intentFor('sim-2', 1));
    assert.equal(res.changed, true);
    assert.equal(res.state!.module!.digest, v1.digest);
    assert.equal(pool.hosts.get('sim-2')!.driver.host.running(xdp)?.program.digest, v1.digest);
    assert.equal(pool.hosts.get('sim-1')!.driver.host.running(xdp), undefined);
    assert.equal(pool.hosts.get('sim-3')!.driver.host.running(xdp), undefined);
    await until('sim-2 to report what it runs', async () => {
      const text = await etcd.get(keys.observed('sim-2')).string();
      return text !== null && GetStateResponse.fromJSON(JSON.parse(text)).attachments[0]?.module?.digest === v1.digest;
    });
  });

  test('calls without an intent are routed by the host header; unknown hosts are refused', async () => {
    const md = new Metadata();
    md.set(HOST_METADATA, 'sim-2');
    const state = await new Promise<GetStateResponse>((resolve, reject) => client.getState({}, md, (err, r) => (err ? reject(err) : resolve(r))));
    assert.equal(state.host, 'sim-2');
    assert.equal(state.attachments[0]?.module?.digest, v1.digest);
    await assert.rejects(new Promise((resolve, reject) => client.getState({}, (err, r) => (err ? reject(fromServiceError(err)) : resolve(r)))), { reason: 'UNKNOWN_HOST' });
    await assert.rejects(apply(intentFor('sim-9', 1)), { reason: 'UNKNOWN_HOST' });
  });

  test('an intent written to etcd converges on its host without any Apply', async () => {
    await etcd.put(keys.intent('sim-3', 'xdp:eth0')).value(JSON.stringify(Intent.toJSON(intentFor('sim-3', 1))));
    await until('sim-3 to converge', () => pool.hosts.get('sim-3')!.driver.host.running(xdp)?.program.digest === v1.digest);
    assert.equal(pool.hosts.get('sim-1')!.driver.host.running(xdp), undefined);
  });

  test('each host publishes its own telemetry', async () => {
    const sub = nc.subscribe(subjects.telemetryAll);
    const seen = new Set<string>();
    const timer = setTimeout(() => sub.unsubscribe(), 5000);
    for await (const msg of sub) {
      const report = TelemetryReport.decode(msg.data);
      assert.equal(msg.subject, subjects.telemetry(report.host));
      if (report.attachments.length) seen.add(report.host);
      if (seen.size === 2) break;
    }
    clearTimeout(timer);
    sub.unsubscribe();
    assert.deepEqual([...seen].sort(), ['sim-2', 'sim-3'], 'the hosts running a program report it');
  });
});
