import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RolloutPhase, RolloutVerb, Verdict, type Step } from '../../proto/gen/bpfleet/v1/rollout.js';
import { describe as describeEvent, endedStep, type RolloutEvent, type StepEnd } from './events.js';

const canary: Step = { kind: { $case: 'canary', value: 1 } };
const bake: Step = { kind: { $case: 'bakeMs', value: 10_000 } };
const pause: Step = { kind: { $case: 'pause', value: true } };
const ended: StepEnd = { step: 0, kind: 'canary', outcome: 'passed', durationMs: 1500 };
const dave = { verb: RolloutVerb.ROLLOUT_VERB_PROMOTE, actor: 'dave', reason: 'hotfix' };

describe('describe: the words of each event', () => {
  const cases: [RolloutEvent, string][] = [
    [{ kind: 'planned', hosts: 3, waveSizes: [1, 2], shown: [{ host: 'a', wave: 0 }, { host: 'b', wave: 1 }, { host: 'c', wave: 1 }] },
      'planned 3 hosts: a→wave 0, b→wave 1, c→wave 1 (wave sizes 1/2)'],
    [{ kind: 'planned', hosts: 25, waveSizes: [1, 24], shown: [{ host: 'a', wave: 0 }] }, 'planned 25 hosts: a→wave 0 and 24 more (wave sizes 1/24)'],
    [{ kind: 'apply-sent', host: 'h1', wave: 2, module: 'm', version: '2.0.0' }, 'applying m@2.0.0 to h1 (wave 2)'],
    [{ kind: 'analysis', step: 1, verdict: Verdict.VERDICT_FAIL, summary: 'drop_rate too high' }, 'analysis at step 2: fail — drop_rate too high'],
    [{ kind: 'advanced', ended, from: canary, why: { by: 'wave-updated' }, next: bake, of: 3 }, 'canary 1 done; now step 2/3: bake 10s'],
    [{ kind: 'advanced', ended: { ...ended, step: 1 }, from: bake, why: { by: 'analysis', bakeMs: 10_000 }, next: null, of: 2 },
      'bake 10000ms passed analysis; now finishing the last wave'],
    [{ kind: 'advanced', ended, from: pause, why: { by: 'promotion' }, next: canary, of: 2 }, 'pause skipped (promoted); now step 2/2: canary 1'],
    [{ kind: 'advanced', ended, from: pause, why: { by: 'request', request: { verb: RolloutVerb.ROLLOUT_VERB_RESUME, actor: 'carol', reason: '' } }, next: canary, of: 2 },
      'resumed by carol; now step 2/2: canary 1'],
    [{ kind: 'advanced', ended, from: pause, why: { by: 'request', request: dave }, next: canary, of: 2 },
      'promoted by dave (hotfix): remaining bake, analysis and pause steps are skipped; now step 2/2: canary 1'],
    [{ kind: 'paused', step: 1 }, 'paused at step 2: resume to continue'],
    [{ kind: 'request', request: { verb: RolloutVerb.ROLLOUT_VERB_PAUSE, actor: 'alice', reason: 'looks odd' }, outcome: 'applied' }, 'paused by alice (looks odd): resume to continue'],
    [{ kind: 'request', request: dave, outcome: 'applied' }, 'promoted by dave (hotfix): remaining bake, analysis and pause steps are skipped'],
    [{ kind: 'request', request: { verb: RolloutVerb.ROLLOUT_VERB_RESUME, actor: 'gina', reason: 'x' }, outcome: 'refused', why: 'rollout r-1 is not paused (progressing)' },
      'resume by gina changed nothing: rollout r-1 is not paused (progressing)'],
    [{ kind: 'rolling-back', reason: 'analysis failed: stub' }, 'rolling back: analysis failed: stub'],
    [{ kind: 'restoring', host: 'h1', to: '1.0.0' }, 'restoring h1 to 1.0.0'],
    [{ kind: 'restoring', host: 'h2', to: '' }, 'restoring h2 to nothing'],
    [{ kind: 'finished', phase: RolloutPhase.ROLLOUT_PHASE_ROLLED_BACK, message: 'analysis failed: stub' }, 'rolled back: analysis failed: stub'],
    [{ kind: 'apply-result', host: 'h1', purpose: 'update', result: { ok: true, progId: 42 } }, 'h1: updated (prog 42)'],
    [{ kind: 'apply-result', host: 'h1', purpose: 'rollback', result: { ok: true, progId: 7 } }, 'h1: rolled back (prog 7)'],
    [{ kind: 'apply-result', host: 'h1', purpose: 'update', result: { ok: false, reason: 'VERIFIER_REJECTED', message: 'R1 invalid mem access' } },
      'h1: update failed: VERIFIER_REJECTED: R1 invalid mem access'],
    [{ kind: 'apply-ignored', host: 'stranger' }, 'ignored result for unplanned host stranger'],
  ];
  for (const [event, words] of cases) {
    it(`${event.kind}: ${words}`, () => assert.equal(describeEvent(event), words));
  }
});

describe('endedStep', () => {
  it('finds the step end on the transitions that carry one, and nothing elsewhere', () => {
    const failed: StepEnd = { step: 1, kind: 'bake', outcome: 'failed', durationMs: 3000 };
    assert.deepEqual(endedStep({ kind: 'advanced', ended, from: canary, why: { by: 'wave-updated' }, next: bake, of: 2 }), ended);
    assert.deepEqual(endedStep({ kind: 'rolling-back', reason: 'r', ended: failed }), failed);
    assert.deepEqual(endedStep({ kind: 'finished', phase: RolloutPhase.ROLLOUT_PHASE_FAILED, message: 'm', ended: failed }), failed);
    assert.equal(endedStep({ kind: 'rolling-back', reason: 'r' }), undefined);
    assert.equal(endedStep({ kind: 'paused', step: 1 }), undefined);
  });
});
