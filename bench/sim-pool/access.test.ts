/** The sim pool's pooled identity: exactly its hosts' permissions (pure; the stores enforcing them: secured.test.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hostGrants } from '../../control/access/etcd-access.js';
import { hostNatsUser } from '../../control/access/nats-access.js';
import { poolHostNames, simPoolEtcdGrants, simPoolNatsUser } from './access.js';

test('etcd: the prefix versions of a host\'s own grants, under the pool\'s name prefix', () => {
  assert.deepEqual(simPoolEtcdGrants('sim-'), [
    { permission: 'Readwrite', key: '/bpfleet/hosts/sim-', prefix: true },
    { permission: 'Readwrite', key: '/bpfleet/observed/sim-', prefix: true },
    { permission: 'Read', key: '/bpfleet/intents/sim-', prefix: true },
    { permission: 'Read', key: '/bpfleet/modules/', prefix: true },
    { permission: 'Read', key: '/bpfleet/election/leader/', prefix: true },
  ]);
  // Each of a pool host's own grants is covered by one of the pool's, and nothing more is granted.
  const pool = simPoolEtcdGrants('sim-');
  for (const g of hostGrants('sim-7')) {
    assert.ok(pool.some((p) => p.permission === g.permission && g.key.startsWith(p.key)), `${g.permission} ${g.key} not covered`);
  }
  assert.equal(pool.length, hostGrants('sim-7').length);
  assert.throws(() => simPoolEtcdGrants(''), /empty name prefix/);
});

test('NATS: each of its hosts\' telemetry subjects, the object reads, its own inbox', () => {
  const hosts = poolHostNames('sim-', 3);
  assert.deepEqual(hosts, ['sim-1', 'sim-2', 'sim-3']);
  const user = simPoolNatsUser('bpfleet.dev', 'sim-pool', hosts);
  assert.equal(user.user, 'spiffe://bpfleet.dev/bpfleet/host/sim-pool');
  const one = hostNatsUser('bpfleet.dev', 'sim-1');
  assert.deepEqual(user.publish, [...hosts.map((h) => `bpfleet.telemetry.${h}`), ...one.publish!.slice(1)]);
  assert.deepEqual(user.subscribe, ['_INBOX_sim-pool.>']);
});
