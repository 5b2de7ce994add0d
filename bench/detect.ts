/**
 * Detection: a bad version reaches its canary, and the canary's telemetry must bring the
 * rollout to ROLLED_BACK fast and before any other host runs it. Measured from the moment
 * the canary host swapped to the bad version (its agent's apply record) to the rollout's
 * record saying ROLLED_BACK, in telemetry report intervals; and how many hosts ever ran
 * the bad version (their agents' apply history, over AgentService.GetApplyHistory).
 *
 * The fleet is the SIM HOST POOL (bench/sim-pool: no kernel): its sim programs of the bad
 * version drop DROP_RATE of the packets they see, which the hosts' telemetry shows as
 * stack-received packets falling behind program runs — the drop_rate metric. Real etcd,
 * nats-server and control plane process. One report interval has to pass after the swap
 * before the canary's first clean sample exists (the interval spanning the swap mixes two
 * programs and is dropped), so about 1 interval is the floor.
 *
 * Writes bench/results/detect.json. Run: npx tsx bench/detect.ts
 */
import { Metadata } from '@grpc/grpc-js';
import { toRolloutSpec } from '../control/rollout/spec.js';
import { AgentServiceClient, type GetApplyHistoryResponse } from '../proto/gen/bpfleet/v1/agent.js';
import { RolloutPhase } from '../proto/gen/bpfleet/v1/rollout.js';
import { mapLimit } from '../common/etcd/batch.js';
import { pushSimModule, runRollout, startBench, waitForHosts } from './control/harness.js';
import { machine, writeResult } from './dataplane/report.js';
import { HOST_METADATA } from './sim-pool/pool.js';

const HOSTS = Number(process.env.BPFLEET_BENCH_DETECT_HOSTS ?? 1000);
const RUNS = Number(process.env.BPFLEET_BENCH_DETECT_RUNS ?? 10);
const REPORT_MS = 1000;
const DROP_RATE = 0.2;
const MODULE = 'detect-probe';
const BAD = '2.0.0-bad';

const spec = toRolloutSpec({
  module: MODULE,
  version: BAD,
  attachment: 'xdp:eth0',
  steps: [{ canary: 1 }, { bake: '0s' }, { percent: 100 }],
  maxUnavailable: '100%',
  analysis: {
    // Judged often, so a verdict follows the canary's first clean sample closely.
    interval: '100ms',
    minSamples: 1,
    inconclusiveLimit: 200,
    staleAfter: '3s',
    metrics: [{ name: 'drop_rate', max: 0.05, maxIncrease: 0.02 }],
  },
  onFailure: 'rollback',
});

function history(client: AgentServiceClient, host: string): Promise<GetApplyHistoryResponse> {
  const md = new Metadata();
  md.set(HOST_METADATA, host);
  return new Promise((resolve, reject) => client.getApplyHistory({}, md, (err, res) => (err ? reject(err) : resolve(res))));
}

async function main(): Promise<void> {
  const bench = await startBench({ name: 'detect' });
  const runs = [];
  try {
    await pushSimModule(bench.api, MODULE, '1.0.0');
    const badDigest = await pushSimModule(bench.api, MODULE, BAD);
    const { address } = await bench.startPool({
      hosts: HOSTS, telemetryIntervalMs: REPORT_MS, preinstall: `${MODULE}@1.0.0`, dropRates: { [BAD]: DROP_RATE },
    });
    await waitForHosts(bench, HOSTS);
    // Every host needs reports before and after: let the baseline build up.
    await new Promise((r) => setTimeout(r, 3 * REPORT_MS));
    const agents = new AgentServiceClient(address, bench.credentials);
    try {
      for (let i = 0; i < RUNS; i++) {
        const timeline = await runRollout(bench, spec, 120_000);
        // The record carries host counts; the API joins in every host's progress.
        const r = await bench.api.call('getRollout', { id: timeline.rollout.id });
        const phase = RolloutPhase[r.status!.phase];
        const hosts = r.status!.hosts.map((h) => h.host);
        const histories = await mapLimit(hosts, 64, (h) => history(agents, h));
        const ran = histories.flatMap((res) => res.records
          .filter((rec) => rec.rolloutId === r.id && rec.digest === badDigest)
          .map((rec) => ({ host: res.host, at: Date.parse(rec.at) })));
        if (phase !== 'ROLLOUT_PHASE_ROLLED_BACK' || ran.length === 0) {
          throw new Error(`run ${i + 1}: rollout ended ${phase} (${r.status!.message}); ${ran.length} hosts ran ${BAD}`);
        }
        const swappedAt = Math.min(...ran.map((x) => x.at));
        const rolledBackAt = timeline.startedAtEpochMs + timeline.totalMs;
        const run = {
          seconds: Math.round(rolledBackAt - swappedAt) / 1000,
          reportIntervals: Math.round(((rolledBackAt - swappedAt) / REPORT_MS) * 100) / 100,
          hostsThatRanIt: new Set(ran.map((x) => x.host)).size,
          verdict: r.status!.message,
          analyses: r.status!.analyses.length,
        };
        process.stdout.write(`detect run ${i + 1}: ${JSON.stringify(run)}\n`);
        runs.push(run);
      }
    } finally {
      agents.close();
    }
  } finally {
    await bench.stop();
  }
  const intervals = runs.map((r) => r.reportIntervals);
  const path = writeResult('detect', {
    bench: `bad version (sim drop rate ${DROP_RATE}) on the canary of ${HOSTS} sim hosts: canary swap → ROLLED_BACK`,
    machine: machine(),
    hosts: HOSTS,
    reportIntervalMs: REPORT_MS,
    analysisIntervalMs: spec.analysis!.intervalMs,
    maxReportIntervals: Math.max(...intervals),
    meanReportIntervals: Math.round((intervals.reduce((a, b) => a + b, 0) / intervals.length) * 100) / 100,
    maxHostsThatRanIt: Math.max(...runs.map((r) => r.hostsThatRanIt)),
    runs,
  });
  process.stdout.write(`wrote ${path}\n`);
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(`detect bench failed: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
