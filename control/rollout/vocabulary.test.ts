import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HostPhase, RolloutPhase, RolloutVerb, Verdict, type Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import { emptyStatus, hostPhaseName, isFinal, isFinalPhase, phaseLabel, phaseName, stepKind, verbName, verbPast, verdictName } from './vocabulary.js';

const P = RolloutPhase;

describe('emptyStatus', () => {
  it('starts pending at step 0', () => {
    const s = emptyStatus();
    assert.equal(s.phase, P.ROLLOUT_PHASE_PENDING);
    assert.equal(s.step, 0);
    assert.deepEqual(s.hosts, []);
  });
});

describe('final phases', () => {
  it('succeeded, rolled back, failed and aborted are final; nothing else is', () => {
    const final = Object.values(RolloutPhase).filter(isFinalPhase);
    assert.deepEqual(final.sort(), [P.ROLLOUT_PHASE_ABORTED, P.ROLLOUT_PHASE_FAILED, P.ROLLOUT_PHASE_ROLLED_BACK, P.ROLLOUT_PHASE_SUCCEEDED]);
  });

  it('a rollout without a status has not started, so it is not final', () => {
    const r = { id: 'r', status: undefined } as Rollout;
    assert.equal(isFinal(r), false);
    assert.equal(isFinal({ ...r, status: { ...emptyStatus(), phase: P.ROLLOUT_PHASE_ABORTED } }), true);
  });
});

describe('names and labels', () => {
  it('people read spaces, metric and span attributes keep underscores', () => {
    assert.equal(phaseName(P.ROLLOUT_PHASE_ROLLING_BACK), 'rolling back');
    assert.equal(phaseLabel(P.ROLLOUT_PHASE_ROLLING_BACK), 'rolling_back');
    assert.equal(phaseLabel(undefined), 'unspecified');
    assert.equal(hostPhaseName(HostPhase.HOST_PHASE_ROLLED_BACK), 'rolled back');
    assert.equal(verdictName(Verdict.VERDICT_PASS), 'pass');
  });

  it('verbs have a name and a past tense', () => {
    assert.equal(verbName(RolloutVerb.ROLLOUT_VERB_PROMOTE), 'promote');
    assert.deepEqual([RolloutVerb.ROLLOUT_VERB_PAUSE, RolloutVerb.ROLLOUT_VERB_RESUME, RolloutVerb.ROLLOUT_VERB_PROMOTE, RolloutVerb.ROLLOUT_VERB_ABORT].map(verbPast),
      ['paused', 'resumed', 'promoted', 'aborted']);
    assert.equal(verbPast(RolloutVerb.ROLLOUT_VERB_UNSPECIFIED), 'unspecified');
  });

  it('step kinds: bakeMs is "bake", past the last step is the final wave', () => {
    assert.equal(stepKind({ kind: { $case: 'bakeMs', value: 1000 } }), 'bake');
    assert.equal(stepKind({ kind: { $case: 'percent', value: 50 } }), 'percent');
    assert.equal(stepKind(undefined), 'final_wave');
  });
});
