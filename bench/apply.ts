/**
 * Apply latency: how long a real agent takes to move an attachment from one module version
 * to the other, as the controller sees it. A gRPC client calls AgentService.Apply on an
 * agent (startAgent, in this process) backed by a real etcd and nats-server, driving the
 * kernel on eth0 of a namespace: module record from etcd, object from the artifact cache,
 * digest check, libbpf load (verifier), bpf_link_update, state reported to etcd, answer.
 * Alternates the firewall example's two versions APPLIES times on XDP, then on tcx ingress,
 * and splits each apply into the agent's own fetch / load / swap times and the rest (gRPC,
 * pins, the etcd report).
 *
 * The same applies run again with the agent's tracing recorded, then exported over OTLP
 * (bench/tracing-modes.ts), to show what observability costs on this path.
 *
 * Writes bench/results/apply.json. Run: npx tsx bench/apply.ts (root; BPFLEET_BENCH_APPLIES
 * overrides the count per hook).
 */
import { credentials } from '@grpc/grpc-js';
import { Etcd3 } from 'etcd3';
import { connect } from '@nats-io/transport-node';
import { startAgent } from '../agent/agent.js';
import type { ModuleArtifact } from '../agent/dataplane/driver.js';
import { ArtifactStore } from '../common/artifacts.js';
import type { HookName } from '../common/attachment.js';
import { createLogger } from '../common/log.js';
import { ModuleRegistry } from '../common/etcd/modules.js';
import { makeTempDir, removeTempDir } from '../dev/claims.js';
import { CleanupStack } from '../dev/cleanup.js';
import { startEtcd } from '../dev/etcd.js';
import { startNats } from '../dev/nats.js';
import { missingPrereqs } from '../dev/prereqs.js';
import { buildModules, createSandbox } from '../e2e/support/kernel-sandbox.js';
import { AgentServiceClient, type ApplyRequest, type ApplyResponse } from '../proto/gen/bpfleet/v1/agent.js';
import { Module } from '../proto/gen/bpfleet/v1/module.js';
import { firewallModule } from './dataplane/firewall.js';
import { startTracingMode, TRACING_MODES, type TracingMode } from './tracing-modes.js';
import { distribution, machine, writeResult, type Distribution } from './dataplane/report.js';

const APPLIES = Number(process.env.BPFLEET_BENCH_APPLIES ?? 200);
// Not measured: the first attach, and the first fetch of each version from NATS.
const WARMUP = 4;
const HOST = 'bench-apply';
const HOOKS: Array<{ key: 'xdp' | 'tcx'; hook: HookName }> = [{ key: 'xdp', hook: 'xdp' }, { key: 'tcx', hook: 'tcx-ingress' }];

interface HookResult extends Distribution {
  attachment: string;
  /** The agent's own split of each apply (ApplyResponse fetch_ms, load_ms, swap_ms). */
  fetch: Distribution;
  load: Distribution;
  swap: Distribution;
  /** Client-side total minus the three above: gRPC, pin bookkeeping, the etcd state report. */
  rest: Distribution;
}

/** Registers a module version the way PushModule does: object to the store, record to etcd. */
async function publish(registry: ModuleRegistry, store: ArtifactStore, module: ModuleArtifact): Promise<void> {
  const stored = await store.put(module.object);
  await registry.create(Module.fromPartial({
    manifest: module.manifest, digest: stored.digest, size: module.object.length, objectKey: stored.key,
    pushedAt: new Date().toISOString(), pushedBy: 'bench',
  }));
}

function apply(client: AgentServiceClient, request: ApplyRequest): Promise<ApplyResponse> {
  return new Promise((resolve, reject) => client.apply(request, (err, res) => (err ? reject(err) : resolve(res))));
}

// What each attachment runs between rounds: a round starts from where the last one ended.
const runningOn = new Map<string, string>();

/** One round of applies; each round is a new leader epoch, so generations may start over. */
async function measureHook(client: AgentServiceClient, attachment: string, versions: [ModuleArtifact, ModuleArtifact], round: number): Promise<Omit<HookResult, 'attachment'>> {
  const total: number[] = [];
  const parts = { fetch: [] as number[], load: [] as number[], swap: [] as number[], rest: [] as number[] };
  let running = runningOn.get(attachment) ?? '';
  for (let i = 0; i < WARMUP + APPLIES; i++) {
    const want = versions[i % 2]!;
    const { name, version } = want.manifest;
    const t = performance.now();
    const res = await apply(client, {
      intent: {
        host: HOST, attachment, module: { name, version, digest: want.digest }, expectedDigest: running,
        rolloutId: 'bench-apply', generation: i + 1, leaderEpoch: round + 1,
      },
    });
    const ms = performance.now() - t;
    if (!res.changed || res.state?.module?.digest !== want.digest) {
      throw new Error(`apply ${i} of ${name}@${version} on ${attachment}: answered changed=${res.changed}, running ${res.state?.module?.digest}`);
    }
    running = want.digest;
    runningOn.set(attachment, running);
    if (i < WARMUP) continue;
    total.push(ms);
    parts.fetch.push(res.fetchMs);
    parts.load.push(res.loadMs);
    parts.swap.push(res.swapMs);
    parts.rest.push(ms - res.fetchMs - res.loadMs - res.swapMs);
  }
  return {
    ...distribution(total),
    fetch: distribution(parts.fetch),
    load: distribution(parts.load),
    swap: distribution(parts.swap),
    rest: distribution(parts.rest),
  };
}

async function main(): Promise<void> {
  if (!(Number.isInteger(APPLIES) && APPLIES >= 1)) throw new Error(`BPFLEET_BENCH_APPLIES=${APPLIES}: a positive integer`);
  const missing = await missingPrereqs(['root', 'bpf', 'bpffs', 'netns', 'etcd', 'nats', 'clang']);
  if (missing.length) throw new Error(`apply bench cannot run:\n${missing.join('\n')}`);
  buildModules();
  const started = new Date().toISOString();
  const machineInfo = machine();
  const versions: [ModuleArtifact, ModuleArtifact] = [firewallModule('v1'), firewallModule('v2')];

  const cleanup = new CleanupStack();
  try {
    const etcd = await startEtcd();
    cleanup.defer(() => etcd.stop(), 'stop etcd');
    const nats = await startNats();
    cleanup.defer(() => nats.stop(), 'stop nats');

    const etcdClient = new Etcd3({ hosts: etcd.endpoint });
    cleanup.defer(() => etcdClient.close(), 'close etcd client');
    const nc = await connect({ servers: nats.url });
    cleanup.defer(() => nc.close(), 'close nats connection');
    const store = await ArtifactStore.open(nc);
    const registry = new ModuleRegistry(etcdClient);
    for (const v of versions) await publish(registry, store, v);

    const sandbox = await createSandbox();
    cleanup.defer(() => sandbox.destroy(), 'destroy sandbox');
    const cacheDir = makeTempDir('bench-cache');
    cleanup.defer(() => removeTempDir(cacheDir), 'remove artifact cache');
    const agent = await startAgent({
      host: HOST, listen: '127.0.0.1:0', etcdEndpoints: [etcd.endpoint], natsServers: [nats.url], labels: {},
      cacheDir, telemetryIntervalMs: 1000, leaseTtlSeconds: 10, driver: sandbox.driver(),
      log: createLogger('agent', { level: 'warn' }),
      // TLS's cost is measured on its own by bench/tls.ts; this bench is the kernel path.
      transport: { mode: 'insecure' },
    });
    cleanup.defer(() => agent.stop(), 'stop agent');
    process.stderr.write(`apply bench: agent ${agent.address} on ${sandbox.host.netns}, ${APPLIES} applies per hook and tracing mode\n`);
    const byMode: Partial<Record<TracingMode, Partial<Record<'xdp' | 'tcx', HookResult>> & { spansExported: number }>> = {};
    for (const [round, mode] of TRACING_MODES.entries()) {
      const tracing = await startTracingMode(mode);
      const client = new AgentServiceClient(agent.address, credentials.createInsecure(), { interceptors: tracing.interceptors });
      const results: Partial<Record<'xdp' | 'tcx', HookResult>> = {};
      try {
        for (const { key, hook } of HOOKS) {
          const attachment = `${hook}:${sandbox.host.iface}`;
          const r = { attachment, ...(await measureHook(client, attachment, versions, round)) };
          results[key] = r;
          process.stderr.write(`tracing ${mode}: ${attachment}: p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms (load p50 ${r.load.p50_ms}, swap p50 ${r.swap.p50_ms}, fetch p50 ${r.fetch.p50_ms}, rest p50 ${r.rest.p50_ms})\n`);
        }
      } finally {
        client.close();
        byMode[mode] = { ...results, ...(await tracing.stop()) };
      }
    }
    const { spansExported: _none, ...results } = byMode.off!;

    const path = writeResult('apply', {
      bench: 'apply',
      started,
      machine: machineInfo,
      applies: APPLIES,
      modules: versions.map((v) => `${v.manifest.name}@${v.manifest.version}`),
      path: 'gRPC Apply → module record (etcd) → object (artifact cache) → digest check → load (verifier) → bpf_link_update → state to etcd → response',
      ...results,
      tracing: {
        note: 'the same applies with the agent\'s tracing recorded in-process (the daemons\' default), then also exported over OTLP/HTTP to a loopback receiver; top-level xdp/tcx ran with no OTel provider',
        recorded: byMode.recorded,
        exported: byMode.exported,
      },
    });
    process.stderr.write(`wrote ${path}\n`);
  } finally {
    await cleanup.runAll();
  }
}

await main();
