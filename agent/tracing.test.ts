/**
 * The agent's apply instrumentation, with the real Reconciler and a stand-in driver (what a
 * swap does in the kernel is the kernel driver's tests' business; here only what the spans
 * and metrics say about it). Spans are received over OTLP, metrics scraped over HTTP.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { ROOT_CONTEXT, trace } from '@opentelemetry/api';
import type { Attachment } from '../common/attachment.js';
import { digestOf } from '../common/digest.js';
import { BpfleetError, type ErrorReason } from '../common/errors.js';
import { startTelemetry, type Telemetry } from '../common/otel.js';
import { traceparentOf } from '../common/spans.js';
import { exportingTo, SPAN_KIND_CONSUMER, STATUS_CODE_ERROR, type OtlpReceiver, type ReceivedSpan } from '../e2e/support/otlp-receiver.js';
import { scrape } from '../e2e/support/prometheus.js';
import type { Intent } from '../proto/gen/bpfleet/v1/agent.js';
import { Module } from '../proto/gen/bpfleet/v1/module.js';
import type { DataplaneDriver, InstallResult, ModuleArtifact } from './dataplane/driver.js';
import { Reconciler, type ModuleSource } from './reconciler.js';
import { TracedDriver, tracedApply, tracedSink, tracedSource } from './tracing.js';

const OBJECT = new TextEncoder().encode('an object');
const DIGEST = digestOf(OBJECT);

/** Installs succeed (first attach, then swaps) unless told to refuse with a reason. */
class StandInDriver implements DataplaneDriver {
  readonly kind = 'sim' as const;
  refuse: ErrorReason | null = null;
  private running: string | null = null;
  capabilities() { return ['xdp']; }
  async observe() { return []; }
  async check() { return []; }
  async install(attachment: Attachment, artifact: ModuleArtifact): Promise<InstallResult> {
    if (this.refuse) throw new BpfleetError('FAILED_PRECONDITION', this.refuse, 'refused');
    const changed = this.running !== artifact.digest;
    this.running = artifact.digest;
    return {
      running: { attachment: `${attachment.hook}:${attachment.iface}`, digest: artifact.digest, name: 'm', version: '1.0.0', progId: 7, linkId: 3, progTag: 't' },
      changed,
      timing: { loadMs: 12, swapMs: 0.5 },
    };
  }
  async verify() { return { loadMs: 1 }; }
  async stats() { return null; }
  async remove() {}
  async close() {}
}

const source: ModuleSource = {
  module: async (name, version) => Module.fromPartial({ digest: DIGEST, manifest: { name, version, programs: [{ name: 'p', hook: 'xdp' as never }] } }),
  object: async () => OBJECT,
};

function intent(over: Partial<Intent> = {}): Intent {
  return {
    host: 'h1', attachment: 'xdp:eth0', module: { name: 'm', version: '1.0.0', digest: DIGEST },
    expectedDigest: '', rolloutId: 'r-1', generation: 1, leaderEpoch: 1, ...over,
  };
}

async function setUp(t: TestContext): Promise<{ receiver: OtlpReceiver; telemetry: Telemetry; driver: StandInDriver; traced: TracedDriver; reconciler: Reconciler }> {
  const receiver = await exportingTo(t);
  const telemetry = await startTelemetry({ serviceName: 'bpfleet-agent', serviceInstanceId: 'h1', metricsPort: 0 });
  t.after(() => telemetry.shutdown());
  const driver = new StandInDriver();
  const traced = new TracedDriver(driver);
  const reconciler = new Reconciler('h1', traced, tracedSource(source), tracedSink({ report: async () => undefined }));
  return { receiver, telemetry, driver, traced, reconciler };
}

const named = (spans: readonly ReceivedSpan[], name: string) => {
  const s = spans.find((x) => x.name === name);
  assert.ok(s, `no ${name} span among ${spans.map((x) => x.name)}`);
  return s;
};

test('an apply the etcd watch saw first is traced under the controller span that wrote the intent', async (t) => {
  const { receiver, telemetry, traced, reconciler } = await setUp(t);
  // What the controller stores in the intent: its apply span's traceparent.
  const controller = telemetry.tracer.startSpan('rollout.apply');
  const traceparent = traceparentOf(trace.setSpan(ROOT_CONTEXT, controller));
  controller.end();
  const result = await tracedApply('watch', 'h1', intent({ traceparent }), () => reconciler.apply(intent({ traceparent })));
  assert.equal(result.changed, true);
  const context = traced.telemetryContext(['xdp:eth0']);
  await telemetry.shutdown();

  const spans = receiver.spans;
  const converge = named(spans, 'intent.converge');
  assert.equal(converge.kind, SPAN_KIND_CONSUMER);
  assert.equal(converge.traceId, controller.spanContext().traceId);
  assert.equal(converge.parentSpanId, controller.spanContext().spanId);
  assert.equal(converge.attributes['bpfleet.apply.trigger'], 'watch');
  assert.equal(converge.attributes['bpfleet.apply.result'], 'changed');
  assert.equal(converge.attributes['bpfleet.rollout.id'], 'r-1');
  for (const step of ['module.resolve', 'artifact.fetch', 'dataplane.install', 'state.report']) {
    assert.equal(named(spans, step).parentSpanId, converge.spanId, `${step} is part of the apply`);
  }
  const install = named(spans, 'dataplane.install');
  assert.deepEqual(
    [install.attributes['bpfleet.module'], install.attributes['bpfleet.module.digest'], install.attributes['bpfleet.link.id'], install.attributes['bpfleet.install.changed']],
    ['m@1.0.0', DIGEST, 3, true],
  );
  assert.equal(trace.getSpanContext(context)?.spanId, install.spanId, 'telemetry about the attachment carries the install that put it there');
  assert.equal(trace.getSpanContext(traced.telemetryContext(['tcx-ingress:eth0'])), undefined, 'nothing traced on another attachment');
});

test('a refused install counts as a swap failure by reason, and the apply as failed', async (t) => {
  const { receiver, telemetry, driver, reconciler } = await setUp(t);
  await tracedApply('watch', 'h1', intent(), () => reconciler.apply(intent()));
  driver.refuse = 'DRIFT';
  const next = intent({ module: { name: 'm', version: '1.0.0', digest: DIGEST }, generation: 2, expectedDigest: 'sha256:other' });
  await assert.rejects(tracedApply('watch', 'h1', next, () => reconciler.apply(next)), /refused/);
  const m = await scrape(telemetry.metricsUrl!);
  assert.equal(m.sum('bpfleet_agent_swap_failures_total', { error_type: 'DRIFT', bpfleet_hook: 'xdp' }), 1);
  assert.equal(m.sum('bpfleet_agent_apply_duration_count', { bpfleet_apply_result: 'failed', error_type: 'DRIFT' }), 1);
  assert.equal(m.sum('bpfleet_agent_apply_duration_count', { bpfleet_apply_result: 'changed', bpfleet_apply_trigger: 'watch' }), 1);
  assert.equal(m.sum('bpfleet_agent_swap_duration_count', { bpfleet_swap_kind: 'attach' }), 1);
  assert.equal(m.sum('bpfleet_agent_swap_duration_sum'), 0.0005);
  assert.equal(m.sum('bpfleet_agent_load_duration_sum'), 0.012);
  await telemetry.shutdown();
  const failed = receiver.spans.filter((s) => s.name === 'dataplane.install' && s.statusCode === STATUS_CODE_ERROR);
  assert.equal(failed.length, 1);
  assert.equal(failed[0]!.attributes['error.type'], 'DRIFT');
});

test('work outside any apply (adoption, a state report) starts no trace of its own', async (t) => {
  const { receiver, telemetry, reconciler } = await setUp(t);
  await reconciler.adopt([]);
  await tracedSink({ report: async () => undefined }).report({ host: 'h1', labels: {}, attachments: [] });
  await telemetry.shutdown();
  assert.deepEqual(receiver.spans.map((s) => s.name), []);
});
