/**
 * The metrics a rollout's analysis can judge: what each one means and how one report
 * interval of one attachment becomes a sample of it. The spec validator, the sampler and the
 * proto's Metric.name all defer to this list (the analysis metrics, not the control plane's
 * own Prometheus metrics in control/metrics.ts).
 */
import type { AttachmentTelemetry } from '../../proto/gen/bpfleet/v1/telemetry.js';

/**
 * One interval's value from the attachment's telemetry at its start (`a`) and end (`b`),
 * given the program runs in between and the interval's length in ms; null when the interval
 * carries no evidence (too little traffic, counter missing).
 */
export type MetricFn = (a: AttachmentTelemetry, b: AttachmentTelemetry, runs: number, dtMs: number) => number | null;

export interface MetricDefinition {
  /** The name as a spec writes it; `<name>` stands for the parameter of a parameterised metric. */
  readonly name: string;
  readonly description: string;
  /** The function computing `metric`, or null when this definition does not cover that name. */
  readonly resolve: (metric: string) => MetricFn | null;
}

// Intervals with fewer program runs than this say nothing about a rate: skip them.
const MIN_RUNS_PER_INTERVAL = 10;

function named(name: string, description: string, fn: MetricFn): MetricDefinition {
  return { name, description, resolve: (metric) => (metric === name ? fn : null) };
}

/** A family of metrics; `pattern` captures the parameter that `fnFor` builds the function from. */
function parameterised(name: string, pattern: RegExp, description: string, fnFor: (param: string) => MetricFn): MetricDefinition {
  return {
    name,
    description,
    resolve: (metric) => {
      const param = pattern.exec(metric)?.[1];
      return param === undefined ? null : fnFor(param);
    },
  };
}

/** Every analysis metric, in the order error messages and docs list them. */
export const METRICS: readonly MetricDefinition[] = [
  named('drop_rate', 'share of the packets the program ran on that did not get through (0..1)', (a, b, runs) => {
    if (runs < MIN_RUNS_PER_INTERVAL) return null;
    // A drop at an egress hook keeps the packet out of the interface's tx counter; one at
    // an ingress hook keeps it out of the IP stack (the interface's rx counter is no
    // witness: on veth it counts packets XDP dropped).
    const egress = b.attachment.startsWith('tcx-egress:');
    const delivered = egress ? b.ifaceTxPackets - a.ifaceTxPackets : b.stackRxPackets - a.stackRxPackets;
    return Math.min(1, Math.max(0, 1 - delivered / runs));
  }),
  named('run_time_ns_per_packet', 'mean time the kernel spent in the program per run, in ns',
    (a, b, runs) => (runs < MIN_RUNS_PER_INTERVAL ? null : (b.runTimeNs - a.runTimeNs) / runs)),
  parameterised('counter:<name>_rate', /^counter:([A-Za-z0-9_]+)_rate$/,
    'increase per second of the module counter <name> (one of its manifest\'s counters)',
    (counter) => (a, b, runs, dtMs) => {
      const va = a.counters[counter];
      const vb = b.counters[counter];
      // A quiet interval says nothing about a rate, not even that it is 0.
      if (va === undefined || vb === undefined || dtMs <= 0 || runs < MIN_RUNS_PER_INTERVAL) return null;
      return ((vb - va) * 1000) / dtMs;
    }),
];

function resolve(metric: string): MetricFn | null {
  for (const m of METRICS) {
    const fn = m.resolve(metric);
    if (fn) return fn;
  }
  return null;
}

/** True when `metric` names a registered metric (for a parameterised one, with a valid parameter). */
export function isMetric(metric: string): boolean {
  return resolve(metric) !== null;
}

/** What a spec's metric name must be, for the validator's error: "expected a, b or c". */
export const EXPECTED_METRIC = `expected ${METRICS.slice(0, -1).map((m) => m.name).join(', ')} or ${METRICS.at(-1)!.name}`;

// Resolved once per metric name, not once per sample: an analysis computes hundreds of
// thousands of samples. Only names of validated specs get here, so the map stays small.
const resolved = new Map<string, MetricFn | null>();

/** The function computing `metric`, or null for a name no metric covers. */
export function metricFn(metric: string): MetricFn | null {
  let fn = resolved.get(metric);
  if (fn === undefined) {
    fn = resolve(metric);
    resolved.set(metric, fn);
  }
  return fn;
}
