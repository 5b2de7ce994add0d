import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ModuleRef } from '../../proto/gen/bpfleet/v1/module.js';
import { Verdict } from '../../proto/gen/bpfleet/v1/rollout.js';
import type { TelemetryReport } from '../../proto/gen/bpfleet/v1/telemetry.js';
import { toRolloutSpec } from '../rollout/spec.js';
import { analyze, readsFrom } from './analyze.js';
import { hostChange, PRE_WINDOW_MS } from './paired.js';

const OLD: ModuleRef = { name: 'pass-counter', version: '1.0.0', digest: `sha256:${'1'.repeat(64)}` };
const NEW: ModuleRef = { name: 'pass-counter', version: '2.0.0', digest: `sha256:${'2'.repeat(64)}` };
/** The step starts here; the before window is the PRE_WINDOW_MS before it. */
const FROM = PRE_WINDOW_MS + 10_000;
const TO = FROM + 10_000;

/**
 * One report a second from t=0 to TO, 1000 packets a second, of which `drop` (or `dropAt(t)`)
 * never reach the stack; a canary swaps to NEW (a new program) at FROM, then drops `dropAfter`.
 */
function host(name: string, drop: number | ((t: number) => number), swap?: { dropAfter: number | ((t: number) => number) }): TelemetryReport[] {
  const out: TelemetryReport[] = [];
  let runs = 0;
  let rx = 0;
  let progId = 1;
  for (let t = 0; t <= TO; t += 1000) {
    const swapped = swap !== undefined && t >= FROM;
    if (swapped && progId === 1) {
      progId = 2;
      runs = 0;
      rx = 0;
    }
    const rate = swapped ? swap.dropAfter : drop;
    const d = typeof rate === 'number' ? rate : rate(t);
    if (t > 0) {
      runs += 1000;
      rx += Math.round(1000 * (1 - d));
    }
    out.push({ host: name, timestampMs: t, monotonicMs: t, receivedAtMs: t, sequence: t / 1000, attachments: [{ attachment: 'xdp:eth0', module: swapped ? NEW : OLD, progId, runCount: runs, runTimeNs: runs * 100, ifaceRxPackets: runs, ifaceTxPackets: 0, stackRxPackets: rx, counters: {} }] });
  }
  return out;
}

const spec = (method: string) => toRolloutSpec({
  module: 'pass-counter', version: '2.0.0', attachment: 'xdp:eth0', steps: [{ canary: 1 }, { bake: '1s' }],
  analysis: { method, metrics: [{ name: 'drop_rate', maxIncrease: 0.02 }] },
});

/** 40 baseline hosts at different, steady drop rates (0 to 2 %), as hosts of a real fleet differ. */
function baseline(): Record<string, TelemetryReport[]> {
  return Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`b${i}`, host(`b${i}`, i * 0.0005)]));
}

function run(method: string, fleet: Record<string, TelemetryReport[]>, canaries: string[], to = TO) {
  return analyze({
    spec: spec(method), step: 1, canary: { hosts: canaries, digest: NEW.digest },
    baseline: { hosts: Object.keys(fleet).filter((h) => !canaries.includes(h)) },
    from: FROM, to, reportsOf: (h) => (fleet[h] ?? []).filter((r) => r.timestampMs <= to),
  });
}

describe('paired analysis', () => {
  it('a host change is the median during minus the median before, null without either', () => {
    assert.deepEqual(hostChange([1, 2, 3, 100], [5, 6, 7]), { change: 6 - 2.5, before: 2.5 });
    assert.equal(hostChange([], [1]), null);
    assert.equal(hostChange([1], []), null);
  });

  it('reads the before window only for the paired method', () => {
    assert.equal(readsFrom(spec('paired').analysis!, FROM), FROM - PRE_WINDOW_MS);
    assert.equal(readsFrom(spec('kayenta').analysis!, FROM), FROM);
  });

  it('passes a canary host whose drop rate was above every baseline host before the swap and did not change', () => {
    const fleet = { ...baseline(), c: host('c', 0.05, { dropAfter: 0.05 }) };
    // The cohort comparison sees a canary 3 points above the baseline: a false rollback.
    assert.equal(run('kayenta', fleet, ['c']).verdict, Verdict.VERDICT_FAIL);
    const paired = run('paired', fleet, ['c']);
    assert.equal(paired.verdict, Verdict.VERDICT_PASS, paired.summary);
    const m = paired.metrics[0]!;
    assert.equal(m.test, 'paired');
    assert.equal(m.effect, 0);
    assert.equal(m.canarySummary!.samples, 1, 'one change per canary host');
    assert.equal(m.baselineSummary!.samples, 40);
    assert.match(m.reason, /^change since before the step: canary hosts \+0 \(median of 1\) vs baseline hosts \+0 \(median of 40\), shift \+0$/);
  });

  it('fails a canary host whose drop rate rose by more than the limit, significant over hosts', () => {
    const fleet = { ...baseline(), c: host('c', 0.01, { dropAfter: 0.05 }) };
    const m = run('paired', fleet, ['c']).metrics[0]!;
    assert.equal(m.verdict, Verdict.VERDICT_FAIL, m.reason);
    assert.ok(Math.abs(m.effect - 0.04) < 1e-9, `${m.effect}`);
    assert.ok(m.pValue < m.alpha && m.alpha === 0.01, `${m.pValue}`);
    assert.match(m.reason, /shift \+0\.04 exceeds \+0\.02 \(Mann-Whitney against their own history p=0\.0000 \(needs < 0\.01\), over hosts p=0\.0\d+ \(needs < 0\.05\)\)$/);
  });

  it('holds a rise above the limit on a host whose own samples were as spread before the step', () => {
    // Before the step the canary alternated between 1 % and 9 % (median 1 %); its three
    // samples during the step are 9 %, 9 %, 1 %: its median rose by 8 points, the limit is 2,
    // but its own history had such samples half the time.
    const fleet = { ...baseline(), c: host('c', (t) => ((t / 1000) % 2 ? 0.01 : 0.09), { dropAfter: (t) => (t === FROM + 3000 ? 0.01 : 0.09) }) };
    const m = run('paired', fleet, ['c'], FROM + 3000).metrics[0]!;
    assert.equal(m.test, 'paired');
    assert.ok(Math.abs(m.effect - 0.08) < 1e-9, `${m.effect}`);
    assert.equal(m.verdict, Verdict.VERDICT_INCONCLUSIVE, m.reason);
    assert.ok(m.pValue >= 0.01);
    assert.match(m.reason, /above \+0\.02 but not significant yet/);
  });

  it('with too few baseline hosts for a test over hosts, the canary hosts\' own history decides', () => {
    const few = Object.fromEntries(Object.entries(baseline()).slice(0, 10));
    const m = run('paired', { ...few, c: host('c', 0.01, { dropAfter: 0.05 }) }, ['c']).metrics[0]!;
    assert.equal(m.verdict, Verdict.VERDICT_FAIL, m.reason);
    assert.match(m.reason, /over hosts not tested \(too few hosts to reach significance\)\)$/);
  });

  it('takes out what moved every host alike: all hosts up 3 points is no regression', () => {
    const rising = (base: number) => (t: number) => base + (t > FROM ? 0.03 : 0);
    const fleet: Record<string, TelemetryReport[]> = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`b${i}`, host(`b${i}`, rising(i * 0.0005))]));
    fleet.c = host('c', 0.01, { dropAfter: 0.04 });
    const m = run('paired', fleet, ['c']).metrics[0]!;
    assert.equal(m.verdict, Verdict.VERDICT_PASS, m.reason);
    assert.ok(Math.abs(m.effect) < 1e-9);
  });

  it('a burst in one interval does not move a host change', () => {
    const fleet = { ...baseline(), c: host('c', 0.01, { dropAfter: 0.01 }) };
    // One interval of the canary during the step at a 60 % drop rate.
    const burst = fleet.c.map((r) => structuredClone(r));
    for (const r of burst) if (r.timestampMs >= FROM + 5000) r.attachments[0]!.stackRxPackets -= 600;
    assert.equal(run('paired', { ...fleet, c: burst }, ['c']).verdict, Verdict.VERDICT_PASS);
  });

  it('without pre-swap samples from any canary host (a new host), compares cohorts and says so', () => {
    const fresh = host('c', 0.05, { dropAfter: 0.05 }).filter((r) => r.timestampMs >= FROM);
    const m = run('paired', { ...baseline(), c: fresh }, ['c']).metrics[0]!;
    assert.equal(m.test, 'kayenta');
    assert.equal(m.verdict, Verdict.VERDICT_FAIL);
    assert.match(m.reason, /no canary host has samples from before the step, compared as cohorts \(kayenta\): shift/);
  });

  it('leaves out canary hosts without pre-swap samples when others have them, and names how many', () => {
    const fresh = host('n', 0.05, { dropAfter: 0.05 }).filter((r) => r.timestampMs >= FROM);
    const m = run('paired', { ...baseline(), c: host('c', 0.01, { dropAfter: 0.01 }), n: fresh }, ['c', 'n']).metrics[0]!;
    assert.equal(m.test, 'paired');
    assert.equal(m.verdict, Verdict.VERDICT_PASS, m.reason);
    assert.equal(m.canarySamples, 20, 'both hosts samples count towards minSamples');
    assert.match(m.reason, /; 1 canary host\(s\) without samples from before the step left out$/);
  });
});
