/**
 * The rollout controller's spans. A rollout is one trace: the API stores the traceparent of
 * the request that created it on the Rollout, and every controller pass, on whichever
 * replica leads at the time, starts its span as a child of it:
 *
 *   bpfleet rollout create                      (CLI, root)
 *     bpfleet.v1.ControlService/CreateRollout    (client → server span; traceparent stored)
 *       rollout.reconcile                        one per controller pass; events = transitions
 *         rollout.analysis                       verdict; links to the installs behind the telemetry
 *         rollout.apply                          one per host and apply
 *           bpfleet.v1.AgentService/Apply        (client → server span in the agent)
 *
 * Telemetry reports carry, in their NATS headers, the context of the agent install that put
 * the measured program in place (agent/tracing.ts; analysis/ingest.ts keeps it per report);
 * the analysis span links to those, so a verdict leads to the exact installs, in this
 * rollout's trace or an earlier one's, whose programs produced the numbers it judged.
 */
import { SpanStatusCode, trace, type Link, type SpanContext } from '@opentelemetry/api';
import {
  ATTR_APPLY_PURPOSE,
  ATTR_ATTACHMENT,
  ATTR_COHORT,
  ATTR_DIGEST,
  ATTR_EXPECTED_DIGEST,
  ATTR_HOST,
  ATTR_METRIC,
  ATTR_MODULE,
  ATTR_PROG_ID,
  ATTR_ROLLOUT_ID,
  ATTR_ROLLOUT_PHASE,
  ATTR_ROLLOUT_STEP,
  ATTR_VERDICT,
} from '../common/otel-attributes.js';
import { contextOf, inSpan, traceparentOf } from '../common/spans.js';
import type { AnalysisRun, Rollout } from '../proto/gen/bpfleet/v1/rollout.js';
import type { TelemetryReport } from '../proto/gen/bpfleet/v1/telemetry.js';
import { recordMetricResults, recordStepEnds, recordVerdict } from './metrics.js';
import type { ApplyAction, ApplyOutcome } from './rollout/apply-results.js';
import { describe, type RolloutEvent } from './rollout/events.js';
import type { AnalysisRequest } from './rollout/steps.js';
import { phaseLabel, verdictName } from './rollout/vocabulary.js';

export function rolloutAttributes(rollout: Rollout) {
  const spec = rollout.spec;
  return {
    [ATTR_ROLLOUT_ID]: rollout.id,
    [ATTR_MODULE]: spec ? `${spec.module}@${spec.version}` : '',
    [ATTR_ATTACHMENT]: spec?.attachment ?? '',
  };
}

/**
 * The traceparent a new rollout stores: the span of the request creating it, which is also
 * tagged with the rollout, so that searching traces for the rollout id finds its root.
 */
export function creationTraceparent(rollout: Rollout): string | undefined {
  trace.getActiveSpan()?.setAttributes(rolloutAttributes(rollout));
  return traceparentOf();
}

/** One controller pass over `rollout`, as a child of the request that created it. */
export function inPassSpan<T>(rollout: Rollout, pass: () => Promise<T>): Promise<T> {
  return inSpan('rollout.reconcile', {
    attributes: {
      ...rolloutAttributes(rollout),
      [ATTR_ROLLOUT_PHASE]: phaseLabel(rollout.status?.phase),
      [ATTR_ROLLOUT_STEP]: (rollout.status?.step ?? 0) + 1,
    },
  }, pass, contextOf(rollout.traceparent));
}

/** Transitions a pass persisted: events on its span, step durations in the metrics. */
export function recordTransitions(rollout: Rollout, events: readonly RolloutEvent[]): void {
  const span = trace.getActiveSpan();
  const attributes = { [ATTR_ROLLOUT_PHASE]: phaseLabel(rollout.status?.phase), [ATTR_ROLLOUT_STEP]: (rollout.status?.step ?? 0) + 1 };
  span?.setAttributes(attributes);
  if (span) for (const event of events) span.addEvent('rollout.transition', { ...attributes, 'bpfleet.event': describe(event) });
  recordStepEnds(events);
}

/** One apply the controller sends to a host, with what came of it. */
export function inApplySpan(rollout: Rollout, action: ApplyAction, apply: () => Promise<ApplyOutcome>): Promise<ApplyOutcome> {
  return inSpan('rollout.apply', {
    attributes: {
      ...rolloutAttributes(rollout),
      [ATTR_HOST]: action.host,
      [ATTR_APPLY_PURPOSE]: action.purpose,
      [ATTR_MODULE]: action.module ? `${action.module.name}@${action.module.version}` : '(none)',
      [ATTR_DIGEST]: action.module?.digest ?? '',
      [ATTR_EXPECTED_DIGEST]: action.expectedDigest,
    },
  }, async (span) => {
    const outcome = await apply();
    if (outcome.ok) {
      span.setAttribute(ATTR_PROG_ID, outcome.progId);
    } else {
      span.setAttribute('error.type', outcome.reason);
      span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.message });
    }
    return outcome;
  });
}

/** The context of the install behind a report, if known (TelemetryIngest.contextOf). */
export type ReportContext = (report: TelemetryReport) => SpanContext | undefined;

/**
 * Runs one canary analysis in a span that says what was compared and the verdict, linked to
 * the installs behind the telemetry of each cohort host in the window.
 */
export function tracedAnalysis(
  rollout: Rollout,
  req: Pick<AnalysisRequest, 'step' | 'canaryHosts' | 'baselineHosts' | 'from' | 'to'>,
  reportsOf: (host: string) => readonly TelemetryReport[],
  reportContext: ReportContext,
  analyze: () => AnalysisRun,
): AnalysisRun {
  const links = [
    ...telemetryLinks(req.canaryHosts, 'canary', reportsOf, reportContext, req.from, req.to),
    ...telemetryLinks(req.baselineHosts, 'baseline', reportsOf, reportContext, req.from, req.to),
  ];
  return inSpan('rollout.analysis', {
    attributes: {
      ...rolloutAttributes(rollout),
      [ATTR_ROLLOUT_STEP]: req.step + 1,
      'bpfleet.analysis.canary_hosts': req.canaryHosts,
      'bpfleet.analysis.baseline_hosts': req.baselineHosts,
      'bpfleet.analysis.window_ms': req.to - req.from,
    },
    links,
  }, (span) => {
    const run = analyze();
    span.setAttributes({ [ATTR_VERDICT]: verdictName(run.verdict), 'bpfleet.analysis.summary': run.summary });
    for (const m of run.metrics) {
      span.addEvent('analysis.metric', {
        [ATTR_METRIC]: m.metric, [ATTR_VERDICT]: verdictName(m.verdict),
        'bpfleet.analysis.canary': m.canary, 'bpfleet.analysis.baseline': m.baseline,
        'bpfleet.analysis.canary_samples': m.canarySamples, 'bpfleet.analysis.baseline_samples': m.baselineSamples,
        'bpfleet.analysis.reason': m.reason,
      });
    }
    recordVerdict(run.verdict);
    recordMetricResults(run.metrics);
    return run;
  });
}

function telemetryLinks(
  hosts: readonly string[], cohort: string, reportsOf: (host: string) => readonly TelemetryReport[], reportContext: ReportContext, from: number, to: number,
): Link[] {
  const links: Link[] = [];
  for (const host of hosts) {
    const bySpan = new Map<string, { context: SpanContext; reports: TelemetryReport[] }>();
    for (const report of reportsOf(host)) {
      if (report.receivedAtMs < from || report.receivedAtMs > to) continue;
      const sc = reportContext(report);
      if (!sc) continue;
      const key = `${sc.traceId}/${sc.spanId}`;
      const entry = bySpan.get(key) ?? { context: sc, reports: [] };
      entry.reports.push(report);
      bySpan.set(key, entry);
    }
    for (const { context, reports } of bySpan.values()) {
      links.push({
        context,
        attributes: {
          [ATTR_HOST]: host, [ATTR_COHORT]: cohort, 'bpfleet.telemetry.reports': reports.length,
          'bpfleet.telemetry.first_sequence': reports[0]!.sequence, 'bpfleet.telemetry.last_sequence': reports.at(-1)!.sequence,
        },
      });
    }
  }
  return links;
}
