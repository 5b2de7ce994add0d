/**
 * Leader election on a real etcd, including the case the chaos run found: a campaign whose
 * client never reports the election (its watch on the older key lost) must still lead.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Etcd3 } from 'etcd3';
import { CleanupStack } from '../dev/cleanup.js';
import { startEtcd, type EtcdServer } from '../dev/etcd.js';
import { prereqSkip } from '../e2e/support/prereqs.js';
import { LeaderElector, type Leadership } from './leader.js';

const TTL_SECONDS = 2;

async function until<T>(what: string, probe: () => T | undefined, ms = 15_000): Promise<T> {
  for (const deadline = Date.now() + ms; ; await new Promise((r) => setTimeout(r, 50))) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
  }
}

describe('LeaderElector on a real etcd', { skip: await prereqSkip(['etcd']) }, () => {
  const cleanup = new CleanupStack();
  let server: EtcdServer;

  before(async () => {
    server = await startEtcd();
    cleanup.defer(() => server.stop(), 'stop etcd');
  });
  after(() => cleanup.runAll());

  function elector(name: string): { elector: LeaderElector; leads: Leadership[]; errors: unknown[] } {
    const etcd = new Etcd3({ hosts: server.endpoint });
    cleanup.defer(() => etcd.close(), `close ${name}'s client`);
    const leads: Leadership[] = [];
    const errors: unknown[] = [];
    const e = new LeaderElector(etcd, name, TTL_SECONDS, (l) => leads.push(l), (err) => errors.push(err));
    cleanup.defer(() => e.stop(), `stop ${name}`);
    return { elector: e, leads, errors };
  }

  test('one replica leads, once, and its watchdog does not make it lead again', async () => {
    const a = elector('a');
    a.elector.start();
    await until('a to lead', () => a.leads[0]);
    await new Promise((r) => setTimeout(r, 3 * TTL_SECONDS * 1000));
    assert.equal(a.leads.length, 1);
    assert.equal(a.leads[0]!.lost.aborted, false);
    await a.elector.stop();
  });

  test('a replica whose client never reports the election still leads once the leader is gone', async () => {
    const first = elector('first');
    first.elector.start();
    await until('first to lead', () => first.leads[0]);
    const second = elector('second');
    second.elector.start();
    // What the chaos run saw: the etcd3 client's watch on the older key lost, so its
    // 'elected' event never comes.
    (second.elector as unknown as { campaign: NodeJS.EventEmitter }).campaign.removeAllListeners('elected');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(second.leads.length, 0, 'it waits while the first leads');
    await first.elector.stop();
    const lead = await until('second to lead without the event', () => second.leads[0], 4 * TTL_SECONDS * 1000);
    assert.ok(lead.fence.epoch > first.leads[0]!.fence.epoch, 'a newer epoch fences the old leader out');
    await new Promise((r) => setTimeout(r, 2 * TTL_SECONDS * 1000));
    assert.equal(second.leads.length, 1, 'it leads once');
  });
});
