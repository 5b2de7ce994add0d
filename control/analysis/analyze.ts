import type { AnalysisRun, RolloutSpec } from '../../proto/gen/bpfleet/v1/rollout.js';
import type { TelemetryReport } from '../../proto/gen/bpfleet/v1/telemetry.js';
import { combine, judgeMetric } from './judge.js';
import { samplesOf } from './samples.js';

export interface AnalysisInput {
  spec: RolloutSpec;
  step: number;
  /** Hosts on the new version, and the digest they must be running for a sample to count. */
  canary: { hosts: string[]; digest: string };
  /** Hosts still on their previous version. */
  baseline: { hosts: string[] };
  from: number;
  to: number;
  reportsOf: (host: string) => readonly TelemetryReport[];
}

/** Canary cohort vs baseline cohort over the same window, every metric of the spec. */
export function analyze(input: AnalysisInput): AnalysisRun {
  const { spec, canary, baseline, from, to } = input;
  const analysis = spec.analysis!;
  const results = analysis.metrics.map((metric) => {
    const collect = (hosts: string[], keep: (digest: string) => boolean) =>
      hosts.flatMap((h) => samplesOf(input.reportsOf(h), spec.attachment, metric.name, from, to))
        .filter((s) => keep(s.digest))
        .map((s) => s.value);
    return judgeMetric(metric, {
      canary: collect(canary.hosts, (d) => d === canary.digest),
      baseline: collect(baseline.hosts, (d) => d !== canary.digest),
      baselineExpected: baseline.hosts.length > 0,
    }, analysis.minSamples);
  });
  return combine(input.step, results, new Date(to).toISOString());
}
