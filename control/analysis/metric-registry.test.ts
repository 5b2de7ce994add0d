import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AttachmentTelemetry } from '../../proto/gen/bpfleet/v1/telemetry.js';
import { toRolloutSpec } from '../rollout/spec.js';
import { EXPECTED_METRIC, isMetric, metricFn, METRICS } from './metric-registry.js';

const MINIMAL = { module: 'pass-counter', version: '2.0.0', attachment: 'xdp:eth0', steps: [{ canary: 1 }] };
const withMetric = (name: string) => ({ ...MINIMAL, analysis: { metrics: [{ name, max: 1 }] } });
// A spec name for each definition: a parameterised one with a parameter filled in.
const example = (name: string) => name.replace('<name>', 'packets');

function tel(over: Partial<AttachmentTelemetry> = {}): AttachmentTelemetry {
  return {
    attachment: 'xdp:eth0', module: undefined, progId: 10,
    runCount: 0, runTimeNs: 0, ifaceRxPackets: 0, ifaceTxPackets: 0, stackRxPackets: 0, counters: {},
    ...over,
  };
}

describe('metric registry', () => {
  it('lists drop_rate, run_time_ns_per_packet and counter:<name>_rate, each described', () => {
    assert.deepEqual(METRICS.map((m) => m.name), ['drop_rate', 'run_time_ns_per_packet', 'counter:<name>_rate']);
    for (const m of METRICS) assert.ok(m.description.length > 0, m.name);
  });

  it('every registered metric validates in a spec and keeps its name', () => {
    for (const m of METRICS) {
      const spec = toRolloutSpec(withMetric(example(m.name)));
      assert.deepEqual(spec.analysis!.metrics.map((x) => x.name), [example(m.name)]);
      assert.ok(metricFn(example(m.name)), m.name);
    }
  });

  it('refuses an unknown metric with the text built from the registry', () => {
    assert.equal(EXPECTED_METRIC, 'expected drop_rate, run_time_ns_per_packet or counter:<name>_rate');
    assert.throws(() => toRolloutSpec(withMetric('latency_p99')),
      { message: 'invalid rollout spec:\n  analysis.metrics[0].name: expected drop_rate, run_time_ns_per_packet or counter:<name>_rate' });
    assert.equal(metricFn('latency_p99'), null);
  });

  it('counter:<name>_rate takes any counter name of letters, digits and underscores', () => {
    for (const name of ['counter:packets_rate', 'counter:bytes_rate', 'counter:TCP_syn_2_rate', 'counter:a_rate_rate']) {
      assert.ok(isMetric(name), name);
    }
    for (const name of ['counter:_rate', 'counter:a-b_rate', 'counter:packets', 'counter:packets_rate ', 'packets_rate', 'counter:<name>_rate']) {
      assert.equal(isMetric(name), false, name);
      assert.throws(() => toRolloutSpec(withMetric(name)), { message: /name: expected drop_rate/ });
    }
  });

  it('a counter rate reads the counter its name gives, per second', () => {
    const a = tel({ counters: { packets: 100, bytes: 5 } });
    const b = tel({ counters: { packets: 400, bytes: 5 } });
    assert.equal(metricFn('counter:packets_rate')!(a, b, 100, 2000), 150);
    assert.equal(metricFn('counter:bytes_rate')!(a, b, 100, 2000), 0);
    assert.equal(metricFn('counter:a_rate_rate')!(tel({ counters: { a_rate: 1 } }), tel({ counters: { a_rate: 3 } }), 100, 1000), 2);
    assert.equal(metricFn('counter:packets_rate')!(a, b, 0, 2000), null, 'an interval without traffic is no sample');
  });
});
