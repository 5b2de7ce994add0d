/**
 * Audit retention against a real etcd: the leader deletes entries past the age limit and
 * the oldest past the count limit, fenced on its epoch.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Etcd3 } from 'etcd3';
import { NotLeaderError, type Fence } from '../../common/etcd/fence.js';
import { createLogger } from '../../common/log.js';
import { keys } from '../../common/keys.js';
import { CleanupStack } from '../../dev/cleanup.js';
import { etcdWithLeader } from '../../e2e/support/etcd-leader.js';
import { prereqSkip } from '../../e2e/support/prereqs.js';
import { pruneAuditWhileLeading } from '../audit-retention.js';
import { AuditLog } from './audit.js';

const T0 = Date.parse('2026-03-01T00:00:00.000Z');
const DAY = 24 * 3600_000;

describe('audit retention on a real etcd', { skip: await prereqSkip(['etcd']) }, () => {
  const cleanup = new CleanupStack();
  let etcd: Etcd3;
  let fence: Fence;

  before(async () => {
    ({ etcd, fence } = await etcdWithLeader(cleanup));
  });
  after(() => cleanup.runAll());

  /** An audit log whose clock reads `at`, and `n` entries written one day apart from `from`. */
  async function written(n: number, from: number): Promise<void> {
    for (let i = 0; i < n; i++) await new AuditLog(etcd, () => new Date(from + i * DAY)).record('alice', 'rollout.create', `r-${i}`);
  }
  const reset = () => etcd.delete().prefix(keys.auditPrefix).exec();

  test('entries older than the age limit go, the rest stay', async () => {
    await reset();
    await written(10, T0); // days 0..9
    const log = new AuditLog(etcd, () => new Date(T0 + 10 * DAY));
    assert.equal(await log.prune(fence, { maxEntries: 1000, maxAgeMs: 5 * DAY }), 5);
    assert.deepEqual((await log.list()).map((e) => e.target), ['r-5', 'r-6', 'r-7', 'r-8', 'r-9']);
  });

  test('past the count limit the oldest go, in pages, and a second prune deletes nothing', async () => {
    await reset();
    const log = new AuditLog(etcd, () => new Date(T0));
    // One call, 300 entries at one instant: key order (time, then a random id) decides which are oldest.
    await log.recordAll('bob', 'verb', 'r-bulk', Array.from({ length: 300 }, (_, i) => ({ i })));
    const before = (await etcd.getAll().prefix(keys.auditPrefix).keys()).sort();
    assert.equal(await log.prune(fence, { maxEntries: 120, maxAgeMs: DAY }), 180);
    assert.deepEqual((await etcd.getAll().prefix(keys.auditPrefix).keys()).sort(), before.slice(180));
    assert.equal(await log.prune(fence, { maxEntries: 120, maxAgeMs: DAY }), 0);
  });

  test('under a stale fence nothing is deleted', async () => {
    await reset();
    await written(3, T0);
    const log = new AuditLog(etcd, () => new Date(T0 + 100 * DAY));
    await assert.rejects(log.prune({ key: fence.key, epoch: fence.epoch + 1 }, { maxEntries: 1, maxAgeMs: DAY }), NotLeaderError);
    assert.equal(await etcd.getAll().prefix(keys.auditPrefix).count(), 3);
  });

  test('the leader prunes at once and every round until its leadership is lost', async () => {
    await reset();
    await written(4, T0);
    const lost = new AbortController();
    const log = new AuditLog(etcd, () => new Date(T0 + 3 * DAY));
    const loop = pruneAuditWhileLeading(log, { fence, lost: lost.signal }, createLogger('test'), { maxEntries: 2, maxAgeMs: 10 * DAY }, 50);
    for (let i = 0; (await etcd.getAll().prefix(keys.auditPrefix).count()) > 2; i++) {
      assert.ok(i < 100, 'pruned within 5 s');
      await new Promise((r) => setTimeout(r, 50));
    }
    await written(3, T0 + 10 * DAY);
    for (let i = 0; (await etcd.getAll().prefix(keys.auditPrefix).count()) > 2; i++) {
      assert.ok(i < 100, 'pruned again within 5 s');
      await new Promise((r) => setTimeout(r, 50));
    }
    lost.abort();
    await loop;
    await written(3, T0 + 20 * DAY);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(await etcd.getAll().prefix(keys.auditPrefix).count(), 5, 'a replica that lost leadership prunes no more');
  });
});
