import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { headers } from '@nats-io/transport-node';
import { subjects } from '../../common/keys.js';
import { createLogger } from '../../common/log.js';
import { startTelemetry } from '../../common/otel.js';
import { injectHeaders } from '../../common/trace-nats.js';
import { scrape } from '../../e2e/support/prometheus.js';
import { TelemetryReport } from '../../proto/gen/bpfleet/v1/telemetry.js';
import { TelemetryIngest } from './ingest.js';
import { TelemetryStore } from './telemetry-store.js';

function setUp() {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger('test', { level: 'warn', destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
  const store = new TelemetryStore();
  return { store, lines, ingest: new TelemetryIngest(store, log) };
}

const message = (report: TelemetryReport, hdrs?: ReturnType<typeof headers>) => ({
  subject: subjects.telemetry(report.host), data: TelemetryReport.encode(report).finish(), headers: hdrs,
});

test('a report is decoded into the store, with the install context its headers carry', async (t) => {
  const telemetry = await startTelemetry({ serviceName: 'bpfleet-test', metricsPort: null });
  t.after(() => telemetry.shutdown());
  const install = telemetry.tracer.startSpan('dataplane.install');
  install.end();
  const { store, ingest } = setUp();
  const traced = ingest.receive(message({ host: 'h1', sequence: 1, timestampMs: 1000, monotonicMs: 0, receivedAtMs: 0, attachments: [] },
    injectHeaders(headers(), trace.setSpan(ROOT_CONTEXT, install))));
  const untraced = ingest.receive(message({ host: 'h1', sequence: 2, timestampMs: 2000, monotonicMs: 0, receivedAtMs: 0, attachments: [] }));
  assert.deepEqual(store.reports('h1'), [traced, untraced]);
  assert.equal(traced!.sequence, 1);
  assert.deepEqual([ingest.contextOf(traced!)?.traceId, ingest.contextOf(traced!)?.spanId], [install.spanContext().traceId, install.spanContext().spanId]);
  assert.equal(ingest.contextOf(untraced!), undefined, 'a report without trace headers links to nothing');
  assert.equal(ingest.contextOf({ host: 'h1', sequence: 1, timestampMs: 1000, monotonicMs: 0, receivedAtMs: 0, attachments: [] }), undefined, 'only reports it stored');
});

test('an undecodable message is counted by error type, logged with its subject and dropped', async (t) => {
  const telemetry = await startTelemetry({ serviceName: 'bpfleet-test', metricsPort: 0 });
  t.after(() => telemetry.shutdown());
  const { store, lines, ingest } = setUp();
  // A length-delimited field (host) claiming more bytes than the message has.
  assert.equal(ingest.receive({ subject: subjects.telemetry('h9'), data: Uint8Array.of(0x0a, 0x05, 0x68), headers: undefined }), null);
  ingest.receive(message({ host: 'h1', sequence: 1, timestampMs: Date.now(), monotonicMs: 0, receivedAtMs: 0, attachments: [] }));
  assert.equal(store.totalReceived, 1);
  assert.deepEqual(lines.map((l) => [l.msg, l.subject]), [['dropped an undecodable telemetry report', 'bpfleet.telemetry.h9']]);
  const m = await scrape(telemetry.metricsUrl!);
  assert.equal(m.sum('bpfleet_telemetry_reports_total'), 2);
  assert.equal(m.sum('bpfleet_telemetry_reports_total', { error_type: 'UNDECODABLE_REPORT' }), 1);
  assert.equal(m.sum('bpfleet_telemetry_report_lag_count'), 1);
});

test('a report naming another host than its subject is dropped, counted and logged once a minute per subject', async (t) => {
  const telemetry = await startTelemetry({ serviceName: 'bpfleet-test', metricsPort: 0 });
  t.after(() => telemetry.shutdown());
  const { store, lines, ingest } = setUp();
  const forged = { subject: subjects.telemetry('h3'), data: TelemetryReport.encode({ host: 'h1', sequence: 1, timestampMs: Date.now(), attachments: [], monotonicMs: 0, receivedAtMs: 0 }).finish(), headers: undefined };
  assert.equal(ingest.receive(forged), null);
  assert.equal(ingest.receive(forged), null);
  assert.deepEqual(store.reports('h1'), []);
  assert.deepEqual(store.reports('h3'), []);
  assert.deepEqual(lines.map((l) => [l.reason, l.subject, l.claimedHost]), [['HOST_MISMATCH', 'bpfleet.telemetry.h3', 'h1']]);
  const m = await scrape(telemetry.metricsUrl!);
  assert.equal(m.sum('bpfleet_telemetry_reports_total', { error_type: 'HOST_MISMATCH' }), 2);
});

test('a report stamped further ahead than the skew is dropped; one within it is kept', async (t) => {
  const telemetry = await startTelemetry({ serviceName: 'bpfleet-test', metricsPort: 0 });
  t.after(() => telemetry.shutdown());
  const store = new TelemetryStore();
  const now = 1_000_000;
  const ingest = new TelemetryIngest(store, createLogger('test', { level: 'error' }), { maxSkewMs: 10_000, now: () => now });
  const kept = ingest.receive(message({ host: 'h1', sequence: 1, timestampMs: now + 10_000, attachments: [], monotonicMs: 0, receivedAtMs: 0 }));
  assert.equal(ingest.receive(message({ host: 'h1', sequence: 2, timestampMs: now + 10_001, attachments: [], monotonicMs: 0, receivedAtMs: 0 })), null);
  assert.equal(ingest.receive(message({ host: 'h1', sequence: 3, timestampMs: now + 3_600_000, attachments: [], monotonicMs: 0, receivedAtMs: 0 })), null);
  assert.deepEqual(store.reports('h1'), [kept]);
  const m = await scrape(telemetry.metricsUrl!);
  assert.equal(m.sum('bpfleet_telemetry_reports_total', { error_type: 'FUTURE_TIMESTAMP' }), 2);
  assert.throws(() => new TelemetryIngest(store, createLogger('test'), { maxSkewMs: -1 }), /max skew -1 ms/);
});
