import type { AttachmentTelemetry, TelemetryReport } from '../../proto/gen/bpfleet/v1/telemetry.js';
import { metricFn } from './metric-registry.js';

/** One value of one metric over one report interval of one host. */
export interface Sample {
  host: string;
  digest: string;
  /** End of the interval: when its closing report arrived, on the control plane's clock (ms since the epoch). */
  at: number;
  value: number;
}

/**
 * Turns two consecutive reports of one attachment into a metric value, or null when the
 * interval carries no evidence (program changed in between, too little traffic, counter
 * missing). Counters are cumulative per program, so an interval spanning a swap is dropped.
 */
export function metricValue(metric: string, a: AttachmentTelemetry, b: AttachmentTelemetry, dtMs: number): number | null {
  if (a.progId !== b.progId || !b.module || a.module?.digest !== b.module.digest) return null;
  return metricFn(metric)?.(a, b, b.runCount - a.runCount, dtMs) ?? null;
}

function attachmentOf(r: TelemetryReport, attachment: string): AttachmentTelemetry | undefined {
  for (const t of r.attachments) if (t.attachment === attachment) return t;
  return undefined;
}

/** Samples of `metric` on `attachment` from a host's reports (in arrival order) for intervals received in (from, to]. */
export function samplesOf(reports: readonly TelemetryReport[], attachment: string, metric: string, from: number, to: number): Sample[] {
  const out: Sample[] = [];
  forEachSample(reports, attachment, [metric], from, to, (_m, host, digest, at, value) => out.push({ host, digest, at, value }));
  return out;
}

/**
 * samplesOf for several metrics in one walk over the reports, without building the
 * samples: what an analysis over a whole cohort uses. `each` gets the metric's index.
 */
export function forEachSample(
  reports: readonly TelemetryReport[], attachment: string, metrics: readonly string[], from: number, to: number,
  each: (metric: number, host: string, digest: string, at: number, value: number) => void,
): void {
  const fns = metrics.map(metricFn);
  let prevReport: TelemetryReport | undefined;
  let prev: AttachmentTelemetry | undefined;
  for (const r of reports) {
    const t = attachmentOf(r, attachment);
    // An interval counts when its closing report arrived inside the window (the control
    // plane's clock, never the host's). It may start a little before: a canary's agent
    // reports right after its swap, before the controller hears the Apply answer and starts
    // the step, and that first interval of the new program is the earliest evidence there
    // is (an interval spanning a swap never counts: progId). Its length is the host's own
    // monotonic clock; two reports of one agent run in the order it sent them (a restart
    // resets the sequence, a straggler arrives after its successor: neither pairs).
    if (t && prev && prevReport && r.receivedAtMs > from && r.receivedAtMs <= to
      && r.sequence > prevReport.sequence && r.monotonicMs > prevReport.monotonicMs
      && prev.progId === t.progId && t.module && prev.module?.digest === t.module.digest) {
      const runs = t.runCount - prev.runCount;
      const dt = r.monotonicMs - prevReport.monotonicMs;
      for (let m = 0; m < fns.length; m++) {
        const value = fns[m]?.(prev, t, runs, dt) ?? null;
        // A value that is no number (NaN, ±Infinity from a counter gone wrong) is no evidence.
        if (value !== null && Number.isFinite(value)) each(m, r.host, t.module.digest, r.receivedAtMs, value);
      }
    }
    prev = t;
    prevReport = r;
  }
}
