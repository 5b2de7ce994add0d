/**
 * Bad input against the real control plane (issue 11, kinds 3 and 8): a real etcd and
 * nats-server, the control plane and three sim-dataplane agents as processes.
 * - Garbage written straight into etcd under every prefix the daemons read is skipped and
 *   counted (bpfleet.store.malformed), and a rollout still completes.
 * - A 4 MiB rollout id is INVALID_ARGUMENT naming the limit, with a short message, and the
 *   very next call succeeds: nothing oversized reached etcd, so no breaker opened.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import type { Etcd3 } from 'etcd3';
import { keys } from '../common/keys.js';
import { ControlServiceClient } from '../proto/gen/bpfleet/v1/control.js';
import { LocalFleet } from '../dev/fleet.js';
import { scrape } from './support/prometheus.js';
import { prereqSkip } from './support/prereqs.js';

const skip = await prereqSkip(['root', 'etcd', 'nats', 'netns', 'clang']);

function unary<Res>(fn: (cb: (err: ServiceError | null, res: Res) => void) => unknown): Promise<Res> {
  return new Promise((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res))));
}

describe('bad input on the real control plane (sim dataplane)', { skip }, () => {
  let fleet: LocalFleet;
  let etcd: Etcd3;
  let api: ControlServiceClient;

  before(async () => {
    fleet = await LocalFleet.start({ name: 'badin', hosts: 3, driver: 'sim', trafficPps: 0, telemetryIntervalMs: 250 });
    etcd = fleet.etcdClient();
    api = new ControlServiceClient(fleet.controlAddress, fleet.credentials('admin'));
    const pushed = await fleet.cli(['module', 'push', 'agent/bpf/pass-counter-v1.yaml']);
    assert.equal(pushed.code, 0, pushed.stderr);
  });

  after(async () => {
    api?.close();
    etcd?.close();
    await fleet?.stop();
  });

  test('garbage under every prefix: skipped, counted, and a rollout still completes', async () => {
    const prefixes = [keys.hostsPrefix, keys.observedPrefix, keys.intentsOf('h1'), keys.modulesPrefix, keys.rolloutsPrefix, keys.requestsPrefix, keys.auditPrefix];
    for (const prefix of prefixes) {
      await etcd.put(`${prefix}0-not-json`).value('not json {');
      await etcd.put(`${prefix}1-wrong-shape`).value('[1,2]');
      await etcd.put(`${prefix}%zz`).value('{}');
    }
    const r = await fleet.cli(['rollout', 'create', '-f', 'examples/rollout-v1.yaml', '--wait', '--timeout', '60s']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const hosts = await fleet.cli(['hosts', '-o', 'json']);
    assert.equal(hosts.code, 0, hosts.stderr);
    const m = await scrape(fleet.controlMetricsUrl);
    assert.ok(m.sum('bpfleet_store_malformed_total') >= 3, `counted: ${m.sum('bpfleet_store_malformed_total')}`);
    assert.ok(m.sum('bpfleet_store_malformed_total', { prefix: keys.rolloutsPrefix }) >= 1);
  });

  test('a 4 MiB rollout id is INVALID_ARGUMENT naming the limit, and the next call succeeds', async () => {
    const huge = 'r'.repeat(4 << 20);
    const err = await unary((cb) => api.getRollout({ id: huge }, new Metadata(), cb)).then(() => assert.fail('accepted'), (e: ServiceError) => e);
    assert.equal(err.code, status.INVALID_ARGUMENT, err.details);
    assert.equal(err.metadata.get('bpfleet-reason')[0], 'FIELD_TOO_LONG');
    assert.match(err.details, /^id: 4194304 bytes is over the 128-byte limit$/);
    const verb = await unary((cb) => api.pauseRollout({ id: 'x', reason: huge }, new Metadata(), cb)).then(() => assert.fail('accepted'), (e: ServiceError) => e);
    assert.equal(verb.code, status.INVALID_ARGUMENT);
    assert.ok(verb.details.length < 200, verb.details);
    // Right after: a normal call works, no UNAVAILABLE from an open breaker.
    const listed = await unary<{ rollouts: unknown[] }>((cb) => api.listRollouts({ module: '' }, new Metadata(), cb));
    assert.ok(listed.rollouts.length >= 1);
  });
});
