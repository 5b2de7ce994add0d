import { AnalysisMethod, Verdict, type AnalysisRun, type RolloutSpec } from '../../proto/gen/bpfleet/v1/rollout.js';
import type { TelemetryReport } from '../../proto/gen/bpfleet/v1/telemetry.js';
import { staleAfterMs } from '../rollout/spec.js';
import { combine, DEFAULT_METHOD, judgeMetric } from './judge.js';
import { forEachSample } from './samples.js';

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

/**
 * Canary cohort vs baseline cohort over the same window, every metric of the spec.
 * A host whose newest report is older than the spec's staleness limit contributes nothing:
 * what it said before it went quiet may no longer hold. A quiet canary host makes the
 * verdict inconclusive unless the others already show a failure, because the new version
 * can never pass on behalf of a host nobody hears from.
 */
export function analyze(input: AnalysisInput): AnalysisRun {
  const { spec, canary, baseline, from, to } = input;
  const analysis = spec.analysis!;
  const limit = staleAfterMs(analysis);
  const ages = new Map<string, number | null>();
  for (const h of [...canary.hosts, ...baseline.hosts]) {
    const newest = input.reportsOf(h).at(-1)?.timestampMs;
    if (newest === undefined || to - newest > limit) ages.set(h, newest === undefined ? null : to - newest);
  }
  const fresh = (hosts: string[]) => hosts.filter((h) => !ages.has(h));
  // Every metric from one walk over each host's window, into one array per metric and
  // cohort: the walk over tens of thousands of reports is what an analysis costs.
  const names = analysis.metrics.map((m) => m.name);
  const collect = (hosts: string[], keep: (digest: string) => boolean): number[][] => {
    const values = names.map((): number[] => []);
    for (const h of hosts) {
      forEachSample(input.reportsOf(h), spec.attachment, names, from, to, (m, _host, digest, _at, value) => {
        if (keep(digest)) values[m]!.push(value);
      });
    }
    return values;
  };
  const canaryValues = collect(fresh(canary.hosts), (d) => d === canary.digest);
  const baselineValues = collect(fresh(baseline.hosts), (d) => d !== canary.digest);
  const results = analysis.metrics.map((metric, m) => judgeMetric(metric, {
    canary: canaryValues[m]!,
    baseline: baselineValues[m]!,
    baselineExpected: baseline.hosts.length > 0,
  }, analysis.minSamples, analysis.method === AnalysisMethod.ANALYSIS_METHOD_UNSPECIFIED ? DEFAULT_METHOD : analysis.method));
  const run = combine(input.step, results, new Date(to).toISOString());
  if (ages.size === 0) return run;
  run.staleHosts = [...ages.keys()];
  const quiet = `no recent telemetry (limit ${fmtSeconds(limit)}) from ${[...ages].map(([h, age]) =>
    `${h} (${age === null ? 'never reported' : `last report ${fmtSeconds(age)} ago`})`).join(', ')}`;
  const quietCanary = canary.hosts.filter((h) => ages.has(h));
  if (quietCanary.length && run.verdict !== Verdict.VERDICT_FAIL) {
    run.verdict = Verdict.VERDICT_INCONCLUSIVE;
    run.summary = `${quiet}: left out, and a canary host must report before a verdict`;
  } else {
    run.summary = `${run.summary}; ${quiet}: left out`;
  }
  return run;
}

function fmtSeconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))}s`;
}
