/**
 * The control plane's Prometheus metrics (served by startTelemetry's endpoint; names, units
 * and attributes are listed in docs/OBSERVABILITY.md).
 *
 * Counters and histograms are recorded by the replica that did the work. The gauges that
 * describe the fleet (rollouts by phase, hosts by version) are read from etcd at scrape time
 * and reported by the leader only, so summing a metric over replicas never double counts.
 */
import type { Attributes, ObservableResult } from '@opentelemetry/api';
import {
  ATTR_ANALYSIS_TEST,
  ATTR_ATTACHMENT,
  ATTR_METRIC,
  ATTR_MODULE_NAME,
  ATTR_MODULE_VERSION,
  ATTR_REFUSAL_REASON,
  ATTR_ROLLOUT_PHASE,
  ATTR_STEP_KIND,
  ATTR_STEP_OUTCOME,
  ATTR_VERDICT,
} from '../common/otel-attributes.js';
import { BpfleetError } from '../common/errors.js';
import { instrumentsPerProvider } from '../common/meters.js';
import { RolloutPhase, type MetricResult, type Verdict } from '../proto/gen/bpfleet/v1/rollout.js';
import type { TelemetryReport } from '../proto/gen/bpfleet/v1/telemetry.js';
import type { HostDirectory } from '../common/etcd/hosts.js';
import { REGISTRATION_REFUSALS } from '../common/etcd/host-refusals.js';
import { endedStep, type RolloutEvent } from './rollout/events.js';
import { phaseLabel, verdictName } from './rollout/vocabulary.js';
import type { RolloutStore } from './store/rollouts.js';

export const controlMetrics = instrumentsPerProvider((meter) => ({
  stepDuration: meter.createHistogram('bpfleet.rollout.step.duration', {
    unit: 's',
    description: 'Time a rollout spent in a step, from its start to the transition that ended it',
  }),
  verdicts: meter.createCounter('bpfleet.analysis.verdicts', {
    unit: '{verdict}',
    description: 'Canary analyses run, by verdict',
  }),
  pValues: meter.createHistogram('bpfleet.analysis.p_value', {
    unit: '1',
    description: 'P-values of the tests behind metric verdicts (one-sided, canary higher), by metric and test',
    advice: { explicitBucketBoundaries: [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1] },
  }),
  effectRatios: meter.createHistogram('bpfleet.analysis.effect_ratio', {
    unit: '1',
    description: 'Estimated canary increase over the limit it was compared with (above 1: over the limit), by metric and test',
    advice: { explicitBucketBoundaries: [-1, 0, 0.25, 0.5, 0.75, 1, 1.5, 2, 5] },
  }),
  telemetryReports: meter.createCounter('bpfleet.telemetry.reports', {
    unit: '{report}',
    description: 'Telemetry reports received from agents over NATS (error.type set when one was dropped: undecodable, HOST_MISMATCH, FUTURE_TIMESTAMP)',
  }),
  telemetryLag: meter.createHistogram('bpfleet.telemetry.report.lag', {
    unit: 's',
    description: 'Time from an agent stamping a telemetry report to the control plane receiving it',
  }),
  rollouts: meter.createObservableGauge('bpfleet.rollout.count', {
    unit: '{rollout}',
    description: 'Rollouts in etcd by phase (reported by the leader)',
  }),
  moduleHosts: meter.createObservableGauge('bpfleet.module.host.count', {
    unit: '{host}',
    description: 'Registered hosts running each module version, by attachment (reported by the leader)',
  }),
  refusedRegistrations: meter.createObservableGauge('bpfleet.host.registrations.refused', {
    unit: '{registration}',
    description: 'Host registrations refused and never planned, by reason: NAME_MISMATCH, DUPLICATE_NAME (reported by the leader)',
  }),
  leader: meter.createObservableGauge('bpfleet.controller.leader', {
    unit: '1',
    description: '1 while this replica leads (runs the rollout controller), else 0',
  }),
}));

export function recordVerdict(verdict: Verdict): void {
  controlMetrics().verdicts.add(1, { [ATTR_VERDICT]: verdictName(verdict) });
}

/** Each metric result's p-value (when a test ran) and effect relative to its limit (when it had one). */
export function recordMetricResults(results: readonly MetricResult[]): void {
  for (const m of results) {
    const attrs = { [ATTR_METRIC]: m.metric, [ATTR_ANALYSIS_TEST]: m.test };
    if (m.alpha > 0) controlMetrics().pValues.record(m.pValue, attrs);
    if (m.limit > 0 && m.test !== 'samples' && Number.isFinite(m.effect)) controlMetrics().effectRatios.record(m.effect / m.limit, attrs);
  }
}

export function recordTelemetryReceived(report: TelemetryReport): void {
  controlMetrics().telemetryReports.add(1);
  // Clocks of different machines: a negative lag is skew, not a report from the future.
  controlMetrics().telemetryLag.record(Math.max(0, report.receivedAtMs - report.timestampMs) / 1000);
}

/** Counts a dropped report; error.type is the BpfleetError's reason (UNDECODABLE_REPORT, INVALID_REPORT), else the error's name. */
export function recordTelemetryDropped(err: unknown): void {
  controlMetrics().telemetryReports.add(1, { 'error.type': err instanceof BpfleetError ? err.reason : err instanceof Error ? err.name : 'unknown' });
}

/** A decoded report the ingest refused to store (a forged host or a timestamp from the future). */
export function recordTelemetryRefused(reason: 'HOST_MISMATCH' | 'FUTURE_TIMESTAMP'): void {
  controlMetrics().telemetryReports.add(1, { 'error.type': reason });
}

/**
 * Records the steps that `events` ended (events a pass persisted) in the step-duration
 * histogram, from each step's start to the transition that ended it.
 */
export function recordStepEnds(events: readonly RolloutEvent[]): void {
  for (const event of events) {
    const ended = endedStep(event);
    if (!ended || !Number.isFinite(ended.durationMs) || ended.durationMs < 0) continue;
    controlMetrics().stepDuration.record(ended.durationMs / 1000, { [ATTR_STEP_KIND]: ended.kind, [ATTR_STEP_OUTCOME]: ended.outcome });
  }
}

export interface FleetGaugeSources {
  rollouts: Pick<RolloutStore, 'list'>;
  hosts: Pick<HostDirectory, 'list' | 'refused'>;
  leading: () => boolean;
}

/** Registers the scrape-time gauges; the returned function unregisters them. */
export function observeFleet(sources: FleetGaugeSources): () => void {
  const m = controlMetrics();
  const rollouts = async (result: ObservableResult) => {
    if (!sources.leading()) return;
    const counts = new Map<string, number>();
    for (const phase of Object.values(RolloutPhase)) {
      if (phase !== RolloutPhase.ROLLOUT_PHASE_UNSPECIFIED && phase !== RolloutPhase.UNRECOGNIZED) counts.set(phaseLabel(phase), 0);
    }
    for (const r of await sources.rollouts.list({ hosts: false })) {
      const label = phaseLabel(r.status?.phase);
      counts.set(label, (counts.get(label) ?? 0) + 1);
    }
    for (const [phase, n] of counts) result.observe(n, { [ATTR_ROLLOUT_PHASE]: phase });
  };
  // The SDK keeps reporting the last value of an attribute set that is no longer observed
  // (cumulative temporality), so a version every host left would stay at its old count:
  // versions seen before and gone now are reported as 0 instead.
  const versionsSeen = new Map<string, Attributes>();
  const moduleHosts = async (result: ObservableResult) => {
    if (!sources.leading()) return;
    const counts = new Map<string, number>();
    for (const host of await sources.hosts.list()) {
      for (const a of host.attachments) {
        const key = `${a.attachment}\0${a.module}\0${a.version}`;
        if (!versionsSeen.has(key)) versionsSeen.set(key, { [ATTR_ATTACHMENT]: a.attachment, [ATTR_MODULE_NAME]: a.module, [ATTR_MODULE_VERSION]: a.version });
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
    }
    for (const [key, attributes] of versionsSeen) result.observe(counts.get(key) ?? 0, attributes);
  };
  // Every reason is reported, 0 included, so an alert can be written on the series.
  const refused = async (result: ObservableResult) => {
    if (!sources.leading()) return;
    const counts = new Map<string, number>(REGISTRATION_REFUSALS.map((r) => [r, 0]));
    for (const r of await sources.hosts.refused()) counts.set(r.reason, counts.get(r.reason)! + 1);
    for (const [reason, n] of counts) result.observe(n, { [ATTR_REFUSAL_REASON]: reason });
  };
  const leader = (result: ObservableResult) => result.observe(sources.leading() ? 1 : 0);
  m.rollouts.addCallback(rollouts);
  m.moduleHosts.addCallback(moduleHosts);
  m.refusedRegistrations.addCallback(refused);
  m.leader.addCallback(leader);
  return () => {
    m.rollouts.removeCallback(rollouts);
    m.moduleHosts.removeCallback(moduleHosts);
    m.refusedRegistrations.removeCallback(refused);
    m.leader.removeCallback(leader);
  };
}
