import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HostPhase, RolloutPhase, RolloutVerb, Verdict, type Rollout, type RolloutRequest } from '../../proto/gen/bpfleet/v1/rollout.js';
import { describe as describeEvent, endedStep } from './events.js';
import { reconcile, REQUEST_OUTCOMES_KEPT } from './reconcile.js';
import { applyRequest, pendingRequests } from './requests.js';
import { analyzer, canaryDone, fleet, hostOf, hostsIn, neverAnalyze, OLD, recordAll, rolloutOf, step, T0, TARGET, type Pass } from './rollouts.fixture.js';
import type { HostView } from './steps.js';
import { emptyStatus, verbName } from './vocabulary.js';

const H = HostPhase;
const P = RolloutPhase;

describe('reconcile: operator requests', () => {
  const spec = { steps: [{ canary: 1 }, { bake: '10s' }, { percent: 50 }, { pause: {} }, { percent: 100 }], analysis: { interval: '2s' } };
  let seq = 0;
  const req = (verb: RolloutVerb, actor = 'alice', reason = ''): RolloutRequest =>
    ({ seq: ++seq, verb, actor, at: new Date(T0).toISOString(), reason });
  const withRequests = (rollout: Rollout, hosts: HostView[], now: number, requests: RolloutRequest[], analyze: Pass['analyze'] = neverAnalyze) =>
    reconcile({ rollout, target: TARGET, hosts, now, analyze, requests });

  it(`keeps the outcomes of the newest ${REQUEST_OUTCOMES_KEPT} requests`, () => {
    const hosts = fleet(4);
    const r = canaryDone(spec, hosts);
    const many = Array.from({ length: 45 }, (_, i) => req(i % 2 ? RolloutVerb.ROLLOUT_VERB_RESUME : RolloutVerb.ROLLOUT_VERB_PAUSE));
    const d = withRequests(r, hosts, T0 + 1, many);
    assert.equal(d.rollout.status!.observedRequest, many.at(-1)!.seq);
    assert.deepEqual(d.rollout.status!.requestOutcomes.map((o) => o.seq), many.slice(-REQUEST_OUTCOMES_KEPT).map((q) => q.seq));
  });

  it('pause stops new applies mid-wave; resume sends them again', () => {
    const hosts = fleet(6);
    const planned = step({ rollout: rolloutOf({ steps: [{ percent: 100 }], maxUnavailable: 2 }), hosts, now: T0 }).rollout;
    const first = step({ rollout: planned, hosts, now: T0 });
    assert.equal(first.actions.length, 2);
    const halfway = recordAll(first.rollout, first.actions, T0 + 1);

    const pause = req(RolloutVerb.ROLLOUT_VERB_PAUSE, 'alice', 'looks odd');
    const paused = withRequests(halfway, hosts, T0 + 2, [pause]);
    assert.equal(paused.rollout.status!.phase, P.ROLLOUT_PHASE_PAUSED);
    assert.equal(paused.rollout.status!.observedRequest, pause.seq);
    assert.equal(paused.rollout.status!.message, 'paused by alice (looks odd): resume to continue');
    assert.deepEqual(paused.actions, []);
    assert.deepEqual(paused.events.map(describeEvent), ['paused by alice (looks odd): resume to continue']);
    // The same request is not acted on twice, and a paused rollout waits.
    const still = withRequests(paused.rollout, hosts, T0 + 60_000, [pause]);
    assert.deepEqual(still.rollout, paused.rollout);
    assert.deepEqual(still.actions, []);

    const resume = req(RolloutVerb.ROLLOUT_VERB_RESUME, 'bob');
    const resumed = withRequests(paused.rollout, hosts, T0 + 60_001, [pause, resume]);
    assert.equal(resumed.rollout.status!.phase, P.ROLLOUT_PHASE_PROGRESSING);
    assert.equal(resumed.rollout.status!.observedRequest, resume.seq);
    assert.equal(resumed.actions.length, 2, 'the next two hosts go out in the same pass');
    assert.ok(resumed.actions.every((a) => hostOf(halfway, a.host).phase === H.HOST_PHASE_PENDING));
  });

  it('resume goes past a pause step; a pause step resumed is not paused again', () => {
    const hosts = fleet(4);
    let r = step({ rollout: rolloutOf({ steps: [{ canary: 1 }, { pause: {} }, { percent: 100 }] }), hosts, now: T0 }).rollout;
    const d = step({ rollout: r, hosts, now: T0 });
    r = recordAll(d.rollout, d.actions, T0);
    r = step({ rollout: r, hosts, now: T0 }).rollout;
    r = step({ rollout: r, hosts, now: T0 }).rollout;
    assert.equal(r.status!.phase, P.ROLLOUT_PHASE_PAUSED);
    assert.equal(r.status!.step, 1);
    const resume = req(RolloutVerb.ROLLOUT_VERB_RESUME, 'carol');
    const resumed = withRequests(r, hosts, T0 + 5000, [resume]);
    assert.equal(resumed.rollout.status!.phase, P.ROLLOUT_PHASE_PROGRESSING);
    assert.equal(resumed.rollout.status!.step, 2);
    assert.equal(resumed.rollout.status!.stepStartedAt, new Date(T0 + 5000).toISOString());
    assert.match(resumed.rollout.status!.message, /^resumed by carol; now step 3\/3: percent 100%/);
    assert.equal(resumed.actions.length, 1, 'the last wave starts at once');
  });

  it('promote skips the remaining bake, analysis and pause steps but keeps maxUnavailable', () => {
    const hosts = fleet(6);
    const r = canaryDone(spec, hosts);
    const promote = req(RolloutVerb.ROLLOUT_VERB_PROMOTE, 'dave', 'hotfix');
    let d = withRequests(r, hosts, T0 + 1000, [promote]);
    assert.equal(d.rollout.status!.promoted, true);
    assert.ok(d.events.map(describeEvent).includes('promoted by dave (hotfix): remaining bake, analysis and pause steps are skipped'));
    assert.equal(d.rollout.status!.step, 2, 'the bake at step 2 is skipped without waiting for it');
    assert.ok(d.events.map(describeEvent).some((e) => e.startsWith('bake 10s skipped (promoted)')));
    let now = T0 + 1000;
    for (let pass = 0; pass < 50 && d.rollout.status!.phase === P.ROLLOUT_PHASE_PROGRESSING; pass++) {
      assert.ok(d.actions.length <= 1, 'maxUnavailable still holds');
      const next = recordAll(d.rollout, d.actions, now);
      d = withRequests(next, hosts, ++now, [promote]);
    }
    assert.equal(d.rollout.status!.phase, P.ROLLOUT_PHASE_SUCCEEDED);
    assert.equal(d.rollout.status!.analyses.length, 0, 'no analysis ran');
    assert.equal(now - T0 - 1000 < 50, true, 'nothing waited for a bake');
  });

  it('promote of a rollout paused at a pause step also resumes it', () => {
    const hosts = fleet(3);
    let r = step({ rollout: rolloutOf({ steps: [{ pause: {} }, { bake: '1h' }, { percent: 100 }] }), hosts, now: T0 }).rollout;
    r = step({ rollout: r, hosts, now: T0 }).rollout;
    assert.equal(r.status!.phase, P.ROLLOUT_PHASE_PAUSED);
    const d = withRequests(r, hosts, T0 + 1, [req(RolloutVerb.ROLLOUT_VERB_PROMOTE)]);
    assert.equal(d.rollout.status!.phase, P.ROLLOUT_PHASE_PROGRESSING);
    assert.equal(d.rollout.status!.step, 2, 'past the pause and the bake');
    assert.equal(d.requeueAfterMs, 0);
    assert.equal(step({ rollout: d.rollout, hosts, now: T0 + 2 }).actions.length, 1, 'and the next pass starts the wave');
  });

  it('abort rolls back every updated host, then ends ABORTED rather than ROLLED_BACK', () => {
    const hosts = fleet(6);
    const r = canaryDone({ ...spec, steps: [{ canary: 2 }, { bake: '10s' }, { percent: 100 }], maxUnavailable: 2 }, hosts);
    const updated = hostsIn(r, H.HOST_PHASE_UPDATED);
    assert.equal(updated.length, 2);
    const abort = req(RolloutVerb.ROLLOUT_VERB_ABORT, 'erin', 'wrong version');
    const d = withRequests(r, hosts, T0 + 3000, [abort]);
    assert.equal(d.rollout.status!.phase, P.ROLLOUT_PHASE_ROLLING_BACK);
    assert.equal(d.rollout.status!.aborted, true);
    assert.deepEqual(d.actions.map((a) => a.host).sort(), [...updated].sort(), 'rollback applies go out in the same pass');
    for (const a of d.actions) assert.deepEqual([a.purpose, a.module, a.expectedDigest], ['rollback', OLD, TARGET.digest]);
    const restored = recordAll(d.rollout, d.actions, T0 + 3001);
    const done = withRequests(restored, hosts, T0 + 3002, [abort]);
    assert.equal(done.rollout.status!.phase, P.ROLLOUT_PHASE_ABORTED);
    assert.equal(done.rollout.status!.message, 'aborted by erin (wrong version)');
    assert.equal(hostsIn(done.rollout, H.HOST_PHASE_ROLLED_BACK).length, 2);
  });

  it('abort before planning ends ABORTED without touching a host', () => {
    const d = withRequests(rolloutOf(), fleet(3), T0, [req(RolloutVerb.ROLLOUT_VERB_ABORT, 'frank')]);
    assert.equal(d.rollout.status!.phase, P.ROLLOUT_PHASE_ABORTED);
    assert.match(d.rollout.status!.message, /aborted by frank before any host was touched/);
    assert.deepEqual(d.actions, []);
    assert.deepEqual(d.rollout.status!.hosts, []);
  });

  it('a request that no longer applies is recorded as seen and changes nothing else', () => {
    const hosts = fleet(3);
    const r = step({ rollout: rolloutOf(), hosts, now: T0 }).rollout;
    const resume = req(RolloutVerb.ROLLOUT_VERB_RESUME, 'gina');
    const d = withRequests(r, hosts, T0 + 1, [resume]);
    assert.equal(d.rollout.status!.phase, P.ROLLOUT_PHASE_PROGRESSING);
    assert.equal(d.rollout.status!.observedRequest, resume.seq);
    assert.ok(d.events.map(describeEvent).includes(`resume by gina changed nothing: rollout r-1 is not paused (progressing)`));

    const finished = structuredClone(r);
    finished.status!.phase = P.ROLLOUT_PHASE_SUCCEEDED;
    const late = withRequests(finished, hosts, T0 + 2, [req(RolloutVerb.ROLLOUT_VERB_ABORT)]);
    assert.equal(late.rollout.status!.phase, P.ROLLOUT_PHASE_SUCCEEDED, 'a final phase never moves');
    assert.deepEqual(late.actions, []);
  });

  it('requests are acted on in sequence order, whatever order they are listed in', () => {
    const hosts = fleet(3);
    const r = step({ rollout: rolloutOf({ steps: [{ percent: 100 }] }), hosts, now: T0 }).rollout;
    const pause = req(RolloutVerb.ROLLOUT_VERB_PAUSE);
    const resume = req(RolloutVerb.ROLLOUT_VERB_RESUME);
    const d = withRequests(r, hosts, T0 + 1, [resume, pause]);
    assert.equal(d.rollout.status!.phase, P.ROLLOUT_PHASE_PROGRESSING);
    assert.equal(d.rollout.status!.observedRequest, resume.seq);
    assert.equal(d.events.length >= 2, true);
    assert.match(describeEvent(d.events[0]!), /^paused by/);
    assert.match(describeEvent(d.events[1]!), /^resumed by/);
  });

  it('a promote that lands just after a failing analysis is recorded as not applied, with why', () => {
    const hosts = fleet(3);
    const r = canaryDone({ steps: [{ canary: 1 }, { bake: '1s' }, { percent: 100 }] }, hosts);
    const failing = reconcile({ rollout: r, target: TARGET, hosts, now: T0 + 1000, analyze: analyzer(Verdict.VERDICT_FAIL).analyze }).rollout;
    assert.equal(failing.status!.phase, P.ROLLOUT_PHASE_ROLLING_BACK);
    const promote = req(RolloutVerb.ROLLOUT_VERB_PROMOTE, 'gina');
    const pause = req(RolloutVerb.ROLLOUT_VERB_PAUSE, 'gina');
    const d = withRequests(failing, hosts, T0 + 1001, [promote]);
    assert.equal(d.rollout.status!.observedRequest, promote.seq);
    assert.deepEqual(d.rollout.status!.requestOutcomes, [{
      seq: promote.seq, verb: RolloutVerb.ROLLOUT_VERB_PROMOTE, applied: false, reason: 'ROLLING_BACK',
      message: `rollout ${r.id} is rolling back and can only finish (abort ends its retries)`,
    }]);
    const again = withRequests(d.rollout, hosts, T0 + 1002, [promote, pause]);
    assert.deepEqual(again.rollout.status!.requestOutcomes.map((o) => [o.seq, o.applied]), [[promote.seq, false], [pause.seq, false]], 'each request once, in order');
  });

  it('an applied request is recorded with its words', () => {
    const hosts = fleet(3);
    const r = canaryDone({ steps: [{ canary: 1 }, { bake: '10s' }, { percent: 100 }] }, hosts);
    const promote = req(RolloutVerb.ROLLOUT_VERB_PROMOTE, 'hal');
    const d = withRequests(r, hosts, T0 + 1, [promote]);
    assert.deepEqual(d.rollout.status!.requestOutcomes.map((o) => [o.seq, o.applied, o.reason]), [[promote.seq, true, '']]);
    assert.match(d.rollout.status!.requestOutcomes[0]!.message, /^promoted by hal/);
  });

  it('a paused rollout whose in-flight apply failed still rolls back', () => {
    const hosts = fleet(4);
    const planned = step({ rollout: rolloutOf({ steps: [{ percent: 100 }] }), hosts, now: T0 }).rollout;
    const first = step({ rollout: planned, hosts, now: T0 });
    const paused = withRequests(first.rollout, hosts, T0 + 1, [req(RolloutVerb.ROLLOUT_VERB_PAUSE)]).rollout;
    const failed = recordAll(paused, first.actions, T0 + 2, false);
    const d = step({ rollout: failed, hosts, now: T0 + 3 });
    assert.equal(d.rollout.status!.phase, P.ROLLOUT_PHASE_ROLLING_BACK);
    assert.match(d.rollout.status!.message, /apply failed on/);
  });
});

describe('applyRequest: what the API refuses up front', () => {
  const req = (verb: RolloutVerb): RolloutRequest => ({ seq: 1, verb, actor: 'a', at: '', reason: '' });
  const at = (phase: RolloutPhase) => {
    const r = step({ rollout: rolloutOf(), hosts: fleet(2), now: T0 }).rollout;
    r.status!.phase = phase;
    return r;
  };
  const cases: [RolloutPhase, RolloutVerb, string][] = [
    [P.ROLLOUT_PHASE_SUCCEEDED, RolloutVerb.ROLLOUT_VERB_PAUSE, 'refused:ROLLOUT_FINISHED'],
    [P.ROLLOUT_PHASE_ABORTED, RolloutVerb.ROLLOUT_VERB_ABORT, 'refused:ROLLOUT_FINISHED'],
    [P.ROLLOUT_PHASE_ROLLING_BACK, RolloutVerb.ROLLOUT_VERB_ABORT, 'applied'],
    [P.ROLLOUT_PHASE_ROLLING_BACK, RolloutVerb.ROLLOUT_VERB_PROMOTE, 'refused:ROLLING_BACK'],
    [P.ROLLOUT_PHASE_PROGRESSING, RolloutVerb.ROLLOUT_VERB_RESUME, 'refused:NOT_PAUSED'],
    [P.ROLLOUT_PHASE_PAUSED, RolloutVerb.ROLLOUT_VERB_PAUSE, 'unchanged'],
    [P.ROLLOUT_PHASE_PAUSED, RolloutVerb.ROLLOUT_VERB_RESUME, 'applied'],
    [P.ROLLOUT_PHASE_PROGRESSING, RolloutVerb.ROLLOUT_VERB_PAUSE, 'applied'],
    [P.ROLLOUT_PHASE_PROGRESSING, RolloutVerb.ROLLOUT_VERB_ABORT, 'applied'],
    [P.ROLLOUT_PHASE_PAUSED, RolloutVerb.ROLLOUT_VERB_ABORT, 'applied'],
  ];
  for (const [phase, verb, expected] of cases) {
    it(`${verbName(verb)} when ${RolloutPhase[phase]}: ${expected}`, () => {
      const outcome = applyRequest(at(phase), req(verb), T0);
      assert.equal(outcome.kind === 'refused' ? `refused:${outcome.reason}` : outcome.kind, expected);
    });
  }

  it('promote twice changes nothing the second time', () => {
    const r = at(P.ROLLOUT_PHASE_PROGRESSING);
    assert.equal(applyRequest(r, req(RolloutVerb.ROLLOUT_VERB_PROMOTE), T0).kind, 'applied');
    assert.equal(applyRequest(r, req(RolloutVerb.ROLLOUT_VERB_PROMOTE), T0).kind, 'unchanged');
  });

  it('pendingRequests keeps only requests after the observed one, in order', () => {
    const s = { ...emptyStatus(), observedRequest: 2 };
    const rs = [3, 1, 5, 2, 4].map((n) => ({ ...req(RolloutVerb.ROLLOUT_VERB_PAUSE), seq: n }));
    assert.deepEqual(pendingRequests(s, rs).map((r) => r.seq), [3, 4, 5]);
  });
});

describe('requests: which step they end', () => {
  const req = (verb: RolloutVerb): RolloutRequest => ({ seq: 1, verb, actor: 'a', at: '', reason: '' });

  it('resuming past a pause step ends it as passed, paused time included', () => {
    let r = step({ rollout: rolloutOf({ steps: [{ pause: {} }, { percent: 100 }] }), hosts: fleet(2), now: T0 }).rollout;
    r = step({ rollout: r, hosts: fleet(2), now: T0 }).rollout;
    const outcome = applyRequest(r, req(RolloutVerb.ROLLOUT_VERB_RESUME), T0 + 60_000);
    assert.equal(outcome.kind, 'applied');
    assert.deepEqual(outcome.kind === 'applied' && endedStep(outcome.event), { step: 0, kind: 'pause', outcome: 'passed', durationMs: 60_000 });
  });

  it('aborting a progressing rollout ends its step as failed; a paused one ends none', () => {
    const r = canaryDone({ steps: [{ canary: 1 }, { bake: '10s' }, { percent: 100 }] }, fleet(3));
    const progressing = applyRequest(structuredClone(r), req(RolloutVerb.ROLLOUT_VERB_ABORT), T0 + 4000);
    assert.deepEqual(progressing.kind === 'applied' && endedStep(progressing.event), { step: 1, kind: 'bake', outcome: 'failed', durationMs: 4000 });
    const paused = structuredClone(r);
    paused.status!.phase = P.ROLLOUT_PHASE_PAUSED;
    const outcome = applyRequest(paused, req(RolloutVerb.ROLLOUT_VERB_ABORT), T0 + 4000);
    assert.equal(outcome.kind === 'applied' && endedStep(outcome.event), undefined);
  });

  it('pause, and promote without a pause step to leave, end no step', () => {
    const r = canaryDone({ steps: [{ canary: 1 }, { bake: '10s' }, { percent: 100 }] }, fleet(3));
    for (const verb of [RolloutVerb.ROLLOUT_VERB_PAUSE, RolloutVerb.ROLLOUT_VERB_PROMOTE]) {
      const outcome = applyRequest(structuredClone(r), req(verb), T0 + 1000);
      assert.equal(outcome.kind === 'applied' && endedStep(outcome.event), undefined);
    }
  });
});
