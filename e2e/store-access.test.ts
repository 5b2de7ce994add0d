/**
 * etcd and NATS enforce each identity's permissions themselves (real etcd 3.4 with TLS and
 * auth, real nats-server 2.9 with verify_and_map), and the control plane files telemetry
 * only under the host whose subject carried it. Each attack with a stolen host certificate
 * (h3's) is one test.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Objm } from '@nats-io/obj';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Etcd3 } from 'etcd3';
import { ArtifactStore } from '../common/artifacts.js';
import { ARTIFACT_BUCKET, keys, subjects } from '../common/keys.js';
import { createLogger } from '../common/log.js';
import { startTelemetry, type Telemetry } from '../common/otel.js';
import { etcdClient, natsTls, type ClientTls } from '../common/store-clients.js';
import { startControlPlane, type RunningControlPlane } from '../control/control-plane.js';
import { makeTempDir, removeTempDir } from '../dev/claims.js';
import { CleanupStack } from '../dev/cleanup.js';
import { startEtcd, type EtcdServer } from '../dev/etcd.js';
import { startNats, type NatsServer } from '../dev/nats.js';
import { createFleetPki, type FleetPki } from '../dev/pki.js';
import { clientTls, enableEtcdAccess, storeServerTls } from '../dev/secure-stores.js';
import { TelemetryReport } from '../proto/gen/bpfleet/v1/telemetry.js';
import { scrape } from './support/prometheus.js';
import { prereqSkip } from './support/prereqs.js';
import { loadTransport } from '../common/tls.js';

const skip = await prereqSkip(['etcd', 'nats']);
const HOSTS = ['h1', 'h3', 'h10'];
const INTENT_H1 = keys.intent('h1', 'xdp:eth0');
const intentValue = JSON.stringify({ host: 'h1', attachment: 'xdp:eth0', rolloutId: 'r1' });

describe('etcd and NATS refuse what a host certificate may not do', { skip }, () => {
  const cleanup = new CleanupStack();
  let pki: FleetPki;
  let etcd: EtcdServer;
  let nats: NatsServer;
  let asControl: Etcd3;
  const tlsOf = (who: string): ClientTls => clientTls(pki, who === 'control' ? pki.control : (pki.hosts.get(who) ?? pki.users[who as 'operator']));
  const etcdAs = (who: string): Etcd3 => {
    const c = etcdClient([etcd.endpoint], tlsOf(who), { dialTimeout: 5_000, defaultCallOptions: () => ({ deadline: Date.now() + 5_000 }) });
    cleanup.defer(() => c.close(), `close etcd client ${who}`);
    return c;
  };
  const natsAs = async (who: string): Promise<NatsConnection> => {
    const nc = await connect({ servers: nats.url, tls: natsTls(tlsOf(who)), reconnect: false, timeout: 5_000, ...(who === 'control' ? {} : { inboxPrefix: subjects.inboxPrefix(who) }) });
    cleanup.defer(() => nc.close(), `close nats ${who}`);
    return nc;
  };
  /** The etcd gRPC error of a refused call (the etcd3 client's error class names it). */
  const refusal = (p: PromiseLike<unknown>): Promise<string> => Promise.resolve(p).then(() => 'allowed', (err: Error) => `${err.name}: ${err.message}`);

  before(async () => {
    const dir = makeTempDir('store-access-pki');
    cleanup.defer(() => removeTempDir(dir), 'remove pki');
    pki = await createFleetPki(dir, { hosts: HOSTS });
    const tls = await storeServerTls(pki, HOSTS);
    etcd = await startEtcd({ tls: tls.etcd });
    cleanup.defer(() => etcd.stop(), 'stop etcd');
    await enableEtcdAccess([etcd.endpoint], pki, HOSTS);
    nats = await startNats({ tls: tls.nats });
    cleanup.defer(() => nats.stop(), 'stop nats');
    asControl = etcdAs('control');
    await asControl.put(INTENT_H1).value(intentValue);
  });
  after(() => cleanup.runAll());

  test('etcd: a host writes its own registration and observed state, reads its intents and the modules', async () => {
    const h3 = etcdAs('h3');
    await h3.put(keys.host('h3')).value('{}');
    await h3.put(keys.observed('h3')).value('{}');
    assert.equal(await h3.get(keys.observed('h3')).string(), '{}');
    await asControl.put(keys.intent('h3', 'xdp:eth0')).value('{}');
    assert.deepEqual(Object.keys(await h3.getAll().prefix(keys.intentsOf('h3')).strings()), [keys.intent('h3', 'xdp:eth0')]);
    await asControl.put(keys.module('m', '1.0.0')).value('{}');
    assert.deepEqual(Object.keys(await h3.getAll().prefix(keys.modulesPrefix).strings()), [keys.module('m', '1.0.0')]);
  });

  test("etcd: h3's certificate cannot write h1's intent, nor its own", async () => {
    const h3 = etcdAs('h3');
    assert.match(await refusal(h3.put(INTENT_H1).value('{"forged":true}').exec()), /permission denied/);
    assert.match(await refusal(h3.delete().key(INTENT_H1).exec()), /permission denied/);
    assert.match(await refusal(h3.put(keys.intent('h3', 'xdp:eth0')).value('{}').exec()), /permission denied/, 'intents are the leader\'s to write');
    assert.match(await refusal(h3.getAll().prefix(keys.intentsOf('h1')).strings()), /permission denied/, "nor read another host's intents");
    assert.equal(await asControl.get(INTENT_H1).string(), intentValue, 'the intent is byte-for-byte unchanged');
  });

  test("etcd: h1's exact-key grants do not cover h10's keys, nor anything else under /bpfleet/", async () => {
    const h1 = etcdAs('h1');
    assert.match(await refusal(h1.put(keys.host('h10')).value('{}').exec()), /permission denied/);
    assert.match(await refusal(h1.put(keys.observed('h10')).value('{}').exec()), /permission denied/);
    assert.match(await refusal(h1.getAll().prefix(keys.intentsOf('h10')).strings()), /permission denied/);
    assert.match(await refusal(h1.put(keys.rollout('r1')).value('{}').exec()), /permission denied/);
    assert.match(await refusal(h1.put(keys.module('m', '6.6.6')).value('{}').exec()), /permission denied/);
    assert.match(await refusal(h1.getAll().prefix(keys.rolloutsPrefix).strings()), /permission denied/);
  });

  test('etcd: a certificate whose name is no etcd user, or no certificate at all, gets nothing', async () => {
    assert.match(await refusal(etcdAs('operator').get(INTENT_H1).string()), /user name not found|permission denied|invalid auth/);
    const noCert = etcdClient([etcd.endpoint], undefined, { dialTimeout: 2_000, defaultCallOptions: () => ({ deadline: Date.now() + 2_000 }) });
    cleanup.defer(() => noCert.close(), 'close etcd client without certificate');
    assert.notEqual(await refusal(noCert.get(INTENT_H1).string()), 'allowed');
  });

  test("NATS: h3's certificate cannot publish on h1's telemetry subject; its own gets through", async () => {
    const control = await natsAs('control');
    const got: string[] = [];
    const sub = control.subscribe(subjects.telemetryAll, { callback: (_e, m) => void got.push(m.subject) });
    await control.flush();
    const h3 = await natsAs('h3');
    const errors: string[] = [];
    void (async () => {
      for await (const s of h3.status()) if (s.type === 'error') errors.push(String(s.error));
    })();
    h3.publish(subjects.telemetry('h1'), new Uint8Array([1]));
    h3.publish(subjects.telemetry('h3'), new Uint8Array([1]));
    await h3.flush();
    await control.flush();
    await new Promise((r) => setTimeout(r, 200));
    sub.unsubscribe();
    assert.deepEqual(got, [subjects.telemetry('h3')]);
    assert.ok(errors.some((e) => /Permissions Violation for Publish to "bpfleet\.telemetry\.h1"/.test(e)), `server refusal seen: ${errors.join('; ')}`);
  });

  test("NATS: only the control plane reads all telemetry; h3 cannot subscribe to it", async () => {
    const h3 = await natsAs('h3');
    const refused = new Promise<string>((resolve) => {
      h3.subscribe(subjects.telemetryAll, { callback: (err) => { if (err) resolve(String(err)); } });
    });
    assert.match(await refused, /Permissions Violation for Subscription to "bpfleet\.telemetry\.\*"/);
  });

  test('NATS: h3 reads a module object but cannot delete, replace or add one', async () => {
    const control = await natsAs('control');
    const store = await ArtifactStore.open(control);
    const object = new Uint8Array(200_000).fill(7);
    const { digest, key } = await store.put(object);
    const h3 = await natsAs('h3');
    const reader = await ArtifactStore.open(h3, { create: false });
    assert.deepEqual(await reader.get(digest), object);
    const os = await new Objm(h3).open(ARTIFACT_BUCKET);
    assert.match(await refusal(os.delete(key)), /Permissions Violation/);
    assert.match(await refusal(os.putBlob({ name: key }, new Uint8Array([1]))), /Permissions Violation/);
    assert.match(await refusal(os.putBlob({ name: 'other' }, new Uint8Array([1]))), /Permissions Violation/);
    assert.match(await refusal(new Objm(h3).create('another-bucket')), /Permissions Violation/, 'nor create a bucket');
    assert.deepEqual(await store.get(digest), object, 'the object is unchanged');
  });

  test('NATS: a certificate that maps to no NATS user (a person\'s) cannot connect', async () => {
    assert.match(await refusal(natsAs('operator')), /Authorization Violation/);
  });
});


describe('the control plane files telemetry under the subject\'s host only', { skip }, () => {
  const cleanup = new CleanupStack();
  let pki: FleetPki;
  let cp: RunningControlPlane;
  let telemetry: Telemetry;
  let nats: NatsServer;

  before(async () => {
    const dir = makeTempDir('ingest-forgery-pki');
    cleanup.defer(() => removeTempDir(dir), 'remove pki');
    pki = await createFleetPki(dir, { hosts: HOSTS });
    const tls = await storeServerTls(pki, HOSTS);
    const etcd = await startEtcd({ tls: tls.etcd });
    cleanup.defer(() => etcd.stop(), 'stop etcd');
    await enableEtcdAccess([etcd.endpoint], pki, HOSTS);
    nats = await startNats({ tls: tls.nats });
    cleanup.defer(() => nats.stop(), 'stop nats');
    telemetry = await startTelemetry({ serviceName: 'bpfleet-test', metricsPort: 0 });
    cleanup.defer(() => telemetry.shutdown(), 'stop telemetry');
    const own = clientTls(pki, pki.control);
    cp = await startControlPlane({
      listen: '127.0.0.1:0', etcdEndpoints: [etcd.endpoint], natsServers: [nats.url], storeTls: { etcd: own, nats: own },
      identity: 'forgery-test', leaderTtlSeconds: 3, log: createLogger('control', { level: 'error' }),
      transport: loadTransport({ tlsCa: pki.caPath, tlsCert: pki.control.certPath, tlsKey: pki.control.keyPath }, 'forgery-test'),
    });
    cleanup.defer(() => cp.stop(), 'stop control plane');
  });
  after(() => cleanup.runAll());

  const publishAs = async (who: string, subject: string, reports: TelemetryReport[]): Promise<void> => {
    const nc = await connect({ servers: nats.url, tls: natsTls(clientTls(pki, pki.hosts.get(who)!)), inboxPrefix: subjects.inboxPrefix(who), reconnect: false });
    for (const r of reports) nc.publish(subject, TelemetryReport.encode(r).finish());
    await nc.flush();
    await nc.close();
  };
  const report = (host: string, sequence: number, timestampMs: number): TelemetryReport => ({ host, sequence, timestampMs, monotonicMs: sequence, receivedAtMs: 0, attachments: [] });
  const until = async (what: string, ok: () => boolean): Promise<void> => {
    for (const deadline = Date.now() + 5_000; !ok(); await new Promise((r) => setTimeout(r, 20))) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    }
  };

  test("a report on h3's subject claiming h1, and one stamped an hour ahead, change nothing; both are counted", async () => {
    const now = Date.now();
    await publishAs('h1', subjects.telemetry('h1'), [report('h1', 1, now - 1_000), report('h1', 2, now)]);
    await until('h1\'s reports', () => cp.telemetry.reports('h1').length === 2);
    const h1Before = structuredClone(cp.telemetry.reports('h1'));
    const before = await scrape(telemetry.metricsUrl!);

    // h3 claims to be h1, stamped an hour ahead (which would push h1's real reports out of
    // the retention window); then stamps its own reports an hour ahead; then reports honestly.
    await publishAs('h3', subjects.telemetry('h3'), [report('h1', 3, now + 3_600_000), report('h1', 4, now + 500)]);
    await publishAs('h3', subjects.telemetry('h3'), [report('h3', 1, now + 3_600_000), report('h3', 2, now)]);
    await until('h3\'s honest report', () => cp.telemetry.reports('h3').length === 1);

    assert.deepEqual(cp.telemetry.reports('h1'), h1Before, "h1's reports are unchanged");
    assert.deepEqual(cp.telemetry.reports('h3').map((r) => r.sequence), [2], 'only the honest, present-day report of h3 is kept');
    const m = await scrape(telemetry.metricsUrl!);
    const delta = (type: string) => m.sum('bpfleet_telemetry_reports_total', { error_type: type }) - before.sum('bpfleet_telemetry_reports_total', { error_type: type });
    assert.equal(delta('HOST_MISMATCH'), 2);
    assert.equal(delta('FUTURE_TIMESTAMP'), 1);
  });
});
