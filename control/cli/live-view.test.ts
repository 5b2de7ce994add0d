import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HostPhase, RolloutPhase, Verdict, type HostProgress, type Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import { toRolloutSpec } from '../rollout/spec.js';
import { emptyStatus } from '../rollout/vocabulary.js';
import { LivePainter, liveView, progressBar, statusKey, statusLine } from './live-view.js';

const H = HostPhase;
const T = (clock: string) => Date.parse(`2026-01-01T${clock}.000Z`);

function host(name: string, wave: number, phase: HostPhase): HostProgress {
  return { host: name, wave, phase, previousDigest: '', previousVersion: '1.0.0', message: '', progId: 0, detail: '', rollbackAttempts: 0 };
}

function rollout(over: Partial<NonNullable<Rollout['status']>> = {}): Rollout {
  return {
    id: 'r-7',
    spec: toRolloutSpec({ module: 'pass-counter', version: '2.0.0', attachment: 'xdp:eth0', selector: { role: 'edge' }, steps: [{ canary: 1 }, { bake: '10s' }, { percent: 100 }], analysis: { inconclusiveLimit: 5 } }),
    status: {
      ...emptyStatus(),
      phase: RolloutPhase.ROLLOUT_PHASE_PROGRESSING,
      digest: `sha256:${'ab'.repeat(32)}`,
      step: 1,
      stepStartedAt: '2026-01-01T10:00:00.000Z',
      updatedAt: '2026-01-01T10:00:00.000Z',
      hosts: [host('h1', 0, H.HOST_PHASE_UPDATED), host('h2', 3, H.HOST_PHASE_UPDATING), host('h3', 3, H.HOST_PHASE_PENDING), host('h4', 3, H.HOST_PHASE_PENDING)],
      ...over,
    },
    createdAt: '2026-01-01T09:59:58.000Z',
    createdBy: 'alice',
    undoOf: '',
  };
}

describe('progressBar', () => {
  it('fills by updated hosts, shades those in flight, and keeps its width', () => {
    const hosts = [host('a', 0, H.HOST_PHASE_UPDATED), host('b', 0, H.HOST_PHASE_UPDATING), host('c', 0, H.HOST_PHASE_PENDING), host('d', 0, H.HOST_PHASE_PENDING)];
    assert.equal(progressBar(hosts, 8), '[██▒▒░░░░]');
    assert.equal(progressBar(hosts.map((h) => ({ ...h, phase: H.HOST_PHASE_UPDATED })), 8), '[████████]');
    assert.equal(progressBar([host('a', 0, H.HOST_PHASE_FAILED), host('b', 0, H.HOST_PHASE_PENDING)], 4), '[✗✗░░]');
    assert.equal(progressBar([], 4), '[░░░░]');
  });
});

describe('liveView', () => {
  it('shows the steps with the current one marked, the bake time left, and a bar per wave', () => {
    const lines = liveView(rollout(), Date.parse('2026-01-01T10:00:06.500Z'));
    assert.equal(lines[0], 'rollout r-7  pass-counter@2.0.0 (abababababab) on xdp:eth0, role=edge');
    assert.equal(lines[1], 'PROGRESSING');
    assert.deepEqual(lines.slice(2, 6), ['steps', '  ✓ 1. canary 1', '  ▶ 2. bake 10s  (baking, 3.5s left)', '    3. percent 100%']);
    assert.equal(lines[6], 'waves');
    assert.match(lines[7]!, /^ {2}step 1 {2}\[█{24}\] 1\/1 updated$/);
    assert.match(lines[8]!, /^ {2}last {4}\[█{0}▒{8}░{16}\] 0\/3 updated, 1 updating$/);
  });

  it('says when the bake is over and the analysis holds, with the count against its limit', () => {
    const lines = liveView(rollout({ inconclusiveInARow: 2 }), T('10:00:30'));
    assert.ok(lines.includes('  ▶ 2. bake 10s  (analysing, 2 inconclusive of 5 tolerated)'), lines.join('\n'));
  });

  it('shows the latest verdicts with the numbers behind them and the hosts left out', () => {
    const summary = (median: number) => ({ median, iqr: 0.01, mean: median, samples: 3, outliers: 0 });
    const metric = { metric: 'drop_rate', canary: 0.5, baseline: 0.001, verdict: Verdict.VERDICT_FAIL, reason: 'too high', canarySamples: 9, baselineSamples: 27,
      canarySummary: summary(0.5), baselineSummary: summary(0.001), test: 'mann-whitney', effect: 0.499, limit: 0.01, pValue: 0.004, alpha: 0.05 };
    const analyses = Array.from({ length: 6 }, (_, i) => ({ step: 1, verdict: Verdict.VERDICT_INCONCLUSIVE, metrics: [], at: `2026-01-01T10:00:1${i}.000Z`, summary: '', staleHosts: [] }));
    analyses.push({ step: 1, verdict: Verdict.VERDICT_FAIL, metrics: [metric], at: '2026-01-01T10:00:20.000Z', summary: '', staleHosts: ['h3'] } as never);
    const lines = liveView(rollout({ analyses }), T('10:00:21'));
    const from = lines.indexOf('analysis');
    assert.ok(from > 0);
    assert.equal(lines.slice(from).filter((l) => /^ {2}\d\d:\d\d:\d\d step/.test(l)).length, 4, 'only the latest few');
    assert.deepEqual(lines.slice(-6), [
      '  10:00:20 step 2 FAIL',
      '    drop_rate: canary 0.5 (9) vs baseline 0.001 (27) → fail: too high',
      '      canary   median 0.5  IQR 0.01  mean 0.5  n=3',
      '      baseline median 0.001  IQR 0.01  mean 0.001  n=3',
      '      test: mann-whitney — increase +0.499 vs limit +0.01, p=0.004 vs α 0.05',
      '    left out (no recent telemetry): h3',
    ]);
  });

  it('marks a paused step and flags promoted, aborted and undo rollouts', () => {
    const paused = liveView({ ...rollout({ phase: RolloutPhase.ROLLOUT_PHASE_PAUSED, promoted: true, message: 'paused by bob: resume to continue' }), undoOf: 'r-6' }, T('10:00:01'));
    assert.equal(paused[1], 'PAUSED [promoted, undoes r-6]  paused by bob: resume to continue');
    assert.ok(paused.includes('  ‖ 2. bake 10s'));
    const done = liveView(rollout({ phase: RolloutPhase.ROLLOUT_PHASE_SUCCEEDED, step: 3 }), T('10:01:00'));
    assert.ok(done.filter((l) => /^ {2}✓/.test(l)).length === 3);
  });
});

describe('statusLine and statusKey', () => {
  it('one line with the phase, the step and host counts', () => {
    assert.equal(statusLine(rollout({ message: 'canary 1 done' })), '[10:00:00] progressing step 2/3 (bake 10s); 1/4 updated, 1 updating — canary 1 done');
    assert.equal(statusLine(rollout({ phase: RolloutPhase.ROLLOUT_PHASE_SUCCEEDED, step: 3, message: 'all 4 hosts run pass-counter@2.0.0' })), '[10:00:00] succeeded; 1/4 updated, 1 updating — all 4 hosts run pass-counter@2.0.0');
  });

  it('the key changes with what the line shows, not with the clock', () => {
    const a = rollout();
    assert.equal(statusKey(a), statusKey({ ...a, status: { ...a.status!, updatedAt: '2026-01-01T11:00:00.000Z' } }));
    assert.notEqual(statusKey(a), statusKey(rollout({ step: 2 })));
    assert.notEqual(statusKey(a), statusKey(rollout({ hosts: a.status!.hosts.map((h) => ({ ...h, phase: H.HOST_PHASE_UPDATED })) })));
  });
});

describe('LivePainter', () => {
  it('draws the first frame as is, then moves back over it and clears before the next', () => {
    const out: string[] = [];
    const painter = new LivePainter({ write: (s: string) => out.push(s), columns: 80 });
    painter.paint(['a', 'b', 'c']);
    painter.paint(['d']);
    painter.paint(['e', 'f']);
    assert.deepEqual(out, ['a\nb\nc\n', '\x1b[3F\x1b[Jd\n', '\x1b[1F\x1b[Je\nf\n']);
  });

  it('cuts lines to the terminal width so none wraps and throws the count off', () => {
    const out: string[] = [];
    const painter = new LivePainter({ write: (s: string) => out.push(s), columns: 30 });
    painter.paint(['x'.repeat(100), '█'.repeat(40)]);
    const [first, second] = out[0]!.split('\n');
    assert.equal([...first!].length, 29);
    assert.ok(first!.endsWith('…'));
    assert.equal([...second!].length, 29);
    // A terminal of unknown width (0 columns) is treated as 80.
    const unknown: string[] = [];
    new LivePainter({ write: (s: string) => unknown.push(s), columns: 0 }).paint(['y'.repeat(100)]);
    assert.equal([...unknown[0]!.trimEnd()].length, 79);
  });
});
