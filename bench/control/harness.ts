/**
 * What the control-plane benchmarks run on: real etcd and nats-server, the control plane as
 * its own process (control/main.ts), and the SIM HOST POOL (bench/sim-pool: simulated
 * hosts, no kernel) as another, all on loopback. Also the measuring tools: CPU time per
 * process, etcd's own counters, and a watch on the rollout's record.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { simArtifact } from '../../agent/dataplane/sim/artifacts.js';
import { keys } from '../../common/keys.js';
import { Control } from '../../control/cli/client.js';
import type { ChannelCredentials } from '@grpc/grpc-js';
import { channelCredentials, loadTransport, type TransportSecurity } from '../../common/tls.js';
import { makeTempDir, removeTempDir } from '../../dev/claims.js';
import { CleanupStack } from '../../dev/cleanup.js';
import { createFleetPki, type DevCertificate, type FleetPki } from '../../dev/pki.js';
import { startEtcd, type EtcdServer } from '../../dev/etcd.js';
import { REPO } from '../../dev/fleet.js';
import { startNats, type NatsServer } from '../../dev/nats.js';
import { freePort } from '../../dev/ports.js';
import { spawnManaged, type ManagedProcess } from '../../dev/processes.js';
import { Rollout, RolloutPhase, type RolloutSpec } from '../../proto/gen/bpfleet/v1/rollout.js';
import { PushModuleRequest } from '../../proto/gen/bpfleet/v1/control.js';
import { isFinal } from '../../control/rollout/vocabulary.js';

const TSX = [process.execPath, '--import', 'tsx'] as const;

export interface PoolOptions {
  hosts: number;
  telemetryIntervalMs: number;
  preinstall?: string;
  dropRates?: Record<string, number>;
  pps?: number;
}

export interface Bench {
  etcd: EtcdServer;
  nats: NatsServer;
  control: ManagedProcess;
  api: Control;
  /** A client of our own, to watch what the controller writes. */
  kv: Etcd3;
  /** Credentials of the bench's admin user for gRPC clients of our own (insecure when the bench is). */
  credentials: ChannelCredentials;
  startPool(opts: PoolOptions): Promise<{ process: ManagedProcess; address: string }>;
  stop(): Promise<void>;
}

export interface BenchOptions {
  name: string;
  /** Directory for a V8 CPU profile of the control process (written when it exits). */
  cpuProfileDir?: string;
  /** Run the control plane, the pool and the API client --insecure (to compare with mTLS, the default). */
  insecure?: boolean;
}

export async function startBench(opts: BenchOptions): Promise<Bench> {
  const cleanup = new CleanupStack();
  try {
    const etcd = await startEtcd();
    cleanup.defer(() => etcd.stop(), 'stop etcd');
    const nats = await startNats();
    cleanup.defer(() => nats.stop(), 'stop nats');
    const listen = `127.0.0.1:${await freePort()}`;
    let pki: FleetPki | null = null;
    if (!opts.insecure) {
      const dir = makeTempDir(`${opts.name}-pki`);
      cleanup.defer(() => removeTempDir(dir), `remove ${dir}`);
      pki = await createFleetPki(dir, { hosts: ['sim-pool'] });
    }
    const tls = (cert: DevCertificate | undefined) => (pki && cert ? ['--tls-ca', pki.caPath, '--tls-cert', cert.certPath, '--tls-key', cert.keyPath] : ['--insecure']);
    const profile = opts.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProfileDir}`] : [];
    const control = spawnManaged({
      name: `${opts.name}-control`,
      command: TSX[0], args: [...TSX.slice(1), ...profile, 'control/main.ts', '--listen', listen,
        '--etcd', etcd.endpoint, '--nats', nats.url, '--id', `${opts.name}-control`, ...tls(pki?.control)],
      // Its "ready" line is at info; per-host events are at debug, so info stays short.
      env: { BPFLEET_LOG_LEVEL: 'info' },
      cwd: REPO,
    });
    cleanup.defer(() => control.stop(), 'stop control plane');
    await control.waitForLine(/control plane ready/, 60_000);
    const admin = pki?.users.admin;
    const transport: TransportSecurity = pki && admin ? loadTransport({ tlsCa: pki.caPath, tlsCert: admin.certPath, tlsKey: admin.keyPath }, 'bench') : { mode: 'insecure' };
    const api = new Control(listen, transport, 120_000);
    cleanup.defer(() => api.close(), 'close API client');
    const kv = new Etcd3({ hosts: etcd.endpoint });
    cleanup.defer(() => kv.close(), 'close etcd client');
    return {
      etcd, nats, control, api, kv, credentials: channelCredentials(transport),
      async startPool(p) {
        const args = [...TSX.slice(1), 'bench/sim-pool/main.ts', '--hosts', String(p.hosts),
          '--etcd', etcd.endpoint, '--nats', nats.url, '--telemetry-interval', String(p.telemetryIntervalMs),
          '--pps', String(p.pps ?? 1000), ...tls(pki?.hosts.get('sim-pool'))];
        if (p.preinstall) args.push('--preinstall', p.preinstall);
        for (const [version, rate] of Object.entries(p.dropRates ?? {})) args.push('--drop-rate', `${version}=${rate}`);
        const pool = spawnManaged({ name: `${opts.name}-sim-pool`, command: TSX[0], args, cwd: REPO });
        cleanup.defer(() => pool.stop(), 'stop sim host pool');
        const ready = await pool.waitForLine(/sim host pool ready: \d+ hosts at (\S+)/, 300_000);
        return { process: pool, address: ready[1]! };
      },
      stop: () => cleanup.runAll(),
    };
  } catch (err) {
    await cleanup.runAll();
    throw err;
  }
}

/** Pushes a synthetic module version (a BPF ELF header; the sim needs no more) through the API. */
export async function pushSimModule(api: Control, name: string, version: string): Promise<string> {
  const a = simArtifact({ name, version });
  const req = PushModuleRequest.fromPartial({ manifest: a.manifest, object: Buffer.from(a.object), digest: a.digest });
  const res = await api.call('pushModule', req);
  return res.module!.digest;
}

/** Waits until `count` hosts are registered and the controller's API lists them all. */
export async function waitForHosts(bench: Bench, count: number, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const registered = await bench.kv.getAll().prefix(keys.hostsPrefix).count();
    const observed = await bench.kv.getAll().prefix(keys.observedPrefix).count();
    if (registered >= count && observed >= count) return;
    if (Date.now() > deadline) throw new Error(`${registered}/${count} hosts registered, ${observed} reported, after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export interface RolloutTimeline {
  rollout: Rollout;
  /** ms since the create call started, per step index the record first showed. */
  stepAt: Record<number, number>;
  /** ms since the create call started, per phase the record first showed. */
  phaseAt: Record<string, number>;
  /** ms from the create call to the record's final phase. */
  totalMs: number;
  /** Wall clock (ms since the epoch) when the create call started. */
  startedAtEpochMs: number;
  /** Record writes seen. */
  recordWrites: number;
}

/**
 * Creates a rollout through the API and follows its record in etcd until a final phase:
 * etcd is where the controller commits, so the timeline is what a successor would see.
 */
export async function runRollout(bench: Bench, spec: RolloutSpec, timeoutMs: number): Promise<RolloutTimeline> {
  const stepAt: Record<number, number> = {};
  const phaseAt: Record<string, number> = {};
  let recordWrites = 0;
  const watcher = await bench.kv.watch().prefix(keys.rolloutsPrefix).create();
  try {
    let t0 = 0;
    let id = '';
    const done = new Promise<Rollout>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`rollout not final after ${timeoutMs} ms`)), timeoutMs);
      watcher.on('put', (kv) => {
        const r = Rollout.fromJSON(JSON.parse(kv.value.toString()));
        if (id && r.id !== id) return;
        const at = performance.now() - t0;
        recordWrites++;
        const s = r.status!;
        stepAt[s.step] ??= at;
        phaseAt[RolloutPhase[s.phase]] ??= at;
        if (isFinal(r)) {
          clearTimeout(timer);
          resolve(r);
        }
      });
    });
    t0 = performance.now();
    const startedAtEpochMs = Date.now();
    const created = await bench.api.call('createRollout', { spec });
    id = created.id;
    const final = await done;
    return { rollout: final, stepAt, phaseAt, totalMs: phaseAt[RolloutPhase[final.status!.phase]]!, startedAtEpochMs, recordWrites };
  } finally {
    await watcher.cancel();
  }
}

/** User + system CPU seconds a process has used so far (Linux /proc). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of stat, in clock ticks (USER_HZ, 100 on Linux).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** CPU seconds of a process and its descendants that are still running (tsx starts node as a child). */
export function treeCpuSeconds(pid: number): number {
  let total = 0;
  const visit = (p: number): void => {
    try {
      total += cpuSeconds(p);
      const children = readFileSync(join('/proc', String(p), 'task', String(p), 'children'), 'utf8').trim();
      for (const c of children ? children.split(' ') : []) visit(Number(c));
    } catch {
      // Exited meanwhile.
    }
  };
  visit(pid);
  return total;
}

const ETCD_COUNTERS = {
  txns: /^etcd_mvcc_txn_total (\S+)$/m,
  puts: /^etcd_mvcc_put_total (\S+)$/m,
  ranges: /^etcd_mvcc_range_total (\S+)$/m,
  receivedBytes: /^etcd_network_client_grpc_received_bytes_total (\S+)$/m,
  sentBytes: /^etcd_network_client_grpc_sent_bytes_total (\S+)$/m,
  walBytes: /^etcd_disk_wal_write_bytes_total (\S+)$/m,
  walFsyncs: /^etcd_disk_wal_fsync_duration_seconds_count (\S+)$/m,
  walFsyncSeconds: /^etcd_disk_wal_fsync_duration_seconds_sum (\S+)$/m,
  backendCommits: /^etcd_disk_backend_commit_duration_seconds_count (\S+)$/m,
};

export type EtcdCounters = Record<keyof typeof ETCD_COUNTERS, number>;

/** etcd's own counters (its /metrics): how many txns, puts and bytes a run cost. */
export async function etcdCounters(etcd: EtcdServer): Promise<EtcdCounters> {
  const text = await (await fetch(`${etcd.endpoint}/metrics`)).text();
  return Object.fromEntries(Object.entries(ETCD_COUNTERS).map(([k, re]) => [k, Number(re.exec(text)?.[1] ?? NaN)])) as EtcdCounters;
}

export function counterDelta(before: EtcdCounters, after: EtcdCounters): EtcdCounters {
  return Object.fromEntries(Object.keys(before).map((k) => {
    const key = k as keyof EtcdCounters;
    return [k, Math.round((after[key] - before[key]) * 1000) / 1000];
  })) as EtcdCounters;
}
