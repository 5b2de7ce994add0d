/**
 * What mTLS costs, side by side with --insecure in one run:
 *
 * 1. Apply latency: two agents in this process on the sim dataplane (so the kernel's
 *    verifier does not drown the transport's cost), one serving mTLS and one insecure, each
 *    called by its own client (the control plane's certificate for the first), in
 *    alternating batches so drift on a shared machine hits both alike. The full Apply path:
 *    gRPC, access check, module record (etcd), object (cache), sim swap, state to etcd.
 * 2. A small fleet rollout: the control plane and the sim host pool as separate processes
 *    (bench/control/harness.ts), once with the fleet PKI and once --insecure; the same
 *    rollout (canary 1, 10 %, 50 %, 100 %) back and forth between two versions.
 *
 * THE SIM DATAPLANE: nothing here says anything about BPF. Writes bench/results/tls.json.
 * Run: npx tsx bench/tls.ts (BPFLEET_BENCH_TLS_APPLIES, _TLS_HOSTS, _TLS_ROLLOUTS override).
 */
import { Metadata } from '@grpc/grpc-js';
import { connect } from '@nats-io/transport-node';
import { Etcd3 } from 'etcd3';
import { startAgent, type RunningAgent } from '../agent/agent.js';
import { simArtifact } from '../agent/dataplane/sim/artifacts.js';
import { SimDriver } from '../agent/dataplane/sim/sim-driver.js';
import { ArtifactStore } from '../common/artifacts.js';
import { ModuleRegistry } from '../common/etcd/modules.js';
import { createLogger } from '../common/log.js';
import { channelCredentials, loadTransport, type TransportSecurity } from '../common/tls.js';
import { quietIpServerNameWarning } from '../common/ip-server-name-warning.js';
import { toRolloutSpec } from '../control/rollout/spec.js';
import { makeTempDir, removeTempDir } from '../dev/claims.js';
import { CleanupStack } from '../dev/cleanup.js';
import { startEtcd } from '../dev/etcd.js';
import { startNats } from '../dev/nats.js';
import { createFleetPki } from '../dev/pki.js';
import { AgentServiceClient, type ApplyResponse, type Intent } from '../proto/gen/bpfleet/v1/agent.js';
import { Module } from '../proto/gen/bpfleet/v1/module.js';
import { RolloutPhase } from '../proto/gen/bpfleet/v1/rollout.js';
import { pushSimModule, runRollout, startBench, waitForHosts } from './control/harness.js';
import { distribution, machine, writeResult, type Distribution } from './dataplane/report.js';

const APPLIES = Number(process.env.BPFLEET_BENCH_TLS_APPLIES ?? 400);
const HOSTS = Number(process.env.BPFLEET_BENCH_TLS_HOSTS ?? 100);
const ROLLOUTS = Number(process.env.BPFLEET_BENCH_TLS_ROLLOUTS ?? 4);
const BATCH = 20;
const WARMUP = 10;
const MODULE = 'tls-probe';
type Mode = 'mtls' | 'insecure';
const MODES: Mode[] = ['insecure', 'mtls'];

const ratio = (on: Distribution, off: Distribution) => Math.round((on.p50_ms / off.p50_ms) * 1000) / 1000;

async function applyLatency(): Promise<Record<Mode, Distribution> & { p50Ratio: number }> {
  const cleanup = new CleanupStack();
  try {
    const etcd = await startEtcd();
    cleanup.defer(() => etcd.stop(), 'stop etcd');
    const nats = await startNats();
    cleanup.defer(() => nats.stop(), 'stop nats');
    const kv = new Etcd3({ hosts: etcd.endpoint });
    cleanup.defer(() => kv.close(), 'close etcd client');
    const nc = await connect({ servers: nats.url });
    cleanup.defer(() => nc.close(), 'close nats');
    const store = await ArtifactStore.open(nc);
    const registry = new ModuleRegistry(kv);
    const versions = [simArtifact({ name: MODULE, version: '1.0.0' }), simArtifact({ name: MODULE, version: '2.0.0' })];
    for (const v of versions) {
      const stored = await store.put(v.object);
      await registry.create(Module.fromPartial({ manifest: v.manifest, digest: stored.digest, size: v.object.length, objectKey: stored.key, pushedAt: new Date().toISOString(), pushedBy: 'bench' }));
    }
    const pkiDir = makeTempDir('bench-tls-pki');
    cleanup.defer(() => removeTempDir(pkiDir), 'remove pki');
    const pki = await createFleetPki(pkiDir, { hosts: ['tls-on'] });
    const tls = (c: { certPath: string; keyPath: string }): TransportSecurity => loadTransport({ tlsCa: pki.caPath, tlsCert: c.certPath, tlsKey: c.keyPath }, 'bench');
    const log = createLogger('agent', { level: 'warn' });
    const agents = {} as Record<Mode, { agent: RunningAgent; client: AgentServiceClient; host: string; running: string; generation: number }>;
    for (const mode of MODES) {
      const host = mode === 'mtls' ? 'tls-on' : 'tls-off';
      const cacheDir = makeTempDir(`bench-${host}-cache`);
      cleanup.defer(() => removeTempDir(cacheDir), 'remove cache');
      const agent = await startAgent({
        host, listen: '127.0.0.1:0', etcdEndpoints: [etcd.endpoint], natsServers: [nats.url], labels: {}, cacheDir,
        telemetryIntervalMs: 60_000, leaseTtlSeconds: 10, driver: new SimDriver(), log,
        transport: mode === 'mtls' ? tls(pki.hosts.get('tls-on')!) : { mode: 'insecure' },
      });
      cleanup.defer(() => agent.stop(), `stop agent ${host}`);
      const client = new AgentServiceClient(agent.address, channelCredentials(mode === 'mtls' ? tls(pki.control) : { mode: 'insecure' }));
      cleanup.defer(() => client.close(), 'close client');
      agents[mode] = { agent, client, host, running: '', generation: 0 };
    }
    const samples: Record<Mode, number[]> = { mtls: [], insecure: [] };
    const once = async (mode: Mode): Promise<number> => {
      const a = agents[mode];
      const want = versions[a.generation % 2]!;
      a.generation++;
      const intent: Intent = {
        host: a.host, attachment: 'xdp:eth0', module: { name: MODULE, version: want.manifest.version, digest: want.digest },
        expectedDigest: a.running, rolloutId: 'bench-tls', generation: a.generation, leaderEpoch: 0,
      };
      const t = performance.now();
      const res = await new Promise<ApplyResponse>((resolve, reject) => a.client.apply({ intent }, new Metadata(), (err, r) => (err ? reject(err) : resolve(r))));
      const ms = performance.now() - t;
      if (!res.changed) throw new Error(`${mode} apply ${a.generation}: nothing changed`);
      a.running = want.digest;
      return ms;
    };
    for (const mode of MODES) for (let i = 0; i < WARMUP; i++) await once(mode);
    for (let done = 0; done < APPLIES; done += BATCH) {
      for (const mode of MODES) for (let i = 0; i < BATCH; i++) samples[mode].push(await once(mode));
    }
    const mtls = distribution(samples.mtls);
    const insecure = distribution(samples.insecure);
    return { mtls, insecure, p50Ratio: ratio(mtls, insecure) };
  } finally {
    await cleanup.runAll();
  }
}

async function fleetRollouts(mode: Mode): Promise<{ seconds: number[]; p50Seconds: number }> {
  const bench = await startBench({ name: `tls-${mode}`, insecure: mode === 'insecure' });
  try {
    await pushSimModule(bench.api, MODULE, '1.0.0');
    await pushSimModule(bench.api, MODULE, '2.0.0');
    await bench.startPool({ hosts: HOSTS, telemetryIntervalMs: 5000, preinstall: `${MODULE}@1.0.0` });
    await waitForHosts(bench, HOSTS);
    const seconds: number[] = [];
    for (let i = 0; i < ROLLOUTS; i++) {
      const spec = toRolloutSpec({
        module: MODULE, version: i % 2 === 0 ? '2.0.0' : '1.0.0', attachment: 'xdp:eth0',
        steps: [{ canary: 1 }, { percent: 10 }, { percent: 50 }, { percent: 100 }], maxUnavailable: '100%',
      });
      const timeline = await runRollout(bench, spec, 300_000);
      const phase = timeline.rollout.status!.phase;
      if (phase !== RolloutPhase.ROLLOUT_PHASE_SUCCEEDED) throw new Error(`${mode} rollout ${i}: ended ${RolloutPhase[phase]}: ${timeline.rollout.status!.message}`);
      seconds.push(Math.round(timeline.totalMs) / 1000);
    }
    const sorted = [...seconds].sort((a, b) => a - b);
    return { seconds, p50Seconds: sorted[Math.floor((sorted.length - 1) / 2)]! };
  } finally {
    await bench.stop();
  }
}

async function main(): Promise<void> {
  quietIpServerNameWarning();
  const started = new Date().toISOString();
  const apply = await applyLatency();
  process.stdout.write(`apply p50: mtls ${apply.mtls.p50_ms} ms, insecure ${apply.insecure.p50_ms} ms (ratio ${apply.p50Ratio})\n`);
  const fleet = {} as Record<Mode, { seconds: number[]; p50Seconds: number }>;
  for (const mode of MODES) {
    fleet[mode] = await fleetRollouts(mode);
    process.stdout.write(`fleet ${HOSTS} hosts ${mode}: ${fleet[mode].seconds.join(', ')} s\n`);
  }
  const path = writeResult('tls', {
    bench: 'mTLS vs --insecure: Apply latency (sim dataplane, in-process agents) and a small fleet rollout (control plane + sim host pool processes)',
    started,
    machine: machine(),
    goal: 'mTLS within 20 % of insecure at p50',
    apply: { applies: APPLIES, batch: BATCH, ...apply },
    fleet: {
      hosts: HOSTS, rollouts: ROLLOUTS, steps: 'canary 1, 10 %, 50 %, 100 %; no bake',
      ...fleet, p50Ratio: Math.round((fleet.mtls.p50Seconds / fleet.insecure.p50Seconds) * 1000) / 1000,
    },
  });
  process.stdout.write(`wrote ${path}\n`);
}

await main();
