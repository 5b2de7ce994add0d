import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ModuleRef } from '../../proto/gen/bpfleet/v1/module.js';
import type { AttachmentTelemetry, TelemetryReport } from '../../proto/gen/bpfleet/v1/telemetry.js';
import { metricValue, samplesOf } from './samples.js';

const V1: ModuleRef = { name: 'pass-counter', version: '1.0.0', digest: `sha256:${'1'.repeat(64)}` };
const V2: ModuleRef = { name: 'pass-counter', version: '2.0.0', digest: `sha256:${'2'.repeat(64)}` };

function tel(over: Partial<AttachmentTelemetry> = {}): AttachmentTelemetry {
  return {
    attachment: 'xdp:eth0', module: V1, progId: 10,
    runCount: 0, runTimeNs: 0, ifaceRxPackets: 0, ifaceTxPackets: 0, stackRxPackets: 0, counters: {},
    ...over,
  };
}

function report(timestampMs: number, ...attachments: AttachmentTelemetry[]): TelemetryReport {
  return { host: 'h1', timestampMs, monotonicMs: timestampMs, receivedAtMs: timestampMs, sequence: timestampMs, attachments };
}

describe('metricValue', () => {
  it('drop_rate at an ingress hook is 1 - Δstack_rx/Δrun over the interval', () => {
    const a = tel({ runCount: 1000, stackRxPackets: 900 });
    const b = tel({ runCount: 2000, stackRxPackets: 1650 });
    // 1000 runs, 750 reached the IP stack: a quarter dropped.
    assert.equal(metricValue('drop_rate', a, b, 1000), 0.25);
  });

  it('drop_rate at an ingress hook does not trust the interface rx counter', () => {
    // On veth the rx counter includes what XDP dropped: it would hide every drop.
    const a = tel({ runCount: 0, ifaceRxPackets: 0, stackRxPackets: 0 });
    const b = tel({ runCount: 100, ifaceRxPackets: 100, stackRxPackets: 20 });
    assert.equal(metricValue('drop_rate', a, b, 1000), 0.8);
    const tcx = (over: Partial<AttachmentTelemetry>) => tel({ attachment: 'tcx-ingress:eth0', ...over });
    assert.ok(Math.abs(metricValue('drop_rate', tcx({}), tcx({ runCount: 100, ifaceRxPackets: 100, stackRxPackets: 90 }), 1000)! - 0.1) < 1e-12);
  });

  it('drop_rate is clamped to 0..1 when the delivered counter runs ahead or behind', () => {
    const a = tel({ runCount: 0, stackRxPackets: 0 });
    assert.equal(metricValue('drop_rate', a, tel({ runCount: 100, stackRxPackets: 130 }), 1000), 0);
    assert.equal(metricValue('drop_rate', tel({ stackRxPackets: 50 }), tel({ runCount: 100, stackRxPackets: 10 }), 1000), 1);
  });

  it('drop_rate at an egress hook counts what left the interface', () => {
    const a = tel({ attachment: 'tcx-egress:eth0' });
    // 100 packets went through the egress program, which let only 40 out (tx); what the
    // stack received says nothing about egress.
    const b = tel({ attachment: 'tcx-egress:eth0', runCount: 100, ifaceRxPackets: 100, stackRxPackets: 100, ifaceTxPackets: 40 });
    assert.equal(metricValue('drop_rate', a, b, 1000), 0.6);
  });

  it('skips intervals with too few runs to mean anything', () => {
    const a = tel({ runCount: 100, stackRxPackets: 100, runTimeNs: 0 });
    const b = tel({ runCount: 109, stackRxPackets: 100, runTimeNs: 900 });
    assert.equal(metricValue('drop_rate', a, b, 1000), null);
    assert.equal(metricValue('run_time_ns_per_packet', a, b, 1000), null);
    assert.equal(metricValue('drop_rate', a, tel({ runCount: 110, stackRxPackets: 110 }), 1000), 0, '10 runs are enough');
  });

  it('run_time_ns_per_packet is Δrun_time/Δrun', () => {
    const a = tel({ runCount: 100, runTimeNs: 10_000 });
    const b = tel({ runCount: 300, runTimeNs: 40_000 });
    assert.equal(metricValue('run_time_ns_per_packet', a, b, 1000), 150);
  });

  it('a counter rate is per second of the interval', () => {
    const a = tel({ runCount: 1000, counters: { packets: 1000, bytes: 5 } });
    const b = tel({ runCount: 4000, counters: { packets: 4000, bytes: 5 } });
    assert.equal(metricValue('counter:packets_rate', a, b, 2000), 1500);
    assert.equal(metricValue('counter:bytes_rate', a, b, 2000), 0);
  });

  it('a counter missing on either side, or no time passing, gives no value', () => {
    const a = tel({ counters: { packets: 1 } });
    assert.equal(metricValue('counter:packets_rate', a, tel({ counters: {} }), 1000), null);
    assert.equal(metricValue('counter:packets_rate', tel({ counters: {} }), a, 1000), null);
    assert.equal(metricValue('counter:packets_rate', a, tel({ counters: { packets: 9 } }), 0), null);
  });

  it('drops an interval that spans a program change: cumulative counters restart with it', () => {
    const a = tel({ runCount: 5000, stackRxPackets: 5000, progId: 10 });
    const swappedProg = tel({ runCount: 100, stackRxPackets: 5100, progId: 11 });
    assert.equal(metricValue('drop_rate', a, swappedProg, 1000), null);
    // The same digest loaded again as a new program: counters that happen to look sane still
    // belong to two programs.
    const reloaded = tel({ runCount: 6000, stackRxPackets: 5500, progId: 12 });
    assert.equal(metricValue('drop_rate', a, reloaded, 1000), null);
    const swappedModule = tel({ runCount: 6000, stackRxPackets: 6000, module: V2 });
    assert.equal(metricValue('drop_rate', a, swappedModule, 1000), null);
    assert.equal(metricValue('drop_rate', a, tel({ runCount: 6000, stackRxPackets: 6000, module: undefined }), 1000), null);
  });

  it('an unknown metric has no value', () => {
    assert.equal(metricValue('latency_p99', tel(), tel({ runCount: 1000 }), 1000), null);
  });
});

describe('samplesOf', () => {
  const steady = (t: number, runs: number, rx: number, over: Partial<AttachmentTelemetry> = {}) =>
    report(t, tel({ runCount: runs, stackRxPackets: rx, ...over }));

  it('makes one sample per pair of consecutive reports, stamped with the later one', () => {
    const reports = [steady(1000, 0, 0), steady(2000, 100, 100), steady(3000, 200, 150)];
    const samples = samplesOf(reports, 'xdp:eth0', 'drop_rate', 0, 10_000);
    assert.deepEqual(samples, [
      { host: 'h1', digest: V1.digest, at: 2000, value: 0 },
      { host: 'h1', digest: V1.digest, at: 3000, value: 0.5 },
    ]);
  });

  it('keeps the intervals that end inside (from, to]', () => {
    const reports = [steady(1000, 0, 0), steady(2000, 100, 100), steady(3000, 200, 200), steady(4000, 300, 300), steady(5000, 400, 400)];
    const at = (from: number, to: number) => samplesOf(reports, 'xdp:eth0', 'drop_rate', from, to).map((s) => s.at);
    assert.deepEqual(at(2000, 4000), [3000, 4000]);
    // The interval 1000→2000 began before the window but ends in it: it counts.
    assert.deepEqual(at(1500, 4500), [2000, 3000, 4000]);
    assert.deepEqual(at(0, 1000), []);
  });

  it('only reads the attachment asked for', () => {
    const reports = [
      report(1000, tel({ attachment: 'tcx-ingress:eth0', runCount: 0 }), tel({ runCount: 0 })),
      report(2000, tel({ attachment: 'tcx-ingress:eth0', runCount: 100, stackRxPackets: 0 }), tel({ runCount: 100, stackRxPackets: 100 })),
    ];
    assert.deepEqual(samplesOf(reports, 'xdp:eth0', 'drop_rate', 0, 5000).map((s) => s.value), [0]);
    assert.deepEqual(samplesOf(reports, 'tcx-ingress:eth0', 'drop_rate', 0, 5000).map((s) => s.value), [1]);
  });

  it('does not bridge a report where the attachment was missing', () => {
    const reports = [steady(1000, 0, 0), report(2000), steady(3000, 200, 100)];
    assert.deepEqual(samplesOf(reports, 'xdp:eth0', 'drop_rate', 0, 5000), []);
  });

  it('drops the interval across a swap and carries on with the new program', () => {
    const reports = [
      steady(1000, 0, 0),
      steady(2000, 100, 100),
      steady(3000, 50, 150, { progId: 11, module: V2 }),
      steady(4000, 150, 200, { progId: 11, module: V2 }),
    ];
    const samples = samplesOf(reports, 'xdp:eth0', 'drop_rate', 0, 5000);
    assert.deepEqual(samples.map((s) => [s.at, s.digest, s.value]), [[2000, V1.digest, 0], [4000, V2.digest, 0.5]]);
  });

  it('skips quiet intervals without losing the ones after them', () => {
    const reports = [steady(1000, 0, 0), steady(2000, 5, 5), steady(3000, 105, 55)];
    assert.deepEqual(samplesOf(reports, 'xdp:eth0', 'drop_rate', 0, 5000).map((s) => [s.at, s.value]), [[3000, 0.5]]);
  });

  it('gives nothing for no reports or a single one', () => {
    assert.deepEqual(samplesOf([], 'xdp:eth0', 'drop_rate', 0, 5000), []);
    assert.deepEqual(samplesOf([steady(1000, 100, 100)], 'xdp:eth0', 'drop_rate', 0, 5000), []);
  });
});
