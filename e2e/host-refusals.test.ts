/**
 * Host registrations that lie about their name (issue 10, item 4), on a real etcd, NATS,
 * control plane and sim agents: a registration written under one host's key that claims
 * another name (NAME_MISMATCH), or a registered host's name (DUPLICATE_NAME), is listed as
 * refused by `bpfleet hosts` and ListHosts, counted by reason in
 * bpfleet_host_registrations_refused, and never planned: the rollout covers the honest hosts
 * only and no intent is written for the liars.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Etcd3 } from 'etcd3';
import { keys } from '../common/keys.js';
import { LocalFleet } from '../dev/fleet.js';
import { Host } from '../proto/gen/bpfleet/v1/control.js';
import { prereqSkip } from './support/prereqs.js';
import { scrape } from './support/prometheus.js';

const skip = await prereqSkip(['root', 'etcd', 'nats', 'netns', 'clang']);

interface HostJson { name: string; refused?: string; claimedName?: string }
interface RolloutJson { id: string; status: { phase: string; hosts: { host: string }[] } }

describe('host registrations whose name is not their key\'s are refused, never planned', { skip }, () => {
  let fleet: LocalFleet;
  let etcd: Etcd3;
  // Nothing listens at the liars' address: an apply sent there would fail the rollout.
  const liar = (claimed: string) => JSON.stringify(Host.toJSON({
    name: claimed, labels: { role: 'edge' }, address: '127.0.0.1:9', kernel: 'k', capabilities: ['xdp'], attachments: [], lagging: [],
    registeredAt: new Date().toISOString(), agentVersion: 'liar', refused: '', claimedName: '',
  }));

  before(async () => {
    fleet = await LocalFleet.start({ name: 'refuse', hosts: 2, driver: 'sim', trafficPps: 0, telemetryIntervalMs: 250 });
    // The control plane's own etcd client: the only identity that may write another host's key.
    etcd = fleet.etcdClient();
  });

  after(async () => {
    await etcd?.delete().key(keys.host('h8')).catch(() => undefined);
    await etcd?.delete().key(keys.host('h9')).catch(() => undefined);
    etcd?.close();
    await fleet?.stop();
  });

  test('listed with the reason, counted, and left out of a rollout', async () => {
    await etcd.put(keys.host('h9')).value(liar('h1'));
    await etcd.put(keys.host('h8')).value(liar('nobody'));

    const deadline = Date.now() + 10_000;
    let hosts: HostJson[] = [];
    while ((hosts = (await fleet.cliJson<{ hosts: HostJson[] }>(['hosts'])).hosts).length < 4) {
      assert.ok(Date.now() < deadline, `the directory never saw the liars: ${JSON.stringify(hosts)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.deepEqual(hosts.map((h) => [h.name, h.refused ?? '', h.claimedName ?? '']), [
      ['h1', '', ''], ['h2', '', ''], ['h8', 'NAME_MISMATCH', 'nobody'], ['h9', 'DUPLICATE_NAME', 'h1'],
    ]);
    const table = await fleet.cli(['hosts']);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^h9 .* REFUSED DUPLICATE_NAME: claims to be "h1", never planned$/m);
    assert.match(table.stdout, /^h8 .* REFUSED NAME_MISMATCH: claims to be "nobody", never planned$/m);

    const metrics = await scrape(fleet.controlMetricsUrl);
    assert.equal(metrics.sum('bpfleet_host_registrations_refused', { bpfleet_registration_refusal: 'DUPLICATE_NAME' }), 1);
    assert.equal(metrics.sum('bpfleet_host_registrations_refused', { bpfleet_registration_refusal: 'NAME_MISMATCH' }), 1);

    await fleet.cliJson(['module', 'push', 'agent/bpf/pass-counter-v1.yaml']);
    const created = await fleet.cli(['rollout', 'create', '-f', 'examples/rollout-v1.yaml', '--wait', '--timeout', '60s', '-o', 'json']);
    assert.equal(created.code, 0, created.stdout + created.stderr);
    const id = (JSON.parse(created.stdout) as RolloutJson).id;
    const rollout = await fleet.cliJson<RolloutJson>(['rollout', 'get', id]);
    assert.equal(rollout.status.phase, 'ROLLOUT_PHASE_SUCCEEDED');
    assert.deepEqual(rollout.status.hosts.map((h) => h.host).sort(), ['h1', 'h2']);
    for (const refused of ['h8', 'h9', 'nobody']) {
      assert.deepEqual(await etcd.getAll().prefix(keys.intentsOf(refused)).keys(), [], `an intent was written for ${refused}`);
    }
  });
});
