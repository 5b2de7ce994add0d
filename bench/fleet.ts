/**
 * Fleet rollout: how long the control plane takes to move 1,000 and 10,000 hosts to a new
 * version in four waves (canary 1 host, 10%, 50%, 100%) with no bake, from the CreateRollout
 * call to the rollout's record in etcd saying SUCCEEDED.
 *
 * The hosts are the SIM HOST POOL (bench/sim-pool): simulated dataplanes, no kernel, but
 * the real agent code paths and the real protocol — registrations and observed state in
 * etcd, Apply over gRPC, intents converged from etcd, telemetry on NATS — against real etcd,
 * real nats-server and the real control plane process. Every host starts on 1.0.0 (as if
 * an earlier agent had attached it) and reports telemetry every TELEMETRY_MS.
 *
 * Writes bench/results/fleet.json. Run: npx tsx bench/fleet.ts
 * (BPFLEET_BENCH_FLEET_SIZES=1000,10000 picks the sizes; BPFLEET_BENCH_PROFILE=1 adds a CPU
 * profile of the control process during the rollout, which slows it down a little, and
 * writes bench/results/fleet-profile.json instead.)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keys } from '../common/keys.js';
import { toRolloutSpec } from '../control/rollout/spec.js';
import { scanPrefix } from '../common/etcd/batch.js';
import { codecs } from '../common/etcd/codec.js';
import { GetStateResponse } from '../proto/gen/bpfleet/v1/agent.js';
import { RolloutPhase } from '../proto/gen/bpfleet/v1/rollout.js';
import {
  counterDelta,
  etcdCounters,
  pushSimModule,
  runRollout,
  startBench,
  treeCpuSeconds,
  waitForHosts,
  type Bench,
} from './control/harness.js';
import { summariseProfile } from './control/profile.js';
import { machine, writeResult } from './dataplane/report.js';

const SIZES = (process.env.BPFLEET_BENCH_FLEET_SIZES ?? '1000,10000').split(',').map(Number);
const PROFILE = process.env.BPFLEET_BENCH_PROFILE === '1';
const TELEMETRY_MS = 5000;
const MODULE = 'fleet-probe';

const spec = toRolloutSpec({
  module: MODULE,
  version: '2.0.0',
  attachment: 'xdp:eth0',
  steps: [{ canary: 1 }, { percent: 10 }, { percent: 50 }, { percent: 100 }],
  maxUnavailable: '100%',
});

/** Hosts whose agent reported running `digest` on the attachment, read from etcd. */
async function hostsRunning(bench: Bench, digest: string): Promise<number> {
  const { kvs } = await scanPrefix(bench.kv, keys.observedPrefix);
  return kvs.filter((kv) => GetStateResponse.fromJSON(JSON.parse(kv.value.toString()))
    .attachments.some((a) => a.attachment === spec.attachment && a.module?.digest === digest)).length;
}

/**
 * What the rollout's status weighs in etcd now (a record plus a key per host) against the
 * one value the whole status used to be rewritten as after every batch.
 */
async function statusSizes(bench: Bench, id: string) {
  const record = (await bench.kv.get(keys.rollout(id)).exec()).kvs[0]!.value.length;
  const { kvs } = await scanPrefix(bench.kv, keys.rolloutHostsOf(id));
  const whole = await bench.api.call('getRollout', { id });
  return {
    recordBytes: record,
    hostKeyBytes: Math.round(kvs.reduce((n, kv) => n + kv.value.length, 0) / kvs.length),
    wholeStatusBytes: codecs.rollout.encode(whole).length,
    etcdRequestLimitBytes: 1.5 * 1024 * 1024,
  };
}

async function run(hosts: number) {
  const profileDir = PROFILE ? mkdtempSync(join(tmpdir(), 'bpfleet-bench-profile-')) : undefined;
  try {
    const { window, ...result } = await measure(hosts, profileDir);
    // The control process writes its profile when it exits, which measure() waited for.
    return { ...result, ...(profileDir ? { controlProfileDuringRollout: summariseProfile(profileDir, window) } : {}) };
  } finally {
    if (profileDir) rmSync(profileDir, { recursive: true, force: true });
  }
}

async function measure(hosts: number, profileDir: string | undefined) {
  const bench = await startBench({ name: `fleet-${hosts}`, cpuProfileDir: profileDir });
  try {
    await pushSimModule(bench.api, MODULE, '1.0.0');
    const target = await pushSimModule(bench.api, MODULE, '2.0.0');
    const bootStart = performance.now();
    const { process: pool } = await bench.startPool({ hosts, telemetryIntervalMs: TELEMETRY_MS, preinstall: `${MODULE}@1.0.0` });
    await waitForHosts(bench, hosts);
    const bootSeconds = (performance.now() - bootStart) / 1000;
    const procs = { control: bench.control.pid, pool: pool.pid, etcd: bench.etcd.process!.pid, nats: bench.nats.process!.pid };
    const cpuBefore = Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, treeCpuSeconds(pid)]));
    const etcdBefore = await etcdCounters(bench.etcd);
    const fromUs = Number(process.hrtime.bigint() / 1000n);
    const timeline = await runRollout(bench, spec, 600_000);
    const window = { fromUs, toUs: Number(process.hrtime.bigint() / 1000n) };
    const etcdAfter = await etcdCounters(bench.etcd);
    const cpu = Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, Math.round((treeCpuSeconds(pid) - cpuBefore[k]!) * 100) / 100]));
    const phase = RolloutPhase[timeline.rollout.status!.phase];
    const onTarget = await hostsRunning(bench, target);
    if (phase !== 'ROLLOUT_PHASE_SUCCEEDED' || onTarget !== hosts) {
      throw new Error(`rollout of ${hosts} hosts ended ${phase} (${timeline.rollout.status!.message}) with ${onTarget} hosts on the new version`);
    }
    const sizes = await statusSizes(bench, timeline.rollout.id);
    const seconds = Math.round(timeline.totalMs) / 1000;
    const stepsAt = Object.values(timeline.stepAt).map((ms) => Math.round(ms) / 1000);
    process.stdout.write(`fleet ${hosts} hosts: ${seconds} s (steps at ${stepsAt.join(', ')} s); cpu ${JSON.stringify(cpu)}\n`);
    return {
      hosts,
      seconds,
      /** When the record first showed each step (index = step), seconds after CreateRollout. */
      stepStartedAtSeconds: stepsAt,
      recordWrites: timeline.recordWrites,
      /** CPU seconds each process used during the rollout (2 cores: at most 2 × seconds in all). */
      cpuSeconds: cpu,
      etcd: counterDelta(etcdBefore, etcdAfter),
      status: sizes,
      poolBootSeconds: Math.round(bootSeconds * 10) / 10,
      window,
    };
  } finally {
    await bench.stop();
  }
}

async function main(): Promise<void> {
  const runs = [];
  for (const hosts of SIZES) runs.push(await run(hosts));
  // A profiled run is slower: its numbers go to a file of their own.
  const path = writeResult(PROFILE ? 'fleet-profile' : 'fleet', {
    bench: 'fleet rollout: canary 1, 10%, 50%, 100%, no bake, maxUnavailable 100%; sim host pool (no kernel)',
    machine: machine(),
    telemetryIntervalMs: TELEMETRY_MS,
    runs,
  });
  process.stdout.write(`wrote ${path}\n`);
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(`fleet bench failed: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
