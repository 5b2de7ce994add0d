import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { headers } from '@nats-io/transport-node';
import { subjects } from '../common/keys.js';
import { createLogger } from '../common/log.js';
import { startTelemetry } from '../common/otel.js';
import { traceparentOf } from '../common/spans.js';
import { injectHeaders } from '../common/trace-nats.js';
import { exportingTo } from '../e2e/support/otlp-receiver.js';
import { MetricResult, Verdict, type AnalysisRun, type Rollout } from '../proto/gen/bpfleet/v1/rollout.js';
import { TelemetryReport } from '../proto/gen/bpfleet/v1/telemetry.js';
import { TelemetryIngest } from './analysis/ingest.js';
import { TelemetryStore } from './analysis/telemetry-store.js';
import { inPassSpan, tracedAnalysis } from './tracing.js';

const rollout = (traceparent?: string): Rollout => ({
  id: 'r1', createdAt: '', createdBy: '', undoOf: '', traceparent,
  spec: { module: 'm', version: '2.0.0', attachment: 'xdp:eth0', selector: {}, steps: [], maxUnavailable: '', analysis: undefined, onFailure: 0 as never },
  status: undefined,
});

test('a pass on another replica, knowing only the stored traceparent, joins the rollout\'s trace', async (t) => {
  const receiver = await exportingTo(t);
  // Replica 1 creates the rollout: all that survives it is the traceparent in etcd.
  const first = await startTelemetry({ serviceName: 'bpfleet-control', serviceInstanceId: 'replica-1', metricsPort: null });
  const create = first.tracer.startSpan('create');
  const stored = traceparentOf(trace.setSpan(ROOT_CONTEXT, create));
  create.end();
  await first.shutdown();
  assert.match(stored ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);

  const second = await startTelemetry({ serviceName: 'bpfleet-control', serviceInstanceId: 'replica-2', metricsPort: null });
  t.after(() => second.shutdown());
  // Whatever the timer that runs the pass happens to carry must not become its parent.
  await second.tracer.startActiveSpan('unrelated', async (unrelated) => {
    await inPassSpan(rollout(stored), async () => undefined);
    unrelated.end();
  });
  await inPassSpan(rollout(undefined), async () => undefined);
  await second.shutdown();

  const passes = receiver.spans.filter((s) => s.name === 'rollout.reconcile');
  assert.equal(passes.length, 2);
  const [joined, untraced] = passes;
  assert.equal(joined!.traceId, create.spanContext().traceId);
  assert.equal(joined!.parentSpanId, create.spanContext().spanId);
  assert.equal(joined!.resource['service.instance.id'], 'replica-2');
  assert.equal(joined!.attributes['bpfleet.rollout.id'], 'r1');
  assert.equal(untraced!.parentSpanId, '', 'a rollout created untraced gets passes that start their own trace');
});

test('an analysis links to the installs behind the reports in its window, per host and cohort', async (t) => {
  const receiver = await exportingTo(t);
  const telemetry = await startTelemetry({ serviceName: 'bpfleet-control', metricsPort: null });
  t.after(() => telemetry.shutdown());
  const canaryInstall = telemetry.tracer.startSpan('dataplane.install');
  const baselineInstall = telemetry.tracer.startSpan('dataplane.install');
  // Each report arrives when its host stamped it: the window is on the arrival clock.
  let arrival = 0;
  const ingest = new TelemetryIngest(new TelemetryStore(), createLogger('test', { level: 'silent' }), { now: () => arrival });
  const received = (host: string, sequence: number, timestampMs: number, install?: typeof canaryInstall): TelemetryReport => (arrival = timestampMs, ingest).receive({
    subject: subjects.telemetry(host),
    data: TelemetryReport.encode({ host, sequence, timestampMs, monotonicMs: timestampMs, receivedAtMs: 0, attachments: [] }).finish(),
    headers: install ? injectHeaders(headers(), trace.setSpan(ROOT_CONTEXT, install)) : undefined,
  })!;
  const reports = new Map<string, TelemetryReport[]>([
    ['h1', [received('h1', 1, 500, canaryInstall), received('h1', 2, 1500, canaryInstall), received('h1', 3, 2500, canaryInstall), received('h1', 4, 9000, canaryInstall)]],
    ['h2', [received('h2', 7, 1200, baselineInstall), received('h2', 8, 2200, baselineInstall)]],
    ['h3', [received('h3', 1, 1500)]],
  ]);
  canaryInstall.end();
  baselineInstall.end();
  const run: AnalysisRun = {
    step: 1, verdict: Verdict.VERDICT_FAIL, at: '', summary: 'drop_rate: canary 1.00 > max 0.05', staleHosts: [],
    metrics: [MetricResult.fromPartial({ metric: 'drop_rate', canary: 1, baseline: 0, verdict: Verdict.VERDICT_FAIL, reason: 'over max', canarySamples: 2, baselineSamples: 2 })],
  };
  const result = tracedAnalysis(rollout(), { step: 1, canaryHosts: ['h1'], baselineHosts: ['h2', 'h3'], from: 1000, to: 3000 },
    (h) => reports.get(h) ?? [], (r) => ingest.contextOf(r), () => run);
  assert.equal(result, run);
  await telemetry.shutdown();

  const analysis = receiver.spans.find((s) => s.name === 'rollout.analysis')!;
  assert.equal(analysis.attributes['bpfleet.verdict'], 'fail');
  assert.equal(analysis.attributes['bpfleet.rollout.step'], 2);
  assert.deepEqual(analysis.links.map((l) => ({ span: l.spanId, ...l.attributes })), [
    { span: canaryInstall.spanContext().spanId, 'bpfleet.host': 'h1', 'bpfleet.analysis.cohort': 'canary', 'bpfleet.telemetry.reports': 2, 'bpfleet.telemetry.first_sequence': 2, 'bpfleet.telemetry.last_sequence': 3 },
    { span: baselineInstall.spanContext().spanId, 'bpfleet.host': 'h2', 'bpfleet.analysis.cohort': 'baseline', 'bpfleet.telemetry.reports': 2, 'bpfleet.telemetry.first_sequence': 7, 'bpfleet.telemetry.last_sequence': 8 },
  ], 'reports outside the window, and reports without trace context, give no link');
  const metric = analysis.events.find((e) => e.name === 'analysis.metric')!;
  assert.deepEqual([metric.attributes['bpfleet.analysis.metric'], metric.attributes['bpfleet.verdict'], metric.attributes['bpfleet.analysis.canary']], ['drop_rate', 'fail', 1]);
});
