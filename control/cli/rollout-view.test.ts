import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HostPhase, MetricResult, RolloutPhase, Verdict, type HostProgress, type Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import { toRolloutSpec } from '../rollout/spec.js';
import { emptyStatus, hostPhaseName, phaseName, verdictName } from '../rollout/vocabulary.js';
import { changeLines, describeRollout, explainMetric } from './rollout-view.js';

const DIGEST = `sha256:${'ab'.repeat(32)}`;

function host(name: string, wave: number, phase: HostPhase, over: Partial<HostProgress> = {}): HostProgress {
  return { host: name, wave, phase, previousDigest: '', previousVersion: '1.0.0', message: '', progId: 0, detail: '', rollbackAttempts: 0, ...over };
}

function base(): Rollout {
  return {
    id: 'r-42',
    spec: toRolloutSpec({ module: 'pass-counter', version: '2.0.0', attachment: 'xdp:eth0', steps: [{ canary: 1 }, { bake: '10s' }, { percent: 100 }] }),
    status: { ...emptyStatus(), updatedAt: '2026-01-01T10:00:00.000Z' },
    createdAt: '2026-01-01T09:59:59.000Z',
    createdBy: 'alice@laptop',
    undoOf: '',
  };
}

/** `r` with its status changed by `f`, stamped at `clock` (HH:MM:SS). */
function next(r: Rollout, clock: string, f: (s: NonNullable<Rollout['status']>) => void): Rollout {
  const n = structuredClone(r);
  f(n.status!);
  n.status!.updatedAt = `2026-01-01T${clock}.000Z`;
  return n;
}

const planned = (r: Rollout) => next(r, '10:00:01', (s) => {
  s.phase = RolloutPhase.ROLLOUT_PHASE_PROGRESSING;
  s.digest = DIGEST;
  s.hosts = [host('h1', 0, HostPhase.HOST_PHASE_PENDING), host('h2', 2, HostPhase.HOST_PHASE_PENDING), host('h3', 3, HostPhase.HOST_PHASE_UPDATED, { message: 'already running the target version' })];
});

describe('changeLines', () => {
  it('introduces a rollout seen for the first time, without host lines for pending hosts', () => {
    const lines = changeLines(null, base());
    assert.deepEqual(lines, [
      'rollout r-42: pass-counter@2.0.0 on xdp:eth0',
      '  steps: canary 1 → bake 10s → percent 100%',
    ]);
  });

  it('prints the plan once, by wave, with hosts that need no update', () => {
    const r0 = base();
    const r1 = planned(r0);
    assert.deepEqual(changeLines(r0, r1), [
      '[10:00:01] planned 3 hosts (abababababab): wave 1: h1; wave 3: h2; wave 4: h3',
      '[10:00:01] PROGRESSING',
      '[10:00:01]   h3: updated — already running the target version',
    ]);
    assert.deepEqual(changeLines(r1, r1), [], 'nothing changed, nothing printed');
  });

  it('prints only the hosts whose phase changed', () => {
    const r1 = planned(base());
    const r2 = next(r1, '10:00:02', (s) => {
      s.hosts[0]!.phase = HostPhase.HOST_PHASE_UPDATED;
      s.hosts[0]!.progId = 77;
    });
    assert.deepEqual(changeLines(r1, r2), ['[10:00:02]   h1: updated (prog 77)']);
  });

  it('prefers the message to the program id', () => {
    const r1 = planned(base());
    const r2 = next(r1, '10:00:02', (s) => {
      s.hosts[1]!.phase = HostPhase.HOST_PHASE_FAILED;
      s.hosts[1]!.message = 'VERIFIER_REJECTED: invalid mem access';
      s.hosts[1]!.progId = 3;
    });
    assert.deepEqual(changeLines(r1, r2), ['[10:00:02]   h2: failed — VERIFIER_REJECTED: invalid mem access']);
  });

  it('prints a step change while progressing', () => {
    const r1 = planned(base());
    const r2 = next(r1, '10:00:03', (s) => {
      s.step = 1;
    });
    assert.deepEqual(changeLines(r1, r2), ['[10:00:03] step 2/3: bake 10s']);
  });

  it('prints only analyses not seen before, at their own time', () => {
    const run = (at: string, verdict: Verdict, summary: string) => ({ step: 1, verdict, metrics: [], at: `2026-01-01T${at}.000Z`, summary, staleHosts: [] });
    const r1 = next(planned(base()), '10:00:05', (s) => {
      s.analyses = [run('10:00:05', Verdict.VERDICT_INCONCLUSIVE, 'drop_rate: canary has 1 of 3 samples needed')];
    });
    const r2 = next(r1, '10:00:07', (s) => {
      s.analyses.push(run('10:00:06', Verdict.VERDICT_INCONCLUSIVE, 'one more'), run('10:00:07', Verdict.VERDICT_PASS, 'drop_rate: canary 0 vs baseline 0'));
    });
    assert.deepEqual(changeLines(r1, r2), [
      '[10:00:06] analysis (step 2): INCONCLUSIVE — one more',
      '[10:00:07] analysis (step 2): PASS — drop_rate: canary 0 vs baseline 0',
    ]);
  });

  it('prints only new analyses once the status keeps the newest and counts the rest', () => {
    const run = (at: string) => ({ step: 1, verdict: Verdict.VERDICT_INCONCLUSIVE, metrics: [], at: `2026-01-01T${at}.000Z`, summary: at, staleHosts: [] });
    const r1 = next(planned(base()), '10:00:05', (s) => {
      s.analyses = [run('10:00:03'), run('10:00:04'), run('10:00:05')];
      s.analysesDropped = 7;
    });
    // Two more ran; the two oldest kept were let go.
    const r2 = next(r1, '10:00:07', (s) => {
      s.analyses = [run('10:00:05'), run('10:00:06'), run('10:00:07')];
      s.analysesDropped = 9;
    });
    assert.deepEqual(changeLines(r1, r2), [
      '[10:00:06] analysis (step 2): INCONCLUSIVE — 10:00:06',
      '[10:00:07] analysis (step 2): INCONCLUSIVE — 10:00:07',
    ]);
  });

  it('prints the new phase with its message, but not a step line once the rollout left progressing', () => {
    const r1 = planned(base());
    const r2 = next(r1, '10:00:09', (s) => {
      s.step = 2;
      s.phase = RolloutPhase.ROLLOUT_PHASE_ROLLING_BACK;
      s.message = 'analysis failed: drop_rate too high';
    });
    assert.deepEqual(changeLines(r1, r2), ['[10:00:09] ROLLING BACK: analysis failed: drop_rate too high']);
  });
});

describe('changeLines: where the phase line goes', () => {
  it('a failed verdict comes before the rollback it caused', () => {
    const r1 = next(planned(base()), '10:00:02', (s) => {
      s.hosts[0]!.phase = HostPhase.HOST_PHASE_UPDATED;
    });
    const r2 = next(r1, '10:00:03', (s) => {
      s.analyses = [{ step: 1, verdict: Verdict.VERDICT_FAIL, metrics: [], at: '2026-01-01T10:00:03.000Z', summary: 'drop_rate: canary 1 is above the limit 0.05', staleHosts: [] }];
      s.phase = RolloutPhase.ROLLOUT_PHASE_ROLLING_BACK;
      s.message = 'analysis failed';
      s.hosts[0]!.phase = HostPhase.HOST_PHASE_ROLLING_BACK;
    });
    assert.deepEqual(changeLines(r1, r2), [
      '[10:00:03] analysis (step 2): FAIL — drop_rate: canary 1 is above the limit 0.05',
      '[10:00:03] ROLLING BACK: analysis failed',
      '[10:00:03]   h1: rolling back to 1.0.0',
    ]);
  });

  it('a phase that starts work comes before the host lines of that work', () => {
    const r1 = next(planned(base()), '10:00:02', (s) => {
      s.hosts[0]!.phase = HostPhase.HOST_PHASE_UPDATED;
    });
    const r2 = next(r1, '10:00:03', (s) => {
      s.phase = RolloutPhase.ROLLOUT_PHASE_ROLLING_BACK;
      s.message = 'analysis failed';
      s.hosts[0]!.phase = HostPhase.HOST_PHASE_ROLLING_BACK;
    });
    assert.deepEqual(changeLines(r1, r2), ['[10:00:03] ROLLING BACK: analysis failed', '[10:00:03]   h1: rolling back to 1.0.0']);
  });

  it('a final phase comes after the host lines that led to it', () => {
    const r1 = next(planned(base()), '10:00:02', (s) => {
      s.phase = RolloutPhase.ROLLOUT_PHASE_ROLLING_BACK;
      s.hosts[0]!.phase = HostPhase.HOST_PHASE_ROLLING_BACK;
    });
    const r2 = next(r1, '10:00:04', (s) => {
      s.phase = RolloutPhase.ROLLOUT_PHASE_ROLLED_BACK;
      s.message = 'analysis failed';
      s.hosts[0]!.phase = HostPhase.HOST_PHASE_ROLLED_BACK;
      s.hosts[0]!.progId = 12;
    });
    assert.deepEqual(changeLines(r1, r2), ['[10:00:04]   h1: rolled back (prog 12)', '[10:00:04] ROLLED BACK: analysis failed']);
  });
});

describe('describeRollout', () => {
  it('shows steps done, the current one, hosts and analyses', () => {
    const r = next(planned(base()), '10:00:10', (s) => {
      s.step = 1;
      s.hosts[0]!.phase = HostPhase.HOST_PHASE_UPDATED;
      s.analyses = [{
        step: 1, verdict: Verdict.VERDICT_PASS, at: '2026-01-01T10:00:10.000Z', summary: 's', staleHosts: [],
        metrics: [MetricResult.fromPartial({ metric: 'drop_rate', canary: 0.01, baseline: 0.02, verdict: Verdict.VERDICT_PASS, reason: 'fine', canarySamples: 5, baselineSamples: 9,
          canarySummary: { samples: 5, mean: 0.01, median: 0.01, iqr: 0.002, outliers: 1 },
          baselineSummary: { samples: 9, mean: 0.02, median: 0.02, iqr: 0.004, outliers: 0 },
          test: 'kayenta', effect: -0.01, limit: 0.005, pValue: 0.97, alpha: 0.01 })],
      }];
    });
    const text = describeRollout(r);
    assert.match(text, /^Rollout: {4}r-42$/m);
    assert.match(text, /^Module: {5}pass-counter@2\.0\.0 \(abababababab\)$/m);
    assert.match(text, /^Selector: {3}\(all hosts\)$/m);
    assert.match(text, /^ {2}✓ 1\. canary 1$/m);
    assert.match(text, /^ {2}▶ 2\. bake 10s$/m);
    assert.match(text, /^ {4}3\. percent 100%$/m);
    assert.match(text, /^ {2}h1 +wave 1 {2}updated +from 1\.0\.0$/m);
    assert.match(text, /^ {2}h3 +wave 4 {2}updated +from 1\.0\.0 {2}already running the target version$/m);
    assert.match(text, /^ {4}drop_rate: canary 0\.0100 \(5 samples\) vs baseline 0\.0200 \(9\) → pass: fine$/m);
    assert.match(text, /^ {6}canary {3}median 0\.01 {2}IQR 0\.002 {2}mean 0\.01 {2}n=5 \(\+1 outliers set aside\)$/m);
    assert.match(text, /^ {6}baseline median 0\.02 {2}IQR 0\.004 {2}mean 0\.02 {2}n=9$/m);
    assert.match(text, /^ {6}test: kayenta — increase -0\.01 vs limit \+0\.005, p=0\.97 vs α 0\.01$/m);
    assert.match(text, /^Created: {4}2026-01-01T09:59:59\.000Z by alice@laptop$/m);
  });
});

describe('explainMetric', () => {
  it('under the paired method, shows the cohorts\' per-host changes and counts hosts', () => {
    const m = MetricResult.fromPartial({
      metric: 'drop_rate', test: 'paired', effect: 0.012, limit: 0.005, pValue: 0.0003, alpha: 0.01,
      canarySummary: { samples: 5, mean: 0.012, median: 0.011, iqr: 0.002, outliers: 0 },
      baselineSummary: { samples: 95, mean: 0, median: 0.0001, iqr: 0.001, outliers: 0 },
    });
    assert.deepEqual(explainMetric(m), [
      '      canary Δ median 0.011  IQR 0.002  mean 0.012  n=5 hosts',
      '      baseline Δ median 0.0001  IQR 0.001  mean 0  n=95 hosts',
      '      test: paired — increase +0.012 vs limit +0.005, p=0.0003 vs α 0.01',
    ]);
  });
});

describe('names', () => {
  it('turn enum values into words', () => {
    assert.equal(phaseName(RolloutPhase.ROLLOUT_PHASE_ROLLED_BACK), 'rolled back');
    assert.equal(phaseName(undefined), 'unspecified');
    assert.equal(hostPhaseName(HostPhase.HOST_PHASE_ROLLING_BACK), 'rolling back');
    assert.equal(verdictName(Verdict.VERDICT_INCONCLUSIVE), 'inconclusive');
  });
});

describe('a host failure with a detail (verifier log)', () => {
  const LOG = '0: (61) r1 = *(u32 *)(r1 +0)\ninvalid access to packet, off=0 size=1';
  const failed = (r: Rollout) => next(r, '10:00:02', (s) => {
    s.hosts[0]!.phase = HostPhase.HOST_PHASE_FAILED;
    s.hosts[0]!.message = 'VERIFIER_REJECTED: R1 offset is outside of the packet';
    s.hosts[0]!.detail = LOG;
  });

  it('changeLines prints the detail under the failure once, not again at the rollback', () => {
    const r1 = planned(base());
    const r2 = failed(r1);
    assert.deepEqual(changeLines(r1, r2), [
      '[10:00:02]   h1: failed — VERIFIER_REJECTED: R1 offset is outside of the packet',
      '      | 0: (61) r1 = *(u32 *)(r1 +0)',
      '      | invalid access to packet, off=0 size=1',
    ]);
    const r3 = next(r2, '10:00:03', (s) => {
      s.hosts[0]!.phase = HostPhase.HOST_PHASE_ROLLED_BACK;
      s.hosts[0]!.message = '';
    });
    assert.deepEqual(changeLines(r2, r3), ['[10:00:03]   h1: rolled back']);
  });

  it('describeRollout prints it under its host', () => {
    const lines = describeRollout(failed(planned(base()))).split('\n');
    const at = lines.findIndex((l) => l.startsWith('  h1 '));
    assert.deepEqual(lines.slice(at + 1, at + 3), ['      | 0: (61) r1 = *(u32 *)(r1 +0)', '      | invalid access to packet, off=0 size=1']);
    assert.match(lines[at + 3]!, /^  h2 /);
  });
});

describe('describeRollout: operator marks', () => {
  it('shows a promotion, the rollout it undoes and the hosts an analysis left out', () => {
    const r = { ...planned(base()), undoOf: 'r-41' };
    r.status!.promoted = true;
    r.status!.analyses = [{ step: 1, verdict: Verdict.VERDICT_INCONCLUSIVE, metrics: [], at: '2026-01-01T10:00:09.000Z', summary: 's', staleHosts: ['h2', 'h3'] }];
    const text = describeRollout(r);
    assert.match(text, /^Phase: {6}progressing \[promoted\]/m);
    assert.match(text, /^Undoes: {5}r-41$/m);
    assert.match(text, /^ {4}left out \(no recent telemetry\): h2, h3$/m);
  });
});
