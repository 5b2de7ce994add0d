/**
 * GetRollout, GetRolloutHosts and WatchRollout on a real etcd and a real gRPC server, with
 * rollouts larger than one message's host bound: what is sent stays bounded whatever the
 * fleet's size, and a follower that merges the deltas sees every host's latest progress.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import type { Etcd3 } from 'etcd3';
import { BpfleetError } from '../../common/errors.js';
import type { Fence } from '../../common/etcd/fence.js';
import { createLogger } from '../../common/log.js';
import { CleanupStack } from '../../dev/cleanup.js';
import { etcdWithLeader } from '../../e2e/support/etcd-leader.js';
import { prereqSkip } from '../../e2e/support/prereqs.js';
import { ControlServiceService } from '../../proto/gen/bpfleet/v1/control.js';
import { HostPhase, Rollout, RolloutPhase, type HostProgress } from '../../proto/gen/bpfleet/v1/rollout.js';
import { Control } from '../cli/client.js';
import { follow } from '../cli/follow.js';
import { toRolloutSpec } from '../rollout/spec.js';
import { emptyStatus } from '../rollout/vocabulary.js';
import { HOSTS_PER_MESSAGE, RolloutStore } from '../store/rollouts.js';
import { rolloutHandlers, type RolloutDeps } from './rollouts.js';

const spec = toRolloutSpec({ module: 'm', version: '2.0.0', attachment: 'xdp:eth0', steps: [{ canary: 1 }, { percent: 100 }] });
const name = (i: number): string => `h${String(i).padStart(5, '0')}`;

function progress(host: string, phase = HostPhase.HOST_PHASE_PENDING): HostProgress {
  return { host, wave: 0, phase, previousDigest: '', previousVersion: '', message: '', progId: 0, detail: '', rollbackAttempts: 0 };
}

async function refusal(p: Promise<unknown>): Promise<[string, string]> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof BpfleetError, String(err));
    return [err.code, err.reason];
  }
  assert.fail('the call was not refused');
}

describe('rollout hosts in bounded messages, on a real etcd', { skip: await prereqSkip(['etcd']) }, () => {
  const cleanup = new CleanupStack();
  let etcd: Etcd3;
  let store: RolloutStore;
  let ctl: Control;
  let fence: Fence;
  const total = 2 * HOSTS_PER_MESSAGE + 400;
  let rollout: Rollout;

  before(async () => {
    ({ etcd, fence } = await etcdWithLeader(cleanup));
    store = new RolloutStore(etcd);
    const deps = { etcd, rollouts: store, log: createLogger('test', { level: 'silent' }) } as unknown as RolloutDeps;
    const grpc = new Server();
    grpc.addService(ControlServiceService, rolloutHandlers(deps));
    const port = await new Promise<number>((resolve, reject) =>
      grpc.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    cleanup.defer(() => grpc.forceShutdown(), 'stop the gRPC server');
    ctl = new Control(`127.0.0.1:${port}`, { mode: 'insecure' });
    cleanup.defer(() => ctl.close(), 'close the client');
    rollout = {
      id: 'big', spec, createdAt: '2026-01-01T00:00:00.000Z', createdBy: 'test', undoOf: '',
      status: { ...emptyStatus(), phase: RolloutPhase.ROLLOUT_PHASE_PROGRESSING, hosts: Array.from({ length: total }, (_, i) => progress(name(i), i % 7 === 0 ? HostPhase.HOST_PHASE_FAILED : HostPhase.HOST_PHASE_PENDING)) },
    };
    await store.saveStatus(rollout, fence);
  });
  after(() => cleanup.runAll());

  test('GetRollout carries the first hosts and counts the rest as omitted', async () => {
    const r = await ctl.call('getRollout', { id: 'big' });
    assert.equal(r.status!.hosts.length, HOSTS_PER_MESSAGE);
    assert.equal(r.status!.hostsOmitted, total - HOSTS_PER_MESSAGE);
    assert.equal(r.status!.hostCounts!.total, total);
  });

  test('GetRolloutHosts pages through every host once, and filters by phase', async () => {
    const seen: string[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const res = await ctl.call('getRolloutHosts', { id: 'big', pageSize: 1000, pageToken, phases: [] });
      assert.ok(res.hosts.length <= 1000);
      assert.equal(res.hostCounts!.total, total);
      seen.push(...res.hosts.map((h) => h.host));
      pageToken = res.nextPageToken;
      pages++;
    } while (pageToken);
    assert.equal(pages, 3);
    assert.deepEqual(seen, Array.from({ length: total }, (_, i) => name(i)));
    const failed = await ctl.call('getRolloutHosts', { id: 'big', pageSize: 5000, pageToken: '', phases: [HostPhase.HOST_PHASE_FAILED] });
    assert.deepEqual(failed.hosts.map((h) => h.host), seen.filter((_, i) => i % 7 === 0));
    assert.equal(failed.nextPageToken, '');
  });

  test('GetRolloutHosts refuses a bad page token, page size or phase, and an unknown rollout', async () => {
    assert.deepEqual(await refusal(ctl.call('getRolloutHosts', { id: 'big', pageSize: 0, pageToken: 'not-a-token', phases: [] })), ['INVALID_ARGUMENT', 'BAD_PAGE_TOKEN']);
    assert.deepEqual(await refusal(ctl.call('getRolloutHosts', { id: 'big', pageSize: 5001, pageToken: '', phases: [] })), ['INVALID_ARGUMENT', 'BAD_PAGE_SIZE']);
    assert.deepEqual(await refusal(ctl.call('getRolloutHosts', { id: 'big', pageSize: 0, pageToken: '', phases: ["HOST_PHASE_BOGUS" as unknown as HostPhase] })), ['INVALID_ARGUMENT', 'BAD_PHASE']);
    assert.deepEqual(await refusal(ctl.call('getRolloutHosts', { id: 'nope', pageSize: 0, pageToken: '', phases: [] })), ['NOT_FOUND', 'ROLLOUT_NOT_FOUND']);
  });

  test('WatchRollout sends the view, then only changed hosts in bounded messages; a follower merges them', async () => {
    const raw: Rollout[] = [];
    const stream = ctl.watch('big');
    stream.on('data', (r: Rollout) => raw.push(r));
    const ended = new Promise<void>((resolve, reject) => {
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    let merged: Rollout | null = null;
    const followed = follow(ctl, 'big', { timeoutMs: 30_000, until: () => false, onUpdate: (r) => (merged = r) });
    const waitFor = async (what: string, ok: () => boolean): Promise<void> => {
      for (const deadline = Date.now() + 15_000; !ok(); await new Promise((r) => setTimeout(r, 20))) {
        if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
      }
    };
    await waitFor('the first message', () => raw.length >= 1);
    assert.equal(raw[0]!.status!.hostsChangedOnly, false);
    assert.equal(raw[0]!.status!.hosts.length, HOSTS_PER_MESSAGE);

    const few = structuredClone(rollout);
    for (const i of [1, 2, total - 1]) few.status!.hosts[i]!.phase = HostPhase.HOST_PHASE_UPDATING;
    await store.saveStatus(few, fence, rollout);
    await waitFor('the delta of three hosts', () => raw.length >= 2);
    assert.equal(raw[1]!.status!.hostsChangedOnly, true);
    assert.deepEqual(raw[1]!.status!.hosts.map((h) => h.host), [name(1), name(2), name(total - 1)]);

    const many = structuredClone(few);
    many.status!.phase = RolloutPhase.ROLLOUT_PHASE_SUCCEEDED;
    for (const h of many.status!.hosts) h.phase = HostPhase.HOST_PHASE_UPDATED;
    await store.saveStatus(many, fence, few);
    await ended;
    const last = raw.slice(2);
    assert.equal(last.length, Math.ceil(total / HOSTS_PER_MESSAGE), 'a change of every host comes as several bounded messages');
    assert.equal(last.reduce((n, r) => n + r.status!.hosts.length, 0), total);
    for (const r of raw) assert.ok(Rollout.encode(r).finish().length < 300 * 1024, 'every message stays small');

    const result = await followed;
    assert.equal(result.how, 'ended');
    const view = merged as Rollout | null;
    assert.equal(view!.status!.phase, RolloutPhase.ROLLOUT_PHASE_SUCCEEDED);
    assert.equal(view!.status!.hosts.length, total, 'the follower holds every host once');
    assert.ok(view!.status!.hosts.every((h) => h.phase === HostPhase.HOST_PHASE_UPDATED));
  });
});
