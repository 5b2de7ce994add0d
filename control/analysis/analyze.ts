import { AnalysisMethod, Verdict, type Analysis, type AnalysisRun, type RolloutSpec } from '../../proto/gen/bpfleet/v1/rollout.js';
import type { TelemetryReport } from '../../proto/gen/bpfleet/v1/telemetry.js';
import { staleAfterMs } from '../rollout/spec.js';
import { combine, DEFAULT_METHOD, judgeMetric } from './judge.js';
import { hostChange, PRE_WINDOW_MS, type OwnSamples } from './paired.js';
import { forEachSample } from './samples.js';

/** A host clock this far from the control plane's is named in the verdict's summary. */
export const REPORTED_SKEW_MS = 2000;

export interface AnalysisInput {
  spec: RolloutSpec;
  step: number;
  /** Hosts on the new version, and the digest they must be running for a sample to count. */
  canary: { hosts: string[]; digest: string };
  /** Hosts still on their previous version. */
  baseline: { hosts: string[] };
  from: number;
  to: number;
  /** Each host's reports, oldest first, from readsFrom(spec.analysis, from) on at least. */
  reportsOf: (host: string) => readonly TelemetryReport[];
}

/** The method `analysis` uses: its own, or DEFAULT_METHOD when it names none. */
export function methodOf(analysis: Analysis): AnalysisMethod {
  return analysis.method === AnalysisMethod.ANALYSIS_METHOD_UNSPECIFIED ? DEFAULT_METHOD : analysis.method;
}

/**
 * The earliest report time, ms, an analysis of a step that began at `from` reads: `from`,
 * or PRE_WINDOW_MS earlier for the paired method, which compares each host with itself
 * before the step.
 */
export function readsFrom(analysis: Analysis, from: number): number {
  return methodOf(analysis) === AnalysisMethod.ANALYSIS_METHOD_PAIRED ? from - PRE_WINDOW_MS : from;
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
  const skewed: string[] = [];
  for (const h of [...canary.hosts, ...baseline.hosts]) {
    const newest = input.reportsOf(h).at(-1);
    const at = newest?.receivedAtMs;
    if (at === undefined || to - at > limit) ages.set(h, at === undefined ? null : to - at);
    // What the host's clock said when it sent its newest report, against ours when it
    // arrived (transit included): reported, never used to place a report.
    const skew = newest ? newest.timestampMs - newest.receivedAtMs : 0;
    if (Math.abs(skew) >= REPORTED_SKEW_MS) skewed.push(`${h} ${skew > 0 ? '+' : '−'}${fmtSeconds(Math.abs(skew))}`);
  }
  const fresh = (hosts: string[]) => hosts.filter((h) => !ages.has(h));
  // Every metric from one walk over each host's window, into one array per metric and
  // cohort: the walk over tens of thousands of reports is what an analysis costs.
  const names = analysis.metrics.map((m) => m.name);
  const method = methodOf(analysis);
  const paired = method === AnalysisMethod.ANALYSIS_METHOD_PAIRED;
  const oldVersion = (d: string) => d !== canary.digest;
  // Samples during the step, per metric; for the paired method also each host's change
  // since before the step (on the old version), per metric.
  const collect = (hosts: string[], keep: (digest: string) => boolean, withOwn: boolean) => {
    const values = names.map((): number[] => []);
    const changes = names.map((): number[] => []);
    const unpaired = names.map(() => 0);
    // Canary hosts' samples centred on their own median before the step (paired.ts).
    const own = withOwn && paired ? names.map((): OwnSamples => ({ before: [], during: [] })) : null;
    for (const h of hosts) {
      if (!paired) {
        forEachSample(input.reportsOf(h), spec.attachment, names, from, to, (m, _host, digest, _at, value) => {
          if (keep(digest)) values[m]!.push(value);
        });
        continue;
      }
      const before = names.map((): number[] => []);
      const during = names.map((): number[] => []);
      forEachSample(input.reportsOf(h), spec.attachment, names, from - PRE_WINDOW_MS, to, (m, _host, digest, at, value) => {
        if (at > from) {
          if (keep(digest)) during[m]!.push(value);
        } else if (oldVersion(digest)) {
          before[m]!.push(value);
        }
      });
      names.forEach((_, m) => {
        for (const v of during[m]!) values[m]!.push(v);
        const change = hostChange(before[m]!, during[m]!);
        if (change === null) {
          if (during[m]!.length) unpaired[m]!++;
          return;
        }
        changes[m]!.push(change.change);
        if (!own) return;
        for (const v of before[m]!) own[m]!.before.push(v - change.before);
        for (const v of during[m]!) own[m]!.during.push(v - change.before);
      });
    }
    return { values, changes, unpaired, own };
  };
  const canaryData = collect(fresh(canary.hosts), (d) => d === canary.digest, true);
  const baselineData = collect(fresh(baseline.hosts), oldVersion, false);
  const results = analysis.metrics.map((metric, m) => judgeMetric(metric, {
    canary: canaryData.values[m]!,
    baseline: baselineData.values[m]!,
    baselineExpected: baseline.hosts.length > 0,
    ...(canaryData.own ? { changes: { canary: canaryData.changes[m]!, baseline: baselineData.changes[m]!, own: canaryData.own[m]!, unpairedCanary: canaryData.unpaired[m]! } } : {}),
  }, analysis.minSamples, method));
  const run = combine(input.step, results, new Date(to).toISOString());
  if (skewed.length) {
    run.summary = `${run.summary}; clock skew (host − control plane) ${skewed.join(', ')}: windows use the control plane's receive time`;
  }
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
