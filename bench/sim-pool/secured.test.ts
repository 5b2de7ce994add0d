/**
 * The sim host pool (sim dataplane) against a secured etcd (TLS + auth) and nats-server
 * (TLS + per-identity permissions), as one pooled identity (bench/sim-pool/access.ts): its
 * hosts register, converge to their intents and report telemetry; the same identity cannot
 * touch a real host's keys or subject.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Etcd3 } from 'etcd3';
import { simArtifact } from '../../agent/dataplane/sim/artifacts.js';
import { ArtifactStore } from '../../common/artifacts.js';
import { keys, subjects } from '../../common/keys.js';
import { createLogger } from '../../common/log.js';
import { etcdClient, natsTls, type ClientTls } from '../../common/store-clients.js';
import { loadTransport } from '../../common/tls.js';
import { natsAuthorizationConfig, natsUsers } from '../../control/access/nats-access.js';
import { makeTempDir, removeTempDir } from '../../dev/claims.js';
import { CleanupStack } from '../../dev/cleanup.js';
import { startEtcd } from '../../dev/etcd.js';
import { startNats, type NatsServer } from '../../dev/nats.js';
import { createFleetPki, DEV_TRUST_DOMAIN, type FleetPki } from '../../dev/pki.js';
import { clientTls, enableEtcdAccess, storeServerTls } from '../../dev/secure-stores.js';
import { prereqSkip } from '../../e2e/support/prereqs.js';
import { GetStateResponse, Intent } from '../../proto/gen/bpfleet/v1/agent.js';
import { Module } from '../../proto/gen/bpfleet/v1/module.js';
import { TelemetryReport } from '../../proto/gen/bpfleet/v1/telemetry.js';
import { grantSimPool, poolHostNames, simPoolNatsUser } from './access.js';
import { SimHostPool } from './pool.js';

const POOL = 'sim-pool';
const PREFIX = 'sim-';
const SIM_HOSTS = poolHostNames(PREFIX, 3);
const v1 = simArtifact({ name: 'pool-probe', version: '1.0.0' });

const until = async (what: string, check: () => Promise<boolean> | boolean): Promise<void> => {
  for (const deadline = Date.now() + 10_000; !(await check()); await new Promise((r) => setTimeout(r, 50))) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
  }
};

describe('sim host pool on secured etcd and NATS, as one pooled identity', { skip: await prereqSkip(['etcd', 'nats']) }, () => {
  const cleanup = new CleanupStack();
  let pki: FleetPki;
  let nats: NatsServer;
  let endpoint = '';
  let asControl: Etcd3;
  let control: NatsConnection;
  let poolTls: ClientTls;
  const telemetry: TelemetryReport[] = [];

  before(async () => {
    const dir = makeTempDir('sim-pool-secured');
    cleanup.defer(() => removeTempDir(dir), 'remove pki');
    pki = await createFleetPki(dir, { hosts: [POOL, 'h1'] });
    const tls = await storeServerTls(pki, ['h1']);
    const etcd = await startEtcd({ tls: tls.etcd });
    cleanup.defer(() => etcd.stop(), 'stop etcd');
    endpoint = etcd.endpoint;
    const rootPassword = await enableEtcdAccess([endpoint], pki, ['h1']);
    const root = etcdClient([endpoint], clientTls(pki, pki.control), { auth: { username: 'root', password: rootPassword } });
    try {
      await grantSimPool(root, POOL, PREFIX);
    } finally {
      root.close();
    }
    const users = [...natsUsers({ trustDomain: DEV_TRUST_DOMAIN, controlNames: [pki.control.name], hosts: ['h1'] }), simPoolNatsUser(DEV_TRUST_DOMAIN, POOL, SIM_HOSTS)];
    nats = await startNats({ tls: { ...tls.nats, authorization: natsAuthorizationConfig(users) } });
    cleanup.defer(() => nats.stop(), 'stop nats');

    // The control plane's side: the module record and object, telemetry collected.
    const own = clientTls(pki, pki.control);
    asControl = etcdClient([endpoint], own);
    cleanup.defer(() => asControl.close(), 'close etcd client');
    control = await connect({ servers: nats.url, tls: natsTls(own) });
    cleanup.defer(() => control.close(), 'close nats');
    await (await ArtifactStore.open(control)).put(v1.object);
    const module: Module = { manifest: v1.manifest, digest: v1.digest, size: v1.object.length, objectKey: ArtifactStore.objectKey(v1.digest), pushedAt: '', pushedBy: 'test', signature: Buffer.alloc(0), keyId: '' };
    await asControl.put(keys.module(v1.manifest.name, v1.manifest.version)).value(JSON.stringify(Module.toJSON(module)));
    control.subscribe(subjects.telemetryAll, { callback: (_e, m) => void telemetry.push(TelemetryReport.decode(m.data)) });
    await control.flush();

    poolTls = clientTls(pki, pki.hosts.get(POOL)!);
    const pool = await SimHostPool.start({
      hosts: SIM_HOSTS.length, namePrefix: PREFIX, labels: () => ({ role: 'edge' }), listen: '127.0.0.1:0',
      etcdEndpoints: [endpoint], natsServers: [nats.url], telemetryIntervalMs: 200, leaseTtlSeconds: 10, pps: 1000,
      transport: loadTransport({ tlsCa: pki.caPath, tlsCert: poolTls.certPath, tlsKey: poolTls.keyPath }, 'sim pool test'),
      storeTls: { etcd: poolTls, nats: poolTls, name: POOL }, log: createLogger('sim-pool', { level: 'error' }),
    });
    cleanup.defer(() => pool.stop(), 'stop pool');
  });
  after(() => cleanup.runAll());

  test('its hosts register, converge to an intent written in etcd (object from NATS), and report telemetry under their own names', async () => {
    const registered = Object.keys(await asControl.getAll().prefix(keys.host('')).strings()).sort();
    assert.deepEqual(registered, SIM_HOSTS.map((h) => keys.host(h)).sort());
    const intent: Intent = { host: 'sim-2', attachment: 'xdp:eth0', module: { name: 'pool-probe', version: '1.0.0', digest: v1.digest }, expectedDigest: '', rolloutId: 'secured', generation: 1, leaderEpoch: 0 };
    await asControl.put(keys.intent('sim-2', 'xdp:eth0')).value(JSON.stringify(Intent.toJSON(intent)));
    await until('sim-2 runs pool-probe', async () => {
      const text = await asControl.get(keys.observed('sim-2')).string();
      return text !== null && GetStateResponse.fromJSON(JSON.parse(text)).attachments.some((a) => a.module?.digest === v1.digest);
    });
    await until('telemetry from every sim host', () => SIM_HOSTS.every((h) => telemetry.some((r) => r.host === h)));
  });

  test('the pooled identity cannot touch a real host\'s keys, intents or telemetry subject', async () => {
    const etcd = etcdClient([endpoint], poolTls, { defaultCallOptions: () => ({ deadline: Date.now() + 5_000 }) });
    cleanup.defer(() => etcd.close(), 'close pool etcd client');
    const refused = (p: { exec(): Promise<unknown> } | Promise<unknown>) => ('exec' in p ? p.exec() : p).then(() => 'allowed', (err: Error) => err.message);
    await asControl.put(keys.intent('h1', 'xdp:eth0')).value('{}');
    assert.match(await refused(etcd.put(keys.host('h1')).value('{}')), /permission denied/);
    assert.match(await refused(etcd.put(keys.observed('h1')).value('{}')), /permission denied/);
    assert.match(await refused(etcd.get(keys.intent('h1', 'xdp:eth0')).string()), /permission denied/);
    assert.match(await refused(etcd.put(keys.intent('sim-1', 'xdp:eth0')).value('{}')), /permission denied/, 'its own hosts\' intents are the leader\'s to write');
    assert.match(await refused(etcd.put(keys.module('pool-probe', '9.9.9')).value('{}')), /permission denied/);
    assert.equal(await refused(etcd.put(keys.observed('sim-1')).value('{}')), 'allowed');

    const nc = await connect({ servers: nats.url, tls: natsTls(poolTls), inboxPrefix: subjects.inboxPrefix(POOL), reconnect: false });
    cleanup.defer(() => nc.close(), 'close pool nats');
    const errors: string[] = [];
    void (async () => {
      for await (const s of nc.status()) if (s.type === 'error') errors.push(String(s.error));
    })();
    nc.publish(subjects.telemetry('h1'), new Uint8Array([1]));
    await nc.flush();
    await until('the server\'s refusal', () => errors.some((e) => /Permissions Violation for Publish to "bpfleet\.telemetry\.h1"/.test(e)));
  });
});
