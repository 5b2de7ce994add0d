/**
 * A simulated fleet with a ground truth, for measuring the canary analysis: hosts that differ
 * the way real ones do, producing the TelemetryReports the real analysis consumes. Every
 * number that shapes the fleet is in FleetModel, and the benchmark writes it next to its
 * results, so a reader can judge how realistic the fleet is.
 */
import type { ModuleRef } from '../../proto/gen/bpfleet/v1/module.js';
import type { AttachmentTelemetry, TelemetryReport } from '../../proto/gen/bpfleet/v1/telemetry.js';
import type { Random } from './random.js';

export interface FleetModel {
  hosts: number;
  reportMs: number;
  /** Packets per second a host's program runs on: log-normal across hosts (median, σ of log). */
  ppsMedian: number;
  ppsSigma: number;
  /** Per-host base drop rate (0..1), log-normal across hosts. */
  dropMedian: number;
  dropSigma: number;
  /** Per-host base run time per packet in ns, log-normal across hosts. */
  runTimeMedianNs: number;
  runTimeSigma: number;
  /** Interval-to-interval jitter of a host's drop rate and run time (σ of a log-normal factor). */
  dropJitter: number;
  runTimeJitter: number;
  /** Diurnal load: traffic is 1 ± this over the day; a trial starts at a random time of day. Drop rate scales with load, run time by a tenth of it. */
  diurnalAmplitude: number;
  /** Chance that one host's interval is a burst: drop rate + uniform(burstDrop), run time × burstRunTime. */
  burstChance: number;
  burstDrop: [number, number];
  burstRunTime: number;
  /** Share of hosts that are noisy: their jitter is this many times larger. */
  noisyShare: number;
  noisyFactor: number;
  /** Chance that a report is lost, and that a host goes silent for the rest of a trial at a random moment. */
  lostReportChance: number;
  silentHostChance: number;
}

export const FLEET: FleetModel = {
  hosts: 100,
  reportMs: 1000,
  ppsMedian: 5000,
  ppsSigma: 0.7,
  dropMedian: 0.005,
  dropSigma: 0.5,
  runTimeMedianNs: 150,
  runTimeSigma: 0.15,
  dropJitter: 0.3,
  runTimeJitter: 0.05,
  diurnalAmplitude: 0.4,
  burstChance: 0.01,
  burstDrop: [0.02, 0.1],
  burstRunTime: 1.5,
  noisyShare: 0.02,
  noisyFactor: 4,
  lostReportChance: 0.02,
  silentHostChance: 0.002,
};

/** What the new version does on the canaries, against the ground truth of the old one. */
export interface Effect {
  /** Added to the drop rate (0.01 = +1 percentage point). */
  dropAdd: number;
  /** Run time multiplied by this. */
  runTimeFactor: number;
  /** The run time's interval-to-interval jitter becomes this σ, its mean unchanged: a variance-only change. */
  runTimeJitter?: number;
}

export const NO_EFFECT: Effect = { dropAdd: 0, runTimeFactor: 1 };

export const ATTACHMENT = 'xdp:eth0';
export const OLD: ModuleRef = { name: 'sim-fw', version: '1.0.0', digest: `sha256:${'1'.repeat(64)}` };
export const NEW: ModuleRef = { name: 'sim-fw', version: '2.0.0', digest: `sha256:${'2'.repeat(64)}` };

export interface SimulatedFleet {
  hosts: string[];
  canaries: string[];
  baseline: string[];
  /** Each host's reports, oldest first, from before the step start to `until`. */
  reports: Map<string, TelemetryReport[]>;
  /** Step start (the canaries swapped just before it), ms. */
  start: number;
}

/**
 * One trial's fleet: `canaryCount` random hosts swap to NEW (running `effect`) just before
 * the step starts at `start`; every host reports every reportMs (each at its own phase) from
 * `before` intervals before the start (the history the paired method reads) until
 * `start + intervals · reportMs`.
 */
export function simulateFleet(model: FleetModel, rnd: Random, canaryCount: number, effect: Effect, intervals: number, before = 3): SimulatedFleet {
  const start = 1_000_000_000;
  const hosts = Array.from({ length: model.hosts }, (_, i) => `host-${String(i).padStart(4, '0')}`);
  const canaryIdx = new Set(rnd.pick(model.hosts, canaryCount));
  const load = 1 + model.diurnalAmplitude * Math.sin(2 * Math.PI * rnd.next());
  const swapAt = start - 100;
  const until = start + intervals * model.reportMs;
  const reports = new Map<string, TelemetryReport[]>();
  hosts.forEach((host, i) => {
    const canary = canaryIdx.has(i);
    const noisy = rnd.chance(model.noisyShare) ? model.noisyFactor : 1;
    const pps = rnd.logNormal(model.ppsMedian, model.ppsSigma) * load;
    const drop = Math.min(1, rnd.logNormal(model.dropMedian, model.dropSigma) * load);
    const runTime = rnd.logNormal(model.runTimeMedianNs, model.runTimeSigma) * (1 + (load - 1) / 10);
    const silentAt = rnd.chance(model.silentHostChance) ? rnd.uniform(start - 3 * model.reportMs, until) : Infinity;
    const list: TelemetryReport[] = [];
    let t = start - before * model.reportMs - rnd.uniform(0, model.reportMs);
    let runs = 0;
    let runTimeNs = 0;
    let delivered = 0;
    let progId = 10;
    let seq = 0;
    for (; t <= until && t < silentAt; t += model.reportMs) {
      const dt = model.reportMs;
      const swapped = canary && t > swapAt;
      if (swapped && progId === 10) {
        // A new program's counters start at 0: the interval spanning the swap carries no sample.
        progId = 11;
        runs = 0;
        runTimeNs = 0;
        delivered = 0;
      }
      const e = swapped ? effect : NO_EFFECT;
      const n = Math.max(0, Math.round(pps * (dt / 1000) + Math.sqrt(pps * (dt / 1000)) * rnd.normal()));
      const burst = rnd.chance(model.burstChance);
      let p = drop * Math.exp(model.dropJitter * noisy * rnd.normal()) + e.dropAdd;
      if (burst) p += rnd.uniform(model.burstDrop[0], model.burstDrop[1]);
      p = Math.min(1, Math.max(0, p));
      const drops = Math.min(n, Math.max(0, Math.round(n * p + Math.sqrt(n * p * (1 - p)) * rnd.normal())));
      const sigma = (e.runTimeJitter ?? model.runTimeJitter) * noisy;
      // Mean-preserving: a log-normal factor of median exp(−σ²/2) has mean 1, whatever σ.
      const rt = runTime * e.runTimeFactor * (burst ? model.burstRunTime : 1) * Math.exp(sigma * rnd.normal() - (sigma * sigma) / 2);
      runs += n;
      runTimeNs += Math.round(n * rt);
      delivered += n - drops;
      seq++;
      if (rnd.chance(model.lostReportChance)) continue;
      list.push(report(host, Math.round(t), seq, swapped ? NEW : OLD, progId, runs, runTimeNs, delivered));
    }
    reports.set(host, list);
  });
  return {
    hosts,
    canaries: hosts.filter((_, i) => canaryIdx.has(i)),
    baseline: hosts.filter((_, i) => !canaryIdx.has(i)),
    reports,
    start,
  };
}

function report(host: string, timestampMs: number, sequence: number, module: ModuleRef, progId: number, runCount: number, runTimeNs: number, delivered: number): TelemetryReport {
  const a: AttachmentTelemetry = {
    attachment: ATTACHMENT,
    module,
    progId,
    runCount,
    runTimeNs,
    // XDP on a veth: the interface's rx counter sees every packet, the stack only the delivered ones.
    ifaceRxPackets: runCount,
    ifaceTxPackets: 0,
    counters: {},
    stackRxPackets: delivered,
  };
  // One simulated clock: the receiver stamps each report at its send time, no skew.
  return { host, timestampMs, monotonicMs: timestampMs, receivedAtMs: timestampMs, sequence, attachments: [a] };
}
