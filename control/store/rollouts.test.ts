/**
 * The rollout store against a real etcd: rollout progress as a record plus one key per
 * host. Sizes go past etcd's 128-operations-per-transaction limit on purpose.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Etcd3 } from 'etcd3';
import { NotLeaderError, type Fence } from '../../common/etcd/fence.js';
import { keys } from '../../common/keys.js';
import { CleanupStack } from '../../dev/cleanup.js';
import { etcdWithLeader } from '../../e2e/support/etcd-leader.js';
import { prereqSkip } from '../../e2e/support/prereqs.js';
import { HostPhase, RolloutPhase, Verdict, type AnalysisRun, type HostProgress, type Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import { ANALYSES_KEPT } from '../rollout/analyses.js';
import { canaryDone, fleet, step, T0 } from '../rollout/rollouts.fixture.js';
import { toRolloutSpec } from '../rollout/spec.js';
import type { AnalysisRequest } from '../rollout/steps.js';
import { emptyStatus } from '../rollout/vocabulary.js';
import { DesiredStore } from './desired.js';
import { HOSTS_PER_MESSAGE, RolloutStore } from './rollouts.js';

const spec = toRolloutSpec({ module: 'm', version: '2.0.0', attachment: 'xdp:eth0', steps: [{ canary: 1 }, { percent: 100 }] });

function progress(host: string, wave: number, phase = HostPhase.HOST_PHASE_PENDING): HostProgress {
  return { host, wave, phase, previousDigest: 'sha256:old', previousVersion: '1.0.0', message: '', progId: 0, detail: '', rollbackAttempts: 0 };
}

function rolloutOf(id: string, hosts: HostProgress[], phase = RolloutPhase.ROLLOUT_PHASE_PROGRESSING): Rollout {
  return {
    id, spec, createdAt: `2026-01-01T00:00:0${id.length % 10}.000Z`, createdBy: 'test', undoOf: '',
    status: { ...emptyStatus(), phase, hosts },
  };
}

describe('rollout store on a real etcd', { skip: await prereqSkip(['etcd']) }, () => {
  const cleanup = new CleanupStack();
  let etcd: Etcd3;
  let fence: Fence;
  const stale: Fence = { key: '/bpfleet/election/leader/test', epoch: 1 };

  before(async () => {
    ({ etcd, fence } = await etcdWithLeader(cleanup));
  });
  after(() => cleanup.runAll());

  test('a rollout that succeeds records the version it promoted for its selector, with the final status; one that rolls back does not', async () => {
    const store = new RolloutStore(etcd);
    const desired = new DesiredStore(etcd);
    const prod = { ...spec, selector: { env: 'prod' } };
    const finished = (id: string, phase: RolloutPhase, version: string) => {
      const r = rolloutOf(id, [progress('h1', 0, HostPhase.HOST_PHASE_UPDATED)], phase);
      r.spec = { ...prod, version };
      r.status!.digest = `sha256:${version}`;
      r.status!.updatedAt = '2026-01-01T00:01:00.000Z';
      return r;
    };
    await store.saveStatus(finished('d1', RolloutPhase.ROLLOUT_PHASE_SUCCEEDED, '2.0.0'), fence);
    await store.saveStatus(finished('d2', RolloutPhase.ROLLOUT_PHASE_ROLLED_BACK, '3.0.0'), fence);
    let records = await desired.list();
    assert.deepEqual(records.map((d) => [d.module, d.version, d.digest, d.attachment, d.selector, d.rolloutId, d.at]),
      [['m', '2.0.0', 'sha256:2.0.0', 'xdp:eth0', { env: 'prod' }, 'd1', '2026-01-01T00:01:00.000Z']], 'a rollback leaves the previous version');
    assert.equal(await etcd.get(keys.activeLock('m', 'xdp:eth0')).string(), null);
    await store.saveStatus(finished('d3', RolloutPhase.ROLLOUT_PHASE_SUCCEEDED, '3.0.0'), fence);
    records = await desired.list();
    assert.deepEqual(records.map((d) => d.version), ['3.0.0'], 'the same selector: one record, replaced');
    await etcd.put(`${keys.desiredPrefix}m/xdp%3Aeth0/forged`).value(await etcd.get(keys.desired('m', 'xdp:eth0', { env: 'prod' })).string() ?? '');
    await etcd.put(`${keys.desiredPrefix}junk`).value('{not json');
    assert.deepEqual((await desired.list()).map((d) => d.version), ['3.0.0'], 'values under keys that are not their own are skipped');
    await etcd.delete().prefix(keys.desiredPrefix);
  });

  test('a rollout is a record with host counts plus one key per host, read back whole and in wave order', async () => {
    const store = new RolloutStore(etcd);
    const hosts = Array.from({ length: 300 }, (_, i) => progress(`h${i}`, i % 3));
    await store.saveStatus(rolloutOf('r1', hosts), fence);
    const record = JSON.parse((await etcd.get(keys.rollout('r1')).string())!);
    assert.equal(record.status.hosts, undefined, 'the record must not hold the hosts');
    assert.equal(record.status.hostCounts.total, 300);
    assert.equal(await etcd.getAll().prefix(keys.rolloutHostsOf('r1')).count(), 300);
    const back = (await store.get('r1'))!;
    assert.equal(back.status!.hosts.length, 300);
    assert.deepEqual(back.status!.hosts.map((h) => h.wave), [...hosts].map((h) => h.wave).sort());
    assert.deepEqual(new Set(back.status!.hosts.map((h) => h.host)), new Set(hosts.map((h) => h.host)));
  });

  test('a save given the previous rollout writes only the hosts that changed', async () => {
    const store = new RolloutStore(etcd);
    const first = rolloutOf('r2', Array.from({ length: 200 }, (_, i) => progress(`h${i}`, 0)));
    await store.saveStatus(first, fence);
    const revisionOf = async (host: string) => Number((await etcd.get(keys.rolloutHost('r2', host)).exec()).kvs[0]!.mod_revision);
    const untouched = await revisionOf('h150');
    const next = structuredClone(first);
    next.status!.hosts[7]!.phase = HostPhase.HOST_PHASE_UPDATED;
    const revision = await store.saveStatus(next, fence, first);
    assert.equal(await revisionOf('h150'), untouched);
    assert.equal(await revisionOf('h7'), revision);
    const stored = await store.read('r2');
    assert.equal(stored!.revision, revision);
    assert.equal(stored!.rollout.status!.hosts.find((h) => h.host === 'h7')!.phase, HostPhase.HOST_PHASE_UPDATED);
    assert.equal(stored!.rollout.status!.hostCounts!.updated, 1);
  });

  test('a save under a stale fence writes nothing, however many transactions it needs', async () => {
    const store = new RolloutStore(etcd);
    await assert.rejects(store.saveStatus(rolloutOf('r3', Array.from({ length: 400 }, (_, i) => progress(`h${i}`, 0))), stale), NotLeaderError);
    assert.equal(await etcd.getAll().prefix(keys.rolloutHostsOf('r3')).count(), 0);
    assert.equal(await etcd.get(keys.rollout('r3')).string(), null);
  });

  test('a final save releases the active slot; list() shows hosts unless asked not to', async () => {
    const store = new RolloutStore(etcd);
    const created = rolloutOf('r4', [], RolloutPhase.ROLLOUT_PHASE_PENDING);
    await store.create(created);
    assert.equal(await etcd.get(keys.activeLock(spec.module, spec.attachment)).string(), 'r4');
    const done = rolloutOf('r4', [progress('a', 0, HostPhase.HOST_PHASE_UPDATED)], RolloutPhase.ROLLOUT_PHASE_SUCCEEDED);
    await store.saveStatus(done, fence, created);
    assert.equal(await etcd.get(keys.activeLock(spec.module, spec.attachment)).string(), null);
    const whole = (await store.list()).find((r) => r.id === 'r4')!;
    assert.deepEqual(whole.status!.hosts.map((h) => h.host), ['a']);
    const records = (await store.list({ hosts: false })).find((r) => r.id === 'r4')!;
    assert.deepEqual(records.status!.hosts, []);
    assert.equal(records.status!.hostCounts!.updated, 1);
  });

  test('view() carries at most HOSTS_PER_MESSAGE hosts and counts the rest as omitted', async () => {
    const store = new RolloutStore(etcd);
    const total = HOSTS_PER_MESSAGE + 234;
    const hosts = Array.from({ length: total }, (_, i) => progress(`h${String(i).padStart(5, '0')}`, i % 4));
    await store.saveStatus(rolloutOf('big', hosts), fence);
    const { rollout } = (await store.view('big'))!;
    assert.equal(rollout.status!.hosts.length, HOSTS_PER_MESSAGE);
    assert.equal(rollout.status!.hostsOmitted, 234);
    assert.equal(rollout.status!.hostCounts!.total, total);
    const small = (await store.view('r1'))!.rollout;
    assert.equal(small.status!.hosts.length, 300, 'a rollout under the bound is whole');
    assert.equal(small.status!.hostsOmitted, 0);
  });

  test('hostsPage() pages in name order, resumes after a name, filters by phase and never repeats a host', async () => {
    const store = new RolloutStore(etcd);
    const hosts = Array.from({ length: 2500 }, (_, i) => progress(`p${String(i).padStart(5, '0')}`, 0, i % 10 === 3 ? HostPhase.HOST_PHASE_FAILED : HostPhase.HOST_PHASE_UPDATED));
    await store.saveStatus(rolloutOf('paged', hosts), fence);
    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await store.hostsPage('paged', { limit: 700, after });
      assert.ok(page.hosts.length <= 700);
      seen.push(...page.hosts.map((h) => h.host));
      if (page.next === null) break;
      after = page.next;
    }
    assert.deepEqual(seen, hosts.map((h) => h.host), 'every host once, in name order');
    const failed: string[] = [];
    after = undefined;
    for (;;) {
      const page = await store.hostsPage('paged', { limit: 100, after, phases: new Set([HostPhase.HOST_PHASE_FAILED]) });
      failed.push(...page.hosts.map((h) => h.host));
      if (page.next === null) break;
      after = page.next;
    }
    assert.deepEqual(failed, hosts.filter((h) => h.phase === HostPhase.HOST_PHASE_FAILED).map((h) => h.host));
  });

  test('changedHosts() returns only hosts written since a revision', async () => {
    const store = new RolloutStore(etcd);
    const first = rolloutOf('delta', Array.from({ length: 1500 }, (_, i) => progress(`d${String(i).padStart(4, '0')}`, 0)));
    const before = await store.saveStatus(first, fence);
    const next = structuredClone(first);
    for (const i of [3, 700, 1499]) next.status!.hosts[i]!.phase = HostPhase.HOST_PHASE_UPDATING;
    const now = await store.saveStatus(next, fence, first);
    const changed = await store.changedHosts('delta', before + 1, now);
    assert.deepEqual(changed.map((h) => h.host), ['d0003', 'd0700', 'd1499']);
    assert.ok(changed.every((h) => h.phase === HostPhase.HOST_PHASE_UPDATING));
    assert.equal((await store.changedHosts('delta', 1, now)).length, 1500, 'from the start: every host, across pages');
  });

  test('a bake held inconclusive by analyses as large as they come: every save fits, the record keeps the newest 32', async () => {
    const store = new RolloutStore(etcd);
    const hosts = fleet(4);
    // Each analysis names 10,000 stale hosts and says so in its summary: one alone is past
    // etcd's 1.5 MiB request limit unless cut.
    const stale = Array.from({ length: 10_000 }, (_, i) => `host-${String(i).padStart(240, '0')}`);
    const analyze = (req: AnalysisRequest): AnalysisRun => ({
      step: req.step, verdict: Verdict.VERDICT_INCONCLUSIVE, metrics: [], at: new Date(req.to).toISOString(),
      summary: `no recent telemetry from ${stale.join(', ')}`, staleHosts: stale,
    });
    const spec = { steps: [{ canary: 1 }, { bake: '1s' }, { percent: 100 }], analysis: { interval: '1s', inconclusiveLimit: 1000, metrics: [{ name: 'drop_rate', max: 0.1 }] } };
    let r: Rollout = { ...canaryDone(spec, hosts), id: 'r-analyses' };
    await store.saveStatus(r, fence);
    let now = T0 + 1000;
    for (let i = 0; i < 40; i++, now += 1000) {
      const d = step({ rollout: r, hosts, now, analyze });
      await store.saveStatus(d.rollout, fence, r);
      r = d.rollout;
    }
    const record = (await etcd.get(keys.rollout('r-analyses')).string())!;
    assert.ok(record.length < 1024 * 1024, `record of ${record.length} bytes`);
    const back = (await store.get('r-analyses'))!;
    assert.equal(back.status!.analyses.length, ANALYSES_KEPT);
    assert.equal(back.status!.analysesDropped, 40 - ANALYSES_KEPT);
    assert.equal(back.status!.analyses.at(-1)!.at, new Date(now - 1000).toISOString());
  });
});
