/**
 * Telemetry ingest: how many agent reports per second the controller's analysis path keeps
 * up with on one core — decode the protobuf TelemetryReport as it arrives from NATS, add it
 * to the TelemetryStore, and run the canary analysis (every metric, canary cohort against
 * baseline cohort) over the step's window, the way the controller does.
 *
 * HOSTS hosts report every second of simulated time; the store first fills with
 * HISTORY_S seconds of history (untimed), then TIMED_S seconds are ingested with one analysis
 * per second of simulated time over a WINDOW_S window: analysis as often as reports arrive
 * is the worst case (specs judge every second or slower). The analysis reads each host's
 * reports either from the step's start on (how the controller does it now) or by scanning
 * everything the store keeps for the host (how it did first) — same data, same run.
 *
 * No network and no other process: this is the CPU cost of one report, in this process.
 * Writes bench/results/ingest.json. Run: node --expose-gc --import tsx bench/ingest.ts
 * (without --expose-gc the heap per report is only approximate).
 */
import { analyze, readsFrom } from '../control/analysis/analyze.js';
import { TelemetryStore } from '../control/analysis/telemetry-store.js';
import { toRolloutSpec } from '../control/rollout/spec.js';
import { TelemetryReport } from '../proto/gen/bpfleet/v1/telemetry.js';
import { Verdict } from '../proto/gen/bpfleet/v1/rollout.js';
import { machine, writeResult } from './dataplane/report.js';

const HOSTS = Number(process.env.BPFLEET_BENCH_INGEST_HOSTS ?? 1000);
const HISTORY_S = 300;
const TIMED_S = 60;
const WINDOW_S = 60;
const CANARY_SHARE = 0.1;
const PPS = 1000;

const OLD = 'sha256:' + '1'.repeat(64);
const NEW = 'sha256:' + '2'.repeat(64);
const spec = toRolloutSpec({
  module: 'ingest-probe', version: '2.0.0', attachment: 'xdp:eth0', steps: [{ canary: 1 }],
  analysis: {
    metrics: [
      { name: 'drop_rate', max: 0.05, maxIncrease: 0.02 },
      { name: 'run_time_ns_per_packet', maxIncrease: 50 },
      { name: 'counter:packets_rate', maxIncrease: 1000 },
    ],
  },
});

const hosts = Array.from({ length: HOSTS }, (_, i) => `h${i + 1}`);
const canary = hosts.slice(0, Math.ceil(HOSTS * CANARY_SHARE));
const baseline = hosts.slice(canary.length);
const isCanary = new Set(canary);

/** Host i's report at second t, encoded as an agent would publish it. */
function encoded(i: number, t: number): Uint8Array {
  const host = hosts[i]!;
  const runs = t * PPS + i;
  const canaryHost = isCanary.has(host);
  return TelemetryReport.encode({
    host, timestampMs: t * 1000, monotonicMs: t * 1000, receivedAtMs: 0, sequence: t,
    attachments: [{
      attachment: 'xdp:eth0',
      module: { name: 'ingest-probe', version: canaryHost ? '2.0.0' : '1.0.0', digest: canaryHost ? NEW : OLD },
      progId: 1_000_000 + i, runCount: runs, runTimeNs: runs * 100,
      ifaceRxPackets: runs, ifaceTxPackets: runs, stackRxPackets: runs - (t % 7),
      counters: { packets: runs, bytes: runs * 64 },
    }],
  }).finish();
}

interface PathResult {
  /** Heap per report kept, after the history filled the store. */
  heapBytesPerReport: number;
  seconds: number;
  reports: number;
  reportsPerSecond: number;
  analyses: number;
  msPerAnalysis: number;
}

function run(windowed: boolean): PathResult {
  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const store = new TelemetryStore();
  for (let t = 0; t < HISTORY_S; t++) for (let i = 0; i < HOSTS; i++) store.add(TelemetryReport.decode(encoded(i, t)));
  global.gc?.();
  const heapBytesPerReport = Math.round((process.memoryUsage().heapUsed - heapBefore) / (HISTORY_S * HOSTS));
  // Encoded beforehand: publishing is the agents' work, not the controller's.
  const wire = Array.from({ length: TIMED_S }, (_, k) => hosts.map((_, i) => encoded(i, HISTORY_S + k)));
  let analysisMs = 0;
  const t0 = performance.now();
  for (let k = 0; k < TIMED_S; k++) {
    for (const bytes of wire[k]!) store.add(TelemetryReport.decode(bytes));
    const to = (HISTORY_S + k) * 1000;
    const from = to - WINDOW_S * 1000;
    const a0 = performance.now();
    const verdict = analyze({
      spec, step: 0, canary: { hosts: canary, digest: NEW }, baseline: { hosts: baseline }, from, to,
      reportsOf: windowed ? store.reader(readsFrom(spec.analysis!, from)) : (h) => store.reports(h),
    }).verdict;
    analysisMs += performance.now() - a0;
    if (verdict === Verdict.VERDICT_UNSPECIFIED) throw new Error('analysis gave no verdict');
  }
  const seconds = (performance.now() - t0) / 1000;
  const reports = TIMED_S * HOSTS;
  return {
    heapBytesPerReport,
    seconds: Math.round(seconds * 1000) / 1000,
    reports,
    reportsPerSecond: Math.round(reports / seconds),
    analyses: TIMED_S,
    msPerAnalysis: Math.round((analysisMs / TIMED_S) * 10) / 10,
  };
}

/** Decode and add alone, no analysis: the floor of the per-report cost. */
function decodeAndAdd(): { reportsPerSecond: number; microsecondsPerReport: number } {
  const store = new TelemetryStore();
  const wire = Array.from({ length: TIMED_S }, (_, k) => hosts.map((_, i) => encoded(i, k)));
  const t0 = performance.now();
  for (const tick of wire) for (const bytes of tick) store.add(TelemetryReport.decode(bytes));
  const seconds = (performance.now() - t0) / 1000;
  const n = TIMED_S * HOSTS;
  return { reportsPerSecond: Math.round(n / seconds), microsecondsPerReport: Math.round((seconds / n) * 1e7) / 10 };
}

function main(): void {
  const floor = decodeAndAdd();
  process.stdout.write(`decode + add: ${JSON.stringify(floor)}\n`);
  const now = run(true);
  process.stdout.write(`decode + add + analysis (window read from the step start): ${JSON.stringify(now)}\n`);
  const naive = run(false);
  process.stdout.write(`decode + add + analysis (every kept report scanned): ${JSON.stringify(naive)}\n`);
  const path = writeResult('ingest', {
    bench: `telemetry ingest on one core: protobuf decode + TelemetryStore.add + one analysis (${spec.analysis!.metrics.length} metrics) per second of reports`,
    machine: machine(),
    hosts: HOSTS,
    canaryHosts: canary.length,
    historySeconds: HISTORY_S,
    windowSeconds: WINDOW_S,
    reportsPerSecond: now.reportsPerSecond,
    decodeAndAddOnly: floor,
    windowed: now,
    scanEverything: naive,
  });
  process.stdout.write(`wrote ${path}\n`);
}

main();
