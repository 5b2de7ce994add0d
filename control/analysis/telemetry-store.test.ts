import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { TelemetryReport } from '../../proto/gen/bpfleet/v1/telemetry.js';
import { MAX_SHARED_STRINGS, TelemetryStore } from './telemetry-store.js';

const report = (host: string, timestampMs: number): TelemetryReport => ({ host, timestampMs, monotonicMs: timestampMs, receivedAtMs: timestampMs, sequence: timestampMs, attachments: [] });
const times = (store: TelemetryStore, host: string) => store.reports(host).map((r) => r.timestampMs);

describe('TelemetryStore', () => {
  it('keeps reports per host, oldest first', () => {
    const store = new TelemetryStore();
    for (const t of [1000, 2000, 3000]) store.add(report('a', t));
    store.add(report('b', 1500));
    assert.deepEqual(times(store, 'a'), [1000, 2000, 3000]);
    assert.deepEqual(times(store, 'b'), [1500]);
    assert.deepEqual(store.reports('nobody'), []);
  });

  it('keeps arrival order on the receive clock: a host\'s own clock reorders nothing', () => {
    const store = new TelemetryStore();
    // A host whose clock runs 30 s behind, then is corrected: its stamps jump, arrivals do not.
    const stamped = [[1000, -29_000], [2000, -28_000], [3000, 3000]] as const;
    for (const [received, stamp] of stamped) store.add({ ...report('a', received), timestampMs: stamp });
    assert.deepEqual(times(store, 'a'), [-29_000, -28_000, 3000]);
    assert.deepEqual(store.reports('a').map((r) => r.receivedAtMs), [1000, 2000, 3000]);
    assert.equal(store.lastSeen('a'), 3000);
    assert.equal(store.lastSeen('b'), null);
  });

  it('a receive clock that steps back cannot unsort the list', () => {
    const store = new TelemetryStore();
    store.add(report('a', 5000));
    store.add(report('a', 1000));
    assert.deepEqual(store.reports('a').map((r) => r.receivedAtMs), [5000, 5000]);
    assert.equal(store.lastSeen('a'), 5000);
  });

  it('forgets reports older than the retention window, measured from the newest', () => {
    const store = new TelemetryStore(10_000);
    for (let t = 0; t <= 30_000; t += 5000) store.add(report('a', t));
    assert.deepEqual(times(store, 'a'), [20_000, 25_000, 30_000]);
  });

  it('keeps at most maxPerHost reports, dropping the oldest', () => {
    const store = new TelemetryStore(60_000, 3);
    for (let t = 1; t <= 5; t++) store.add(report('a', t));
    store.add(report('b', 1));
    assert.deepEqual(times(store, 'a'), [3, 4, 5]);
    assert.deepEqual(times(store, 'b'), [1], 'limits are per host');
  });

  it('since() gives the reports from a time on, led by the last one before it', () => {
    const store = new TelemetryStore();
    for (const t of [1000, 2000, 3000, 4000]) store.add(report('a', t));
    assert.deepEqual(store.since('a', 2500).map((r) => r.timestampMs), [2000, 3000, 4000]);
    assert.deepEqual(store.since('a', 3000).map((r) => r.timestampMs), [2000, 3000, 4000]);
    assert.deepEqual(store.since('a', 500).map((r) => r.timestampMs), [1000, 2000, 3000, 4000]);
    assert.deepEqual(store.since('a', 9000).map((r) => r.timestampMs), [4000], 'a host quiet since before the window still shows its last report');
    assert.deepEqual(store.since('nobody', 0), []);
  });

  it('a reader cuts each host\'s window once and keeps giving that cut', () => {
    const store = new TelemetryStore();
    for (const t of [1000, 2000, 3000]) store.add(report('a', t));
    const read = store.reader(2500);
    const first = read('a');
    assert.deepEqual(first.map((r) => r.timestampMs), [2000, 3000]);
    store.add(report('a', 4000));
    assert.equal(read('a'), first, 'one analysis sees one window, even if a report arrives meanwhile');
    assert.deepEqual(store.reader(2500)('a').map((r) => r.timestampMs), [2000, 3000, 4000]);
  });

  it('counts every report received, kept or not', () => {
    const store = new TelemetryStore(10, 1);
    for (let t = 0; t < 5; t++) store.add(report('a', t * 100));
    assert.equal(store.totalReceived, 5);
    assert.equal(store.reports('a').length, 1);
  });

  it('keeps at most maxHosts hosts, forgetting the one that reported least recently', () => {
    const store = new TelemetryStore(60_000, 10, 3);
    for (const h of ['a', 'b', 'c']) store.add(report(h, 1000));
    store.add(report('a', 2000));
    store.add(report('d', 2000));
    assert.equal(store.hostCount, 3);
    assert.deepEqual(['a', 'b', 'c', 'd'].map((h) => store.reports(h).length), [2, 0, 1, 1]);
    for (let i = 0; i < 10_000; i++) store.add(report(`junk-${i}`, 3000));
    assert.equal(store.hostCount, 3);
  });

  it('shares at most MAX_SHARED_STRINGS strings, whatever versions reports carry', () => {
    const store = new TelemetryStore();
    for (let i = 0; i < MAX_SHARED_STRINGS * 2 + 5; i++) {
      store.add({ host: 'a', timestampMs: i + 1, sequence: i, monotonicMs: i + 1, receivedAtMs: i + 1, attachments: [{ attachment: 'xdp:eth0', module: { name: 'm', version: `v${i}`, digest: `d${i}` }, progId: 1, runCount: 0, runTimeNs: 0, ifaceRxPackets: 0, ifaceTxPackets: 0, stackRxPackets: 0, counters: {} }] });
      assert.ok(store.sharedStrings <= MAX_SHARED_STRINGS);
    }
  });
});
