import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ModuleRef } from '../../proto/gen/bpfleet/v1/module.js';
import { Verdict, type RolloutSpec } from '../../proto/gen/bpfleet/v1/rollout.js';
import { TelemetryReport } from '../../proto/gen/bpfleet/v1/telemetry.js';
import { subjects } from '../../common/keys.js';
import { createLogger } from '../../common/log.js';
import { toRolloutSpec } from '../rollout/spec.js';
import { analyze, type AnalysisInput } from './analyze.js';
import { TelemetryIngest } from './ingest.js';
import { TelemetryStore } from './telemetry-store.js';

const OLD: ModuleRef = { name: 'pass-counter', version: '1.0.0', digest: `sha256:${'1'.repeat(64)}` };
const NEW: ModuleRef = { name: 'pass-counter', version: '2.0.0', digest: `sha256:${'2'.repeat(64)}` };

const specWith = (metrics: { name: string; max?: number; maxIncrease?: number }[], minSamples = 3): RolloutSpec =>
  toRolloutSpec({ module: 'pass-counter', version: '2.0.0', attachment: 'xdp:eth0', steps: [{ canary: 1 }], analysis: { minSamples, metrics } });

/**
 * Reports every second from t=0, 1000 packets run per second of which a fraction `drop`
 * never reaches the stack;
 * the module switches to `after.module` at `after.at`.
 */
function reportsOf(host: string, seconds: number, module: ModuleRef, drop: number, after?: { at: number; module: ModuleRef; drop: number }): TelemetryReport[] {
  const out: TelemetryReport[] = [];
  let runs = 0;
  let rx = 0;
  // Like a veth rx counter, it sees every packet, dropped or not: analysis must not use it.
  let arrived = 0;
  let progId = 1;
  for (let s = 0; s <= seconds; s++) {
    const t = s * 1000;
    let m = module;
    let d = drop;
    if (after && t >= after.at) {
      if (m !== after.module && progId === 1) {
        progId = 2;
        runs = 0;
      }
      m = after.module;
      d = after.drop;
    }
    if (s > 0) {
      runs += 1000;
      arrived += 1000;
      rx += Math.round(1000 * (1 - d));
    }
    out.push({ host, timestampMs: t, monotonicMs: t, receivedAtMs: t, sequence: s, attachments: [{ attachment: 'xdp:eth0', module: m, progId, runCount: runs, runTimeNs: runs * 100, ifaceRxPackets: arrived, ifaceTxPackets: 0, stackRxPackets: rx, counters: { packets: runs } }] });
  }
  return out;
}

function input(over: Partial<AnalysisInput> & { fleet: Record<string, TelemetryReport[]> }): AnalysisInput {
  const { fleet, ...rest } = over;
  return {
    spec: specWith([{ name: 'drop_rate', max: 0.05, maxIncrease: 0.02 }]),
    step: 1,
    canary: { hosts: ['c1'], digest: NEW.digest },
    baseline: { hosts: ['b1', 'b2'] },
    from: 0,
    to: 10_000,
    reportsOf: (h) => fleet[h] ?? [],
    ...rest,
  };
}

describe('analyze', () => {
  it('passes a canary that behaves like the baseline', () => {
    const fleet = { c1: reportsOf('c1', 10, NEW, 0), b1: reportsOf('b1', 10, OLD, 0), b2: reportsOf('b2', 10, OLD, 0) };
    const run = analyze(input({ fleet }));
    assert.equal(run.verdict, Verdict.VERDICT_PASS);
    assert.equal(run.step, 1);
    assert.equal(run.at, new Date(10_000).toISOString());
    const [m] = run.metrics;
    assert.equal(m!.canarySamples, 10);
    assert.equal(m!.baselineSamples, 20, 'baseline samples pool over its hosts');
  });

  it('fails a canary that drops traffic the baseline does not', () => {
    const fleet = { c1: reportsOf('c1', 10, NEW, 0.5), b1: reportsOf('b1', 10, OLD, 0), b2: reportsOf('b2', 10, OLD, 0) };
    const run = analyze(input({ fleet, spec: specWith([{ name: 'drop_rate', maxIncrease: 0.02 }]) }));
    assert.equal(run.verdict, Verdict.VERDICT_FAIL);
    assert.equal(run.metrics[0]!.canary, 0.5);
    // The default method, paired, has no reports from before the step here: cohorts, said so.
    assert.match(run.summary, /^drop_rate: canary 0\.5 vs baseline 0: no canary host has samples from before the step, compared as cohorts \(kayenta\): shift \+0\.5 \(98% interval \+0\.5\.\.\+0\.5\) exceeds \+0\.02$/);
  });

  it('counts only canary samples from the target digest: the time before its swap is not evidence', () => {
    // c1 ran the old version, dropping nothing, for 6 s, then the new one dropping half.
    const c1 = reportsOf('c1', 10, OLD, 0, { at: 6000, module: NEW, drop: 0.5 });
    const fleet = { c1, b1: reportsOf('b1', 10, OLD, 0), b2: reportsOf('b2', 10, OLD, 0) };
    const run = analyze(input({ fleet, spec: specWith([{ name: 'drop_rate', max: 0.1 }]) }));
    // Intervals ending at 7..10 s: 4 samples, all at 0.5 (6 s spans the swap and is dropped).
    assert.equal(run.metrics[0]!.canarySamples, 4);
    assert.equal(run.metrics[0]!.canary, 0.5);
    assert.equal(run.verdict, Verdict.VERDICT_FAIL);
  });

  it('keeps baseline samples of a host that already runs the target out of the baseline', () => {
    const fleet = { c1: reportsOf('c1', 10, NEW, 0), b1: reportsOf('b1', 10, OLD, 0), b2: reportsOf('b2', 10, NEW, 0) };
    const run = analyze(input({ fleet }));
    assert.equal(run.metrics[0]!.baselineSamples, 10);
  });

  it('is inconclusive with too few samples in the window', () => {
    const fleet = { c1: reportsOf('c1', 10, NEW, 0), b1: reportsOf('b1', 10, OLD, 0) };
    const run = analyze(input({ fleet, from: 8000, to: 10_000 }));
    assert.equal(run.verdict, Verdict.VERDICT_INCONCLUSIVE);
    assert.match(run.summary, /canary has 2 of 3 samples needed/);
  });

  it('is inconclusive when baseline hosts exist but sent no telemetry', () => {
    const fleet = { c1: reportsOf('c1', 10, NEW, 0) };
    const run = analyze(input({ fleet }));
    assert.equal(run.verdict, Verdict.VERDICT_INCONCLUSIVE);
    assert.match(run.summary, /baseline has 0 of 3 samples needed/);
  });

  it('judges the canary alone once no baseline host is left', () => {
    const fleet = { c1: reportsOf('c1', 10, NEW, 0) };
    const run = analyze(input({ fleet, baseline: { hosts: [] } }));
    assert.equal(run.verdict, Verdict.VERDICT_PASS);
    assert.match(run.summary, /no baseline hosts left/);
  });

  it('judges every metric of the spec and the worst one wins', () => {
    const fleet = { c1: reportsOf('c1', 10, NEW, 0), b1: reportsOf('b1', 10, OLD, 0) };
    const spec = specWith([
      { name: 'drop_rate', max: 0.05 },
      { name: 'run_time_ns_per_packet', max: 50 },
      { name: 'counter:packets_rate', max: 2000 },
    ]);
    const run = analyze(input({ fleet, spec, baseline: { hosts: ['b1'] } }));
    assert.deepEqual(run.metrics.map((m) => [m.metric, m.verdict]), [
      ['drop_rate', Verdict.VERDICT_PASS],
      ['run_time_ns_per_packet', Verdict.VERDICT_FAIL],
      ['counter:packets_rate', Verdict.VERDICT_PASS],
    ]);
    assert.equal(run.metrics[1]!.canary, 100);
    assert.equal(run.metrics[2]!.canary, 1000);
    assert.equal(run.verdict, Verdict.VERDICT_FAIL);
  });
});

describe('analyze: missing and stale telemetry', () => {
  it('a canary host gone quiet makes the verdict inconclusive, named with its age, even if what it sent was fine', () => {
    const fleet = { c1: reportsOf('c1', 5, NEW, 0), b1: reportsOf('b1', 10, OLD, 0), b2: reportsOf('b2', 10, OLD, 0) };
    const run = analyze(input({ fleet }));
    assert.equal(run.verdict, Verdict.VERDICT_INCONCLUSIVE);
    assert.deepEqual(run.staleHosts, ['c1']);
    assert.equal(run.summary, 'no recent telemetry (limit 3s) from c1 (last report 5s ago): left out, and a canary host must report before a verdict');
    assert.equal(run.metrics[0]!.canarySamples, 0, 'its old samples do not count');
  });

  it('a quiet baseline host contributes nothing and is named; the rest still decide', () => {
    const fleet = { c1: reportsOf('c1', 10, NEW, 0), b1: reportsOf('b1', 10, OLD, 0), b2: reportsOf('b2', 6, OLD, 0) };
    const run = analyze(input({ fleet }));
    assert.equal(run.verdict, Verdict.VERDICT_PASS);
    assert.deepEqual(run.staleHosts, ['b2']);
    assert.equal(run.metrics[0]!.baselineSamples, 10, 'only b1');
    assert.match(run.summary, /; no recent telemetry \(limit 3s\) from b2 \(last report 4s ago\): left out$/);
  });

  it('a host that never reported is named as such', () => {
    const fleet = { c1: reportsOf('c1', 10, NEW, 0), b1: reportsOf('b1', 10, OLD, 0) };
    const run = analyze(input({ fleet, baseline: { hosts: ['b1', 'b9'] } }));
    assert.deepEqual(run.staleHosts, ['b9']);
    assert.match(run.summary, /b9 \(never reported\)/);
  });

  it('a failure the fresh canary hosts show is not hidden by a quiet one', () => {
    const fleet = { c1: reportsOf('c1', 10, NEW, 0.5), c2: reportsOf('c2', 2, NEW, 0), b1: reportsOf('b1', 10, OLD, 0) };
    const run = analyze(input({ fleet, canary: { hosts: ['c1', 'c2'], digest: NEW.digest }, baseline: { hosts: ['b1'] } }));
    assert.equal(run.verdict, Verdict.VERDICT_FAIL);
    assert.deepEqual(run.staleHosts, ['c2']);
  });

  it('every host quiet (telemetry transport down): inconclusive, never a pass', () => {
    const fleet = { c1: reportsOf('c1', 4, NEW, 0), b1: reportsOf('b1', 4, OLD, 0), b2: reportsOf('b2', 4, OLD, 0) };
    const run = analyze(input({ fleet }));
    assert.equal(run.verdict, Verdict.VERDICT_INCONCLUSIVE);
    assert.deepEqual(run.staleHosts, ['c1', 'b1', 'b2']);
  });

  it('staleAfter in the spec replaces three intervals', () => {
    const fleet = { c1: reportsOf('c1', 5, NEW, 0), b1: reportsOf('b1', 10, OLD, 0) };
    const spec = toRolloutSpec({ module: 'pass-counter', version: '2.0.0', attachment: 'xdp:eth0', steps: [{ canary: 1 }], analysis: { staleAfter: '6s', metrics: [{ name: 'drop_rate', max: 0.05 }] } });
    const run = analyze(input({ fleet, spec, baseline: { hosts: ['b1'] } }));
    assert.deepEqual(run.staleHosts, []);
    assert.equal(run.verdict, Verdict.VERDICT_PASS);
    const slower = toRolloutSpec({ module: 'pass-counter', version: '2.0.0', attachment: 'xdp:eth0', steps: [{ canary: 1 }], analysis: { interval: '2s', metrics: [{ name: 'drop_rate', max: 0.05 }] } });
    assert.deepEqual(analyze(input({ fleet, spec: slower, baseline: { hosts: ['b1'] } })).staleHosts, [], '3 × 2s = 6s');
  });
});

describe('analyze: hosts whose clocks disagree with the control plane', () => {
  /**
   * Each host's reports as the ingest stores them: stamped by a host clock `skewMs` off (and
   * a monotonic clock with its own origin), received on the control plane's clock at the
   * second they were collected.
   */
  function received(fleet: Record<string, TelemetryReport[]>, skewMs: Record<string, number>): (host: string) => readonly TelemetryReport[] {
    let now = 0;
    const store = new TelemetryStore();
    const ingest = new TelemetryIngest(store, createLogger('test', { level: 'silent' }), { now: () => now });
    for (const [host, reports] of Object.entries(fleet)) {
      for (const r of reports) {
        now = EPOCH + r.timestampMs;
        const skewed = { ...r, timestampMs: now + (skewMs[host] ?? 0), monotonicMs: r.monotonicMs + 987_654, receivedAtMs: 0 };
        ingest.receive({ subject: subjects.telemetry(host), data: TelemetryReport.encode(skewed).finish(), headers: undefined });
      }
    }
    return store.reader(0);
  }
  // Wall clocks read real times: a report stamped at or before 1970 is refused by the ingest.
  const EPOCH = Date.parse('2026-12-01T00:00:00Z');
  const window = { from: EPOCH, to: EPOCH + 10_000 };
  const skews = { c1: 30_000, c2: -30_000, b1: 30_000, b2: -30_000 };
  const spec = specWith([{ name: 'drop_rate', max: 0.05, maxIncrease: 0.02 }]);
  const canary = { hosts: ['c1', 'c2'], digest: NEW.digest };

  it('passes a good version on canaries 30 s ahead and 30 s behind, and says so', () => {
    const fleet = { c1: reportsOf('c1', 10, NEW, 0), c2: reportsOf('c2', 10, NEW, 0), b1: reportsOf('b1', 10, OLD, 0), b2: reportsOf('b2', 10, OLD, 0) };
    const run = analyze(input({ fleet: {}, spec, canary, ...window, reportsOf: received(fleet, skews) }));
    assert.equal(run.verdict, Verdict.VERDICT_PASS, run.summary);
    assert.equal(run.metrics[0]!.canarySamples, 20);
    assert.deepEqual(run.staleHosts, []);
    assert.match(run.summary, /clock skew \(host − control plane\) c1 \+30s, c2 −30s, b1 \+30s, b2 −30s: windows use the control plane's receive time/);
  });

  it('fails a bad version on the same skewed clocks', () => {
    const fleet = { c1: reportsOf('c1', 10, NEW, 0.5), c2: reportsOf('c2', 10, NEW, 0.5), b1: reportsOf('b1', 10, OLD, 0), b2: reportsOf('b2', 10, OLD, 0) };
    const run = analyze(input({ fleet: {}, spec, canary, ...window, reportsOf: received(fleet, skews) }));
    assert.equal(run.verdict, Verdict.VERDICT_FAIL, run.summary);
    assert.match(run.summary, /^drop_rate: canary 0\.5 is above the limit 0\.05/);
  });

  it('names no skew below 2 s', () => {
    const fleet = { c1: reportsOf('c1', 10, NEW, 0), c2: reportsOf('c2', 10, NEW, 0), b1: reportsOf('b1', 10, OLD, 0), b2: reportsOf('b2', 10, OLD, 0) };
    const run = analyze(input({ fleet: {}, spec, canary, ...window, reportsOf: received(fleet, { c1: 1999, b2: -1999 }) }));
    assert.equal(run.verdict, Verdict.VERDICT_PASS);
    assert.doesNotMatch(run.summary, /skew/);
  });
});
