/**
 * The control plane's etcd storage, the way it is now against the naive way it started as,
 * in the same run on the same etcd, at 1,000 and 10,000 hosts:
 *
 * - rollout status: the whole status (every host's progress) rewritten in one key after
 *   every batch, against a record with host counts plus one key per host, written only
 *   when that host changed, in fenced transactions of at most 128 operations. The saves
 *   are the ones a real rollout makes: reconcile() itself is driven through a four-wave
 *   rollout (canary 1, 10%, 50%, 100%) with every apply succeeding.
 * - intents: one read and one fenced transaction per host against up to 127 per transaction.
 * - the fleet: reading every registration and observed state on each controller pass
 *   against the watched in-memory HostDirectory.
 *
 * Only etcd is real here (no agents, no control process): this isolates storage cost.
 * Writes bench/results/storage.json. Run: npx tsx bench/storage.ts
 */
import { Etcd3 } from 'etcd3';
import { simArtifact } from '../agent/dataplane/sim/artifacts.js';
import { keys } from '../common/keys.js';
import { recordApplies } from '../control/rollout/apply-results.js';
import { reconcile } from '../control/rollout/reconcile.js';
import { toRolloutSpec } from '../control/rollout/spec.js';
import type { HostView } from '../control/rollout/steps.js';
import { emptyStatus } from '../control/rollout/vocabulary.js';
import { chunk, mapLimit } from '../common/etcd/batch.js';
import type { Fence } from '../common/etcd/fence.js';
import { HostDirectory } from '../common/etcd/hosts.js';
import { IntentStore } from '../common/etcd/intents.js';
import { RolloutStore } from '../control/store/rollouts.js';
import { startEtcd } from '../dev/etcd.js';
import { AttachmentStatus, GetStateResponse } from '../proto/gen/bpfleet/v1/agent.js';
import { Host } from '../proto/gen/bpfleet/v1/control.js';
import type { Rollout } from '../proto/gen/bpfleet/v1/rollout.js';
import { NaiveHostDirectory, NaiveIntentStore, NaiveRolloutStore } from './control/naive.js';
import { machine, writeResult } from './dataplane/report.js';

const SIZES = (process.env.BPFLEET_BENCH_STORAGE_SIZES ?? '1000,10000').split(',').map(Number);
const LIST_CALLS = 5;

const v1 = simArtifact({ name: 'storage-probe', version: '1.0.0' });
const v2 = simArtifact({ name: 'storage-probe', version: '2.0.0' });
const spec = toRolloutSpec({
  module: 'storage-probe', version: '2.0.0', attachment: 'xdp:eth0',
  steps: [{ canary: 1 }, { percent: 10 }, { percent: 50 }, { percent: 100 }],
  maxUnavailable: '100%',
});
const hostName = (i: number) => `h${i}`;

/** The statuses a four-wave rollout of `n` hosts saves, in order, as the controller would. */
function rolloutSaves(id: string, n: number): Rollout[] {
  const hosts: HostView[] = Array.from({ length: n }, (_, i) => ({
    name: hostName(i + 1), labels: {}, capabilities: ['xdp'],
    running: { name: v1.manifest.name, version: v1.manifest.version, digest: v1.digest },
  }));
  const target = { name: v2.manifest.name, version: v2.manifest.version, digest: v2.digest };
  let rollout: Rollout = { id, spec, status: emptyStatus(), createdAt: new Date().toISOString(), createdBy: 'bench', undoOf: '' };
  const saves: Rollout[] = [];
  let now = Date.now();
  for (let pass = 0; pass < 100; pass++) {
    const d = reconcile({ rollout, target, hosts, now: now++, analyze: () => { throw new Error('no analysis in this rollout'); } });
    if (d.events.length) saves.push(d.rollout);
    rollout = d.rollout;
    if (d.actions.length) {
      rollout = recordApplies(rollout, d.actions.map((action) => ({ action, outcome: { ok: true as const, progId: 1 } })), now++).rollout;
      saves.push(rollout);
    }
    if (!d.events.length && !d.actions.length) break;
  }
  return saves;
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value?: T; error?: string }> {
  const t0 = performance.now();
  try {
    const value = await fn();
    return { ms: Math.round((performance.now() - t0) * 10) / 10, value };
  } catch (err) {
    return { ms: Math.round((performance.now() - t0) * 10) / 10, error: (err as Error).message };
  }
}

async function statusWrites(etcd: Etcd3, endpoint: string, fence: Fence, n: number) {
  const naiveSaves = rolloutSaves(`naive-${n}`, n);
  // A client of its own: errors open the etcd3 client's circuit breaker for everything after.
  const naiveClient = new Etcd3({ hosts: endpoint });
  const naive = new NaiveRolloutStore(naiveClient);
  const naiveBefore = await etcdBytes(endpoint);
  const naiveRun = await timed(async () => {
    for (const r of naiveSaves) await naive.saveStatus(r, fence);
  });
  const naiveBytes = (await etcdBytes(endpoint)) - naiveBefore;
  naiveClient.close();
  const saves = rolloutSaves(`keyed-${n}`, n);
  const store = new RolloutStore(etcd);
  const before = await etcdBytes(endpoint);
  const keyedRun = await timed(async () => {
    let previous: Rollout | undefined;
    for (const r of saves) {
      await store.saveStatus(r, fence, previous);
      previous = r;
    }
  });
  const keyedBytes = (await etcdBytes(endpoint)) - before;
  const readBack = await store.get(`keyed-${n}`);
  if (readBack?.status?.hosts.length !== n) throw new Error(`read back ${readBack?.status?.hosts.length} hosts of ${n}`);
  return {
    saves: saves.length,
    wholeStatus: { ms: naiveRun.ms, bytesToEtcd: naiveBytes, error: naiveRun.error ?? null },
    perHostKeys: { ms: keyedRun.ms, bytesToEtcd: keyedBytes, error: keyedRun.error ?? null },
  };
}

/** What etcd has received from clients so far, in bytes (its own counter). */
async function etcdBytes(endpoint: string): Promise<number> {
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  return Number(/^etcd_network_client_grpc_received_bytes_total (\S+)$/m.exec(text)?.[1]);
}

async function intentWrites(etcd: Etcd3, endpoint: string, fence: Fence, n: number) {
  const drafts = (attachment: string) => Array.from({ length: n }, (_, i) => ({
    host: hostName(i + 1), attachment, module: { name: v2.manifest.name, version: v2.manifest.version, digest: v2.digest },
    expectedDigest: v1.digest, rolloutId: 'bench',
  }));
  const batched = await timed(() => new IntentStore(etcd).writeAll(drafts('xdp:batched'), fence));
  // All at once, as the first controller sent them: one write per apply, every apply started together.
  const naiveClient = new Etcd3({ hosts: endpoint });
  const naive = new NaiveIntentStore(naiveClient);
  const oneByOne = await timed(() => Promise.all(drafts('xdp:naive').map((d) => naive.write(d, fence))));
  naiveClient.close();
  return {
    oneTxnPerHost: { ms: oneByOne.ms, error: oneByOne.error ?? null },
    batched: { ms: batched.ms, error: batched.error ?? null },
  };
}

async function fleetReads(etcd: Etcd3, endpoint: string, n: number) {
  const observed = GetStateResponse.toJSON({
    host: '', labels: {}, attachments: [{
      attachment: 'xdp:eth0', module: { name: v1.manifest.name, version: v1.manifest.version, digest: v1.digest },
      progId: 1_000_001, linkId: 1_000_001, progTag: v1.digest.slice(7, 23), generation: 1, rolloutId: 'storage-probe-260101000000-abcd',
      leaderEpoch: 1, updatedAt: new Date().toISOString(), status: AttachmentStatus.ATTACHMENT_STATUS_RUNNING, reason: '', message: '',
    }],
  }) as Record<string, unknown>;
  await mapLimit(chunk(Array.from({ length: n }, (_, i) => hostName(i + 1)), 64), 8, (names) => etcd.kv.txn({
    success: names.flatMap((name) => [
      { request_put: { key: Buffer.from(keys.host(name)), value: Buffer.from(JSON.stringify(Host.toJSON({ name, labels: { role: 'edge' }, kernel: '6.18', capabilities: ['xdp', 'tcx-ingress', 'tcx-egress'], registeredAt: new Date().toISOString(), agentVersion: '0.1.0', address: '127.0.0.1:50061', attachments: [], lagging: [], refused: '', claimedName: '' }))) } },
      { request_put: { key: Buffer.from(keys.observed(name)), value: Buffer.from(JSON.stringify({ ...observed, host: name })) } },
    ]),
  }));
  const naiveClient = new Etcd3({ hosts: endpoint });
  const naive = new NaiveHostDirectory(naiveClient);
  const readEveryPass = await timed(async () => {
    for (let i = 0; i < LIST_CALLS; i++) if ((await naive.list()).length !== n) throw new Error('short list');
  });
  naiveClient.close();
  const watched = new HostDirectory(etcd);
  const firstList = await timed(() => watched.list());
  const cached = await timed(async () => {
    for (let i = 0; i < LIST_CALLS; i++) if ((await watched.list()).length !== n) throw new Error('short list');
  });
  await watched.close();
  return {
    readEveryPass: { msPerList: readEveryPass.error ? null : readEveryPass.ms / LIST_CALLS, error: readEveryPass.error ?? null },
    watched: { firstListMs: firstList.ms, msPerList: cached.ms / LIST_CALLS, error: firstList.error ?? cached.error ?? null },
  };
}

/** Waits until etcd has worked off what a flood left behind and answers a write again. */
async function settle(endpoint: string): Promise<void> {
  const client = new Etcd3({ hosts: endpoint });
  try {
    for (let i = 0; ; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      try {
        await client.put('/bench/settled').value(String(i));
        return;
      } catch (err) {
        if (i > 60) throw err;
      }
    }
  } finally {
    client.close();
  }
}

async function main(): Promise<void> {
  const server = await startEtcd();
  const etcd = new Etcd3({ hosts: server.endpoint });
  const runs = [];
  try {
    // A leader key like the election's: every controller write is fenced by its create revision.
    const put = await etcd.put('/bpfleet/election/leader/bench').value('bench').exec();
    const fence: Fence = { key: '/bpfleet/election/leader/bench', epoch: Number(put.header.revision) };
    for (const n of SIZES) {
      const status = await statusWrites(etcd, server.endpoint, fence, n);
      const fleet = await fleetReads(etcd, server.endpoint, n);
      // Last: the naive intent writes can leave etcd with a backlog ("too many requests").
      const intents = await intentWrites(etcd, server.endpoint, fence, n);
      await settle(server.endpoint);
      const run = { hosts: n, status, intents, fleet };
      process.stdout.write(`storage ${n} hosts: ${JSON.stringify(run)}\n`);
      runs.push(run);
    }
  } finally {
    etcd.close();
    await server.stop();
  }
  const path = writeResult('storage', {
    bench: 'etcd storage of the control plane: naive (as first built) vs now, same etcd, same run',
    machine: machine(),
    runs,
  });
  process.stdout.write(`wrote ${path}\n`);
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(`storage bench failed: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
