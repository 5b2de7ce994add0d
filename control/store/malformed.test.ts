/**
 * Malformed values in etcd (kind 3 of issue 11), against a real etcd: garbage written
 * with the etcd3 client directly under every prefix bpfleet reads — text that is not JSON,
 * JSON of the wrong shape, a key that does not decode as a name — is skipped, logged with
 * its key and counted in bpfleet.store.malformed{prefix}; every reader keeps serving the
 * good values around it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Etcd3 } from 'etcd3';
import { HostDirectory, HostRecords } from '../../common/etcd/hosts.js';
import { IntentStore } from '../../common/etcd/intents.js';
import { ModuleRegistry } from '../../common/etcd/modules.js';
import { keys } from '../../common/keys.js';
import { startTelemetry, type Telemetry } from '../../common/otel.js';
import { CleanupStack } from '../../dev/cleanup.js';
import { startEtcd, type EtcdServer } from '../../dev/etcd.js';
import { scrape } from '../../e2e/support/prometheus.js';
import { prereqSkip } from '../../e2e/support/prereqs.js';
import { Host } from '../../proto/gen/bpfleet/v1/control.js';
import { RolloutVerb } from '../../proto/gen/bpfleet/v1/rollout.js';
import { toRolloutSpec } from '../rollout/spec.js';
import { emptyStatus } from '../rollout/vocabulary.js';
import { AuditLog } from './audit.js';
import { RequestStore } from './requests.js';
import { RolloutStore } from './rollouts.js';

/** The three kinds of garbage, written under `prefix` with names that sort around the good ones. */
const GARBAGE = (prefix: string): [string, string][] => [
  [`${prefix}0-not-json`, 'this is not json {'],
  [`${prefix}1-wrong-shape`, '[1,2,3]'],
  [`${prefix}2-empty-object`, '{}'],
  [`${prefix}%zz-bad-key`, '{"name":"x","id":"x"}'],
];

const host = (name: string): Host => ({ name, labels: {}, address: '127.0.0.1:1', kernel: 'k', capabilities: ['xdp'], attachments: [], registeredAt: 't', agentVersion: 'v', lagging: [], refused: '', claimedName: '' });

describe('malformed etcd values are skipped, logged and counted', { skip: await prereqSkip(['etcd']) }, () => {
  const cleanup = new CleanupStack();
  let server: EtcdServer;
  let etcd: Etcd3;
  let telemetry: Telemetry;
  const malformed = async (prefix: string) => (await scrape(telemetry.metricsUrl!)).sum('bpfleet_store_malformed_total', { prefix });
  const writeGarbage = async (prefix: string) => {
    for (const [k, v] of GARBAGE(prefix)) await etcd.put(k).value(v);
  };

  before(async () => {
    telemetry = await startTelemetry({ serviceName: 'bpfleet-test', metricsPort: 0 });
    cleanup.defer(() => telemetry.shutdown(), 'stop telemetry');
    server = await startEtcd();
    cleanup.defer(() => server.stop(), 'stop etcd');
    etcd = new Etcd3({ hosts: server.endpoint });
    cleanup.defer(() => etcd.close(), 'close client');
  });
  after(() => cleanup.runAll());

  test('hosts and reports: the fleet lists the good hosts, on the first read and through the watch', async () => {
    const records = new HostRecords(etcd);
    await etcd.put(keys.host('good-1')).value(JSON.stringify(Host.toJSON(host('good-1'))));
    await writeGarbage(keys.hostsPrefix);
    await writeGarbage(keys.observedPrefix);
    // A registration under another host's key is not that host.
    await etcd.put(keys.host('liar')).value(JSON.stringify(Host.toJSON(host('someone-else'))));
    const before = await malformed(keys.hostsPrefix);
    const directory = new HostDirectory(etcd);
    cleanup.defer(() => directory.close(), 'close directory');
    assert.deepEqual((await directory.list()).map((h) => h.name), ['good-1']);
    assert.ok(await malformed(keys.hostsPrefix) - before >= 4, 'the bad registrations are counted');
    // Reports are decoded when their host is listed: of these only the key that names no host counts.
    assert.ok(await malformed(keys.observedPrefix) >= 1, 'the bad report key is counted');

    // Garbage arriving through the watch: skipped, and a good host after it still joins.
    await etcd.put(keys.host('z-bad-later')).value('nope');
    await etcd.put(`${keys.hostsPrefix}%zz`).value('{}');
    await etcd.put(keys.observed('good-1')).value('{"attachments": 5}');
    await etcd.put(keys.host('good-2')).value(JSON.stringify(Host.toJSON(host('good-2'))));
    const deadline = Date.now() + 5000;
    while (!(await directory.list()).some((h) => h.name === 'good-2')) {
      assert.ok(Date.now() < deadline, 'good-2 never joined');
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual((await directory.list()).map((h) => h.name), ['good-1', 'good-2']);
    assert.equal(await records.lastReported('good-1'), null, 'a report that does not decode reads as none');
  });

  test('intents: an agent lists and watches its good intents past bad ones', async () => {
    const intents = new IntentStore(etcd);
    const prefix = keys.intentsOf('edge-1');
    await etcd.put(keys.intent('edge-1', 'xdp:eth0')).value(JSON.stringify({ host: 'edge-1', attachment: 'xdp:eth0', module: { name: 'm', version: '1', digest: 'sha256:1' }, generation: '1' }));
    await writeGarbage(prefix);
    const before = await malformed(keys.intentsPrefix);
    const listed = await intents.list('edge-1');
    assert.deepEqual([...listed.items.values()].map((i) => i.attachment), ['xdp:eth0']);
    assert.ok(await malformed(keys.intentsPrefix) - before >= 3);
    assert.equal(await intents.get('edge-1', '0-not-json'), null);
  });

  test('modules, rollouts, requests and audit entries: lists leave the bad ones out', async () => {
    const modules = new ModuleRegistry(etcd);
    const rollouts = new RolloutStore(etcd);
    const requests = new RequestStore(etcd);
    const audit = new AuditLog(etcd);
    const spec = toRolloutSpec({ module: 'm', version: '1.0.0', attachment: 'xdp:eth0', steps: [{ percent: 100 }] });
    await rollouts.create({ id: 'good', spec, status: emptyStatus(), createdAt: '2026-01-01T00:00:00.000Z', createdBy: 't', undoOf: '' });
    await audit.record('alice', 'rollout.create', 'good');
    for (const prefix of [keys.modulesPrefix + 'm/', keys.rolloutsPrefix, keys.rolloutHostsOf('good'), keys.auditPrefix, keys.requestsPrefix]) await writeGarbage(prefix);
    await etcd.put(`${keys.rolloutHostsPrefix}%zz/h1`).value('{"host":"h1"}');
    await etcd.put(keys.requests('good')).value('{"requests": "many"}');
    // A record whose id is not its key's would let one rollout overwrite another.
    await etcd.put(keys.rollout('impostor')).value((await etcd.get(keys.rollout('good')).string())!);

    assert.deepEqual(await modules.list(), []);
    assert.equal(await modules.get('m', '0-not-json'), null);
    assert.deepEqual((await rollouts.list()).map((r) => r.id), ['good']);
    assert.deepEqual((await rollouts.list({ hosts: false })).map((r) => r.id), ['good']);
    assert.equal(await rollouts.get('0-not-json'), null);
    assert.equal(await rollouts.get('impostor'), null);
    assert.deepEqual((await rollouts.get('good'))!.status!.hosts, []);
    assert.deepEqual(await requests.list('good'), []);
    const appended = await requests.append('good', { verb: RolloutVerb.ROLLOUT_VERB_PAUSE, actor: 'alice', at: 't', reason: '' }, () => true);
    assert.equal(appended?.seq, 1, 'an append overwrites a list that does not decode');
    assert.deepEqual((await audit.list()).map((e) => e.target), ['good']);
    for (const prefix of [keys.modulesPrefix, keys.rolloutsPrefix, keys.rolloutHostsPrefix, keys.auditPrefix, keys.requestsPrefix]) {
      assert.ok(await malformed(prefix) >= 1, `nothing counted under ${prefix}`);
    }
  });
});
