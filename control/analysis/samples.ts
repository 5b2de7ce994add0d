import type { AttachmentTelemetry, TelemetryReport } from '../../proto/gen/bpfleet/v1/telemetry.js';

/** One value of one metric over one report interval of one host. */
export interface Sample {
  host: string;
  digest: string;
  /** End of the interval, ms since epoch. */
  at: number;
  value: number;
}

// Intervals with fewer program runs than this say nothing about a rate: skip them.
const MIN_RUNS_PER_INTERVAL = 10;

/**
 * Turns two consecutive reports of one attachment into a metric value, or null when the
 * interval carries no evidence (program changed in between, too little traffic, counter
 * missing). Counters are cumulative per program, so an interval spanning a swap is dropped.
 */
export function metricValue(metric: string, a: AttachmentTelemetry, b: AttachmentTelemetry, dtMs: number): number | null {
  if (a.progId !== b.progId || !b.module || a.module?.digest !== b.module.digest) return null;
  const runs = b.runCount - a.runCount;
  if (metric === 'drop_rate') {
    if (runs < MIN_RUNS_PER_INTERVAL) return null;
    // A drop at an egress hook keeps the packet out of the interface's tx counter; one at
    // an ingress hook keeps it out of the IP stack (the interface's rx counter is no
    // witness: on veth it counts packets XDP dropped).
    const egress = b.attachment.startsWith('tcx-egress:');
    const delivered = egress ? b.ifaceTxPackets - a.ifaceTxPackets : b.stackRxPackets - a.stackRxPackets;
    return Math.min(1, Math.max(0, 1 - delivered / runs));
  }
  if (metric === 'run_time_ns_per_packet') {
    if (runs < MIN_RUNS_PER_INTERVAL) return null;
    return (b.runTimeNs - a.runTimeNs) / runs;
  }
  const counter = /^counter:(.+)_rate$/.exec(metric)?.[1];
  if (counter !== undefined) {
    const va = a.counters[counter];
    const vb = b.counters[counter];
    if (va === undefined || vb === undefined || dtMs <= 0) return null;
    return ((vb - va) * 1000) / dtMs;
  }
  return null;
}

/** Samples of `metric` on `attachment` from a host's reports (oldest first) within [from, to]. */
export function samplesOf(reports: readonly TelemetryReport[], attachment: string, metric: string, from: number, to: number): Sample[] {
  const out: Sample[] = [];
  let prev: { at: number; t: AttachmentTelemetry } | null = null;
  for (const r of reports) {
    const t = r.attachments.find((x) => x.attachment === attachment);
    if (!t) {
      prev = null;
      continue;
    }
    if (prev && prev.at >= from && r.timestampMs <= to) {
      const value = metricValue(metric, prev.t, t, r.timestampMs - prev.at);
      if (value !== null) out.push({ host: r.host, digest: t.module?.digest ?? '', at: r.timestampMs, value });
    }
    prev = { at: r.timestampMs, t };
  }
  return out;
}
