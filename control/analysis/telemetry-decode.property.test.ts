/**
 * Property test of the telemetry decoder on the ingest path (issue 11, "bad input at every
 * boundary"): thousands of generated NATS messages — random bytes, truncated and bit-flipped
 * reports, reports with junk fields on matching and mismatched subjects. decodeReport
 * returns a checked report or throws an INVALID_ARGUMENT BpfleetError naming the field;
 * TelemetryIngest.receive never throws and stores only what decodeReport accepted.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { BpfleetError } from '../../common/errors.js';
import { HOST_NAME_RE, subjects } from '../../common/keys.js';
import { createLogger } from '../../common/log.js';
import { TelemetryReport } from '../../proto/gen/bpfleet/v1/telemetry.js';
import { TelemetryIngest } from './ingest.js';
import { decodeReport, MAX_REPORT_ATTACHMENTS } from './telemetry-decode.js';
import { TelemetryStore } from './telemetry-store.js';

const u64 = fc.oneof(fc.nat(), fc.constant(Number.MAX_SAFE_INTEGER));
const attachment = fc.record({
  attachment: fc.oneof(fc.constant('xdp:eth0'), fc.string({ maxLength: 40 })),
  module: fc.option(fc.record({ name: fc.string({ maxLength: 70 }), version: fc.string({ maxLength: 70 }), digest: fc.string({ maxLength: 80 }) }), { nil: undefined }),
  progId: fc.nat({ max: 0xffffffff }),
  runCount: u64, runTimeNs: u64, ifaceRxPackets: u64, ifaceTxPackets: u64, stackRxPackets: u64,
  counters: fc.dictionary(fc.string({ maxLength: 140 }), fc.nat(), { maxKeys: 10 }),
});
const host = fc.oneof(fc.constantFrom('h1', 'edge-7'), fc.string({ maxLength: 70 }));
const report = fc.record({
  host,
  timestampMs: fc.oneof(fc.integer({ min: 1, max: 2 ** 42 }), fc.integer({ min: -(2 ** 40), max: 0 })),
  sequence: fc.nat(),
  monotonicMs: fc.nat(),
  receivedAtMs: fc.constant(0),
  attachments: fc.array(attachment, { maxLength: MAX_REPORT_ATTACHMENTS + 2 }),
});
const message = fc.oneof(
  fc.record({ subject: host.map((h) => subjects.telemetry(h)), data: fc.uint8Array({ maxLength: 200 }) }),
  fc.tuple(report, fc.boolean(), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }), fc.option(fc.nat())).map(([r, ownSubject, flips, cut]) => {
    const data = TelemetryReport.encode(r).finish();
    for (const [i, b] of flips) if (data.length) data[i % data.length] = b;
    return { subject: subjects.telemetry(ownSubject ? r.host : 'someone-else'), data: cut === null ? data : data.subarray(0, cut % (data.length + 1)) };
  }),
);
const FIELD = /^telemetry on "(?:[^"\\]|\\.)*…?"(?: \(\d+ characters\))?: (report|host|timestampMs|attachments(\[\d+\]\.(attachment|module\.(name|version|digest)|counters))?): /;

test('a generated message decodes into a checked report or is refused naming the field', () => {
  let accepted = 0;
  fc.assert(fc.property(message, ({ subject, data }) => {
    let r: TelemetryReport;
    try {
      r = decodeReport(subject, data);
    } catch (err) {
      assert.ok(err instanceof BpfleetError, `not a BpfleetError: ${String(err)}`);
      assert.equal(err.code, 'INVALID_ARGUMENT');
      assert.match(err.reason, /^(UNDECODABLE_REPORT|INVALID_REPORT|HOST_MISMATCH)$/);
      assert.match(err.message, FIELD);
      assert.ok(err.message.length < 1024);
      return;
    }
    accepted++;
    assert.match(r.host, HOST_NAME_RE);
    assert.equal(subject, subjects.telemetry(r.host));
    assert.ok(Number.isSafeInteger(r.timestampMs) && r.timestampMs > 0);
    assert.ok(r.attachments.length <= MAX_REPORT_ATTACHMENTS);
  }), { numRuns: 3000 });
  assert.ok(accepted > 0, 'some generated reports are valid');
});

test('ingest never throws: it stores what decodes and drops the rest', () => {
  const store = new TelemetryStore();
  const ingest = new TelemetryIngest(store, createLogger('test', { level: 'silent' }));
  let stored = 0;
  fc.assert(fc.property(message, (msg) => {
    if (ingest.receive({ ...msg, headers: undefined })) stored++;
  }), { numRuns: 2000 });
  assert.equal(store.totalReceived, stored);
});
