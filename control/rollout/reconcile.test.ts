import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HostPhase, RolloutPhase, RolloutVerb, Verdict, type AnalysisRun, type HostProgress, type Rollout, type RolloutRequest } from '../../proto/gen/bpfleet/v1/rollout.js';
import { recordApply, type ApplyAction } from './apply-results.js';
import { describe as describeEvent, endedStep } from './events.js';
import { reconcile, type Decision } from './reconcile.js';
import {
  analyzer,
  canaryDone,
  fleet,
  hostOf,
  hostsIn,
  hostView,
  neverAnalyze,
  OLD,
  recordAll,
  rolloutOf,
  step,
  T0,
  TARGET,
} from './rollouts.fixture.js';
import { ROLLBACK_MAX_ATTEMPTS, type AnalysisRequest, type HostView } from './steps.js';
import { planWaves } from './waves.js';

const H = HostPhase;
const P = RolloutPhase;

describe('reconcile: planning', () => {
  it('fails before touching a host when a bake would have no baseline and a metric has no max', () => {
    const d = step({ rollout: rolloutOf({ steps: [{ canary: 1 }, { bake: '1m' }] }), hosts: fleet(1), now: T0 });
    assert.equal(d.rollout.status!.phase, P.ROLLOUT_PHASE_FAILED);
    assert.deepEqual(d.actions, []);
    assert.equal(d.rollout.status!.message, 'no baseline: all 1 selected host is updated before step 2 (bake), so only an absolute limit can pass there; give drop_rate a max, or select more hosts');
    const withMax = step({ rollout: rolloutOf({ steps: [{ canary: 1 }, { bake: '1m' }], analysis: { metrics: [{ name: 'drop_rate', max: 0.01 }] } }), hosts: fleet(1), now: T0 });
    assert.equal(withMax.rollout.status!.phase, P.ROLLOUT_PHASE_PROGRESSING);
  });

  it('selects only hosts whose labels contain every selector entry', () => {
    const hosts = [
      hostView('edge-a', { labels: { role: 'edge', zone: 'eu' } }),
      hostView('edge-b', { labels: { role: 'edge', zone: 'us' } }),
      hostView('core-a', { labels: { role: 'core', zone: 'eu' } }),
      hostView('bare', { labels: {} }),
    ];
    const d = step({ rollout: rolloutOf({ selector: { role: 'edge', zone: 'eu' } }), hosts, now: T0 });
    assert.equal(d.rollout.status!.phase, P.ROLLOUT_PHASE_PROGRESSING);
    assert.deepEqual(d.rollout.status!.hosts.map((h) => h.host), ['edge-a']);
    assert.equal(d.rollout.status!.digest, TARGET.digest);
    assert.equal(d.rollout.status!.stepStartedAt, new Date(T0).toISOString());
    assert.equal(d.requeueAfterMs, 0, 'planning is followed at once by the first step');
    assert.deepEqual(d.actions, [], 'planning sends nothing by itself');
  });

  it('names at most 20 hosts in the planning event, however large the fleet', () => {
    const d = step({ rollout: rolloutOf(), hosts: fleet(25), now: T0 });
    const event = d.events.map(describeEvent).find((e) => e.startsWith('planned'))!;
    assert.match(event, /^planned 25 hosts: .* and 5 more \(wave sizes/);
    assert.equal(event.match(/→wave/g)?.length, 20);
    assert.equal(d.rollout.status!.hosts.length, 25, 'the status still holds every host');
  });

  it('an empty selector selects every host', () => {
    const d = step({ rollout: rolloutOf(), hosts: [hostView('x', { labels: {} }), hostView('y')], now: T0 });
    assert.deepEqual(d.rollout.status!.hosts.map((h) => h.host).sort(), ['x', 'y']);
  });

  it('fails with a message naming the selector when no host matches', () => {
    const d = step({ rollout: rolloutOf({ selector: { role: 'db' } }), hosts: fleet(3), now: T0 });
    assert.equal(d.rollout.status!.phase, P.ROLLOUT_PHASE_FAILED);
    assert.match(d.rollout.status!.message, /no registered host matches the selector \{"role":"db"\}/);
    assert.deepEqual(d.rollout.status!.hosts, []);
    assert.deepEqual(d.actions, []);
    assert.equal(d.requeueAfterMs, null);
  });

  it('fails when there are no hosts at all', () => {
    const d = step({ rollout: rolloutOf(), hosts: [], now: T0 });
    assert.equal(d.rollout.status!.phase, P.ROLLOUT_PHASE_FAILED);
    assert.match(d.rollout.status!.message, /no registered host matches/);
  });

  it('fails naming the hosts that lack the hook of the attachment', () => {
    const hosts = [
      hostView('new-kernel'),
      hostView('old-1', { capabilities: ['xdp'] }),
      hostView('old-2', { capabilities: ['xdp', 'tcx-egress'] }),
    ];
    const d = step({ rollout: rolloutOf({ attachment: 'tcx-ingress:eth0' }), hosts, now: T0 });
    assert.equal(d.rollout.status!.phase, P.ROLLOUT_PHASE_FAILED);
    assert.equal(d.rollout.status!.message, 'hosts cannot run tcx-ingress programs: old-1, old-2');
    assert.deepEqual(d.actions, []);
  });

  it('fails when a host runs another module on the attachment, which a rollback could not restore', () => {
    const hosts = [hostView('ok'), hostView('other', { running: { name: 'firewall', version: '7.0.0', digest: `sha256:${'f'.repeat(64)}` } })];
    const d = step({ rollout: rolloutOf(), hosts, now: T0 });
    assert.equal(d.rollout.status!.phase, P.ROLLOUT_PHASE_FAILED);
    assert.match(d.rollout.status!.message, /another module on xdp:eth0: other \(firewall@7\.0\.0\)/);
  });

  it('plans the same waves for the same rollout id whatever the order hosts are listed in', () => {
    const spec = { steps: [{ canary: 1 }, { bake: '10s' }, { percent: 50 }] };
    const hosts = fleet(10);
    const a = step({ rollout: rolloutOf(spec, 'same'), hosts, now: T0 }).rollout.status!.hosts;
    const b = step({ rollout: rolloutOf(spec, 'same'), hosts: [...hosts].reverse(), now: T0 + 5 }).rollout.status!.hosts;
    const waves = (hs: HostProgress[]) => Object.fromEntries(hs.map((h) => [h.host, h.wave]));
    assert.deepEqual(waves(a), waves(b));
    // 1 canary, then 50% of 10 = 5 in total (4 more), and the rest in the implicit last wave.
    const sizes = [0, 1, 2, 3].map((w) => a.filter((h) => h.wave === w).length);
    assert.deepEqual(sizes, [1, 0, 4, 5]);
    assert.deepEqual(a.map((h) => h.wave), [...a.map((h) => h.wave)].sort((x, y) => x - y), 'status lists hosts by wave');
  });

  it('spreads the canary role over the fleet across rollout ids', () => {
    const hosts = fleet(20);
    const canaries = new Set(['r-1', 'r-2', 'r-3', 'r-4', 'r-5', 'r-6'].map((id) =>
      step({ rollout: rolloutOf({}, id), hosts, now: T0 }).rollout.status!.hosts.find((h) => h.wave === 0)!.host));
    assert.ok(canaries.size > 1, `every id picked the same canary ${[...canaries]}`);
    // And the plan is the one waves.ts computes, not something reconcile makes up.
    const planned = step({ rollout: rolloutOf({}, 'r-3'), hosts, now: T0 }).rollout.status!.hosts;
    const expected = planWaves('r-3', rolloutOf().spec!.steps, hosts.map((h) => h.name));
    for (const h of planned) assert.equal(h.wave, expected.get(h.host));
  });

  it('marks hosts already on the target digest UPDATED and remembers what others ran', () => {
    const hosts = [hostView('done', { running: TARGET }), hostView('old'), hostView('empty', { running: null })];
    const s = step({ rollout: rolloutOf(), hosts, now: T0 }).rollout.status!;
    const by = (n: string) => s.hosts.find((h) => h.host === n)!;
    assert.equal(by('done').phase, H.HOST_PHASE_UPDATED);
    assert.equal(by('done').message, 'already running the target version');
    assert.equal(by('old').phase, H.HOST_PHASE_PENDING);
    assert.equal(by('old').previousDigest, OLD.digest);
    assert.equal(by('old').previousVersion, '1.0.0');
    assert.equal(by('empty').phase, H.HOST_PHASE_PENDING);
    assert.equal(by('empty').previousDigest, '');
  });

  it('never counts a host whose target program fails its agent\'s signature policy as already UPDATED', () => {
    const hosts = [hostView('adopted', { running: TARGET, unverified: 'UNSIGNED' }), hostView('old')];
    const s = step({ rollout: rolloutOf(), hosts, now: T0 }).rollout.status!;
    const adopted = s.hosts.find((h) => h.host === 'adopted')!;
    assert.equal(adopted.phase, H.HOST_PHASE_PENDING, 'its intent goes out, and the agent\'s policy decides');
    assert.equal(adopted.previousDigest, TARGET.digest);
  });

  it('does not modify the rollout it is given', () => {
    const input = rolloutOf();
    const copy = structuredClone(input);
    step({ rollout: input, hosts: fleet(3), now: T0 });
    assert.deepEqual(input, copy);
  });
});

describe('reconcile: update steps', () => {
  it('a canary step sends exactly maxUnavailable applies, all to its own wave', () => {
    const hosts = fleet(10);
    const planned = step({ rollout: rolloutOf({ steps: [{ canary: 3 }, { bake: '1m' }, { percent: 100 }], maxUnavailable: 2 }), hosts, now: T0 }).rollout;
    const wave0 = planned.status!.hosts.filter((h) => h.wave === 0).map((h) => h.host);
    assert.equal(wave0.length, 3);

    const d = step({ rollout: planned, hosts, now: T0 });
    assert.equal(d.actions.length, 2);
    for (const a of d.actions) {
      assert.ok(wave0.includes(a.host), `${a.host} is not in the canary wave`);
      assert.deepEqual(a, { kind: 'apply', host: a.host, module: TARGET, expectedDigest: OLD.digest, purpose: 'update' });
    }
    assert.deepEqual(hostsIn(d.rollout, H.HOST_PHASE_UPDATING).sort(), d.actions.map((a) => a.host).sort());
    assert.equal(hostsIn(d.rollout, H.HOST_PHASE_PENDING).length, 8);

    // Applies to hosts other than those already UPDATING (which a pass re-sends, see below).
    const fresh = (x: Decision, updating: string[]) => x.actions.filter((a) => !updating.includes(a.host));

    // While both are still updating the budget is used up: nothing new goes out.
    const busy = step({ rollout: d.rollout, hosts, now: T0 + 1 });
    assert.deepEqual(fresh(busy, d.actions.map((a) => a.host)), []);

    // One answers: exactly one more host of the canary wave, and still none of a later wave.
    const one = recordApply(d.rollout, d.actions[0]!, { ok: true, progId: 7 }, T0 + 2).rollout;
    const next = step({ rollout: one, hosts, now: T0 + 2 });
    assert.equal(fresh(next, [d.actions[1]!.host]).length, 1);
    const third = wave0.find((h) => !d.actions.some((a) => a.host === h))!;
    assert.equal(fresh(next, [d.actions[1]!.host])[0]!.host, third);
    assert.equal(next.rollout.status!.step, 0, 'the step is not done while a canary host is still updating');
  });

  it('never sends more applies than the wave has hosts', () => {
    const hosts = fleet(6);
    const planned = step({ rollout: rolloutOf({ steps: [{ canary: 1 }, { percent: 100 }], maxUnavailable: '100%' }), hosts, now: T0 }).rollout;
    const d = step({ rollout: planned, hosts, now: T0 });
    assert.equal(d.actions.length, 1);
    assert.equal(hostOf(d.rollout, d.actions[0]!.host).wave, 0);
  });

  it('expects the digest each host ran before, nothing for an empty attachment', () => {
    const hosts = [hostView('empty', { running: null })];
    const planned = step({ rollout: rolloutOf(), hosts, now: T0 }).rollout;
    const d = step({ rollout: planned, hosts, now: T0 });
    assert.equal(d.actions[0]!.expectedDigest, '');
  });

  it('advances to the next step once the wave is recorded updated', () => {
    const hosts = fleet(4);
    const planned = step({ rollout: rolloutOf({ steps: [{ canary: 1 }, { bake: '30s' }, { percent: 100 }] }), hosts, now: T0 }).rollout;
    const d = step({ rollout: planned, hosts, now: T0 });
    const recorded = recordApply(d.rollout, d.actions[0]!, { ok: true, progId: 42 }, T0 + 100);
    assert.equal(hostOf(recorded.rollout, d.actions[0]!.host).phase, H.HOST_PHASE_UPDATED);
    assert.equal(hostOf(recorded.rollout, d.actions[0]!.host).progId, 42);
    assert.match(describeEvent(recorded.event), /updated \(prog 42\)/);

    const next = step({ rollout: recorded.rollout, hosts, now: T0 + 500 });
    assert.equal(next.rollout.status!.step, 1);
    assert.equal(next.rollout.status!.stepStartedAt, new Date(T0 + 500).toISOString());
    assert.match(next.rollout.status!.message, /canary 1 done; now step 2\/3: bake 30s/);
    assert.equal(next.requeueAfterMs, 0);
    assert.deepEqual(next.actions, []);
  });

  it('re-sends the apply of a host left UPDATING by a previous leader, within the budget', () => {
    const hosts = fleet(6);
    const planned = step({ rollout: rolloutOf({ steps: [{ canary: 3 }, { percent: 100 }], maxUnavailable: 2 }), hosts, now: T0 }).rollout;
    const [stuck] = planned.status!.hosts.filter((h) => h.wave === 0);
    const orphaned = structuredClone(planned);
    hostOf(orphaned, stuck!.host).phase = H.HOST_PHASE_UPDATING;

    const d = step({ rollout: orphaned, hosts, now: T0 });
    const resent = d.actions.filter((a) => a.host === stuck!.host);
    assert.equal(resent.length, 1, 'the orphaned apply goes out again');
    assert.deepEqual(resent[0]!.module, TARGET);
    assert.equal(resent[0]!.expectedDigest, OLD.digest);
    assert.equal(d.actions.length, 2, 'plus one new host: the re-sent one counts against maxUnavailable');
  });

  it('an apply failure on update rolls back', () => {
    const hosts = fleet(4);
    const planned = step({ rollout: rolloutOf({ steps: [{ canary: 1 }, { percent: 100 }] }), hosts, now: T0 }).rollout;
    const d = step({ rollout: planned, hosts, now: T0 });
    const canary = d.actions[0]!.host;
    const failed = recordApply(d.rollout, d.actions[0]!, { ok: false, reason: 'VERIFIER_REJECTED', message: 'R1 invalid mem access' }, T0 + 1);
    assert.equal(hostOf(failed.rollout, canary).phase, H.HOST_PHASE_FAILED);
    assert.match(describeEvent(failed.event), /update failed: VERIFIER_REJECTED: R1 invalid mem access/);

    const rb = step({ rollout: failed.rollout, hosts, now: T0 + 2 });
    assert.equal(rb.rollout.status!.phase, P.ROLLOUT_PHASE_ROLLING_BACK);
    assert.match(rb.rollout.status!.message, new RegExp(`apply failed on ${canary} \\(VERIFIER_REJECTED: R1 invalid mem access\\)`));
    assert.deepEqual(rb.actions, [], 'the rollback applies come on the next pass');

    const restore = step({ rollout: rb.rollout, hosts, now: T0 + 3 });
    assert.deepEqual(restore.actions, [{ kind: 'apply', host: canary, module: OLD, expectedDigest: TARGET.digest, purpose: 'rollback' }]);
  });

  it('pauses at a pause step and then waits', () => {
    const hosts = fleet(3);
    let r = step({ rollout: rolloutOf({ steps: [{ pause: {} }, { percent: 100 }] }), hosts, now: T0 }).rollout;
    const d = step({ rollout: r, hosts, now: T0 });
    r = d.rollout;
    assert.equal(r.status!.phase, P.ROLLOUT_PHASE_PAUSED);
    assert.equal(r.status!.message, 'paused at step 1: resume to continue');
    assert.deepEqual(d.actions, []);
    const later = step({ rollout: r, hosts, now: T0 + 3_600_000 });
    assert.deepEqual(later.rollout, r);
    assert.deepEqual(later.actions, []);
    assert.equal(later.requeueAfterMs, null);
  });
});

describe('reconcile: bake and analysis', () => {
  const spec = { steps: [{ canary: 1 }, { bake: '10s' }, { percent: 100 }], analysis: { interval: '2s', inconclusiveLimit: 2, metrics: [{ name: 'drop_rate', max: 0.1 }] } };

  it('waits out the bake time without analysing', () => {
    const hosts = fleet(4);
    const r = canaryDone(spec, hosts);
    const d = step({ rollout: r, hosts, now: T0 + 3000 });
    assert.equal(d.requeueAfterMs, 7000);
    assert.deepEqual(d.actions, []);
    assert.deepEqual(d.events, []);
  });

  it('then analyses the updated hosts against the pending ones over [stepStartedAt, now]', () => {
    const hosts = fleet(4);
    const r = canaryDone(spec, hosts);
    const a = analyzer(Verdict.VERDICT_PASS);
    step({ rollout: r, hosts, now: T0 + 10_000, analyze: a.analyze });
    assert.equal(a.requests.length, 1);
    assert.deepEqual(a.requests[0], {
      step: 1,
      canaryHosts: hostsIn(r, H.HOST_PHASE_UPDATED),
      baselineHosts: hostsIn(r, H.HOST_PHASE_PENDING),
      from: T0,
      to: T0 + 10_000,
    });
    assert.equal(a.requests[0]!.canaryHosts.length, 1);
    assert.equal(a.requests[0]!.baselineHosts.length, 3);
  });

  it('a pass advances to the next step and records the analysis', () => {
    const hosts = fleet(4);
    const r = canaryDone(spec, hosts);
    const d = step({ rollout: r, hosts, now: T0 + 10_000, analyze: analyzer(Verdict.VERDICT_PASS).analyze });
    assert.equal(d.rollout.status!.phase, P.ROLLOUT_PHASE_PROGRESSING);
    assert.equal(d.rollout.status!.step, 2);
    assert.equal(d.rollout.status!.analyses.length, 1);
    assert.equal(d.rollout.status!.analyses[0]!.verdict, Verdict.VERDICT_PASS);
    assert.equal(d.requeueAfterMs, 0);
    assert.ok(d.events.map(describeEvent).some((e) => e.startsWith('analysis at step 2: pass')));
  });

  it('a fail rolls back: restores each touched host to its previous digest, expecting the target', () => {
    const hosts = [...fleet(3), hostView('h04', { running: null })];
    // Put the host that ran nothing in the canary wave too, so both restore paths are seen.
    const r0 = canaryDone({ ...spec, steps: [{ canary: 2 }, { bake: '10s' }, { percent: 100 }], maxUnavailable: 2 }, hosts);
    const failed = step({ rollout: r0, hosts, now: T0 + 10_000, analyze: analyzer(Verdict.VERDICT_FAIL).analyze });
    assert.equal(failed.rollout.status!.phase, P.ROLLOUT_PHASE_ROLLING_BACK);
    assert.match(failed.rollout.status!.message, /^analysis failed: stub VERDICT_FAIL/);
    assert.deepEqual(failed.actions, []);

    const rb = step({ rollout: failed.rollout, hosts, now: T0 + 10_001 });
    const updated = hostsIn(r0, H.HOST_PHASE_UPDATED);
    assert.deepEqual(rb.actions.map((a) => a.host).sort(), [...updated].sort(), 'only hosts the rollout touched');
    for (const a of rb.actions) {
      const before = hostOf(r0, a.host);
      assert.equal(a.purpose, 'rollback');
      assert.equal(a.expectedDigest, TARGET.digest);
      assert.deepEqual(a.module, before.previousDigest ? { name: 'pass-counter', version: before.previousVersion, digest: before.previousDigest } : null);
    }
    assert.deepEqual(hostsIn(rb.rollout, H.HOST_PHASE_ROLLING_BACK).sort(), [...updated].sort());
    assert.equal(rb.rollout.status!.phase, P.ROLLOUT_PHASE_ROLLING_BACK, 'not done before the results are in');

    const [first, ...rest] = rb.actions;
    const partly = recordApply(rb.rollout, first!, { ok: true, progId: 9 }, T0 + 10_002).rollout;
    assert.equal(hostOf(partly, first!.host).phase, H.HOST_PHASE_ROLLED_BACK);
    // The others are ROLLING_BACK with their results still to come; a pass meanwhile waits.
    const waiting = step({ rollout: partly, hosts, now: T0 + 10_003 });
    assert.equal(waiting.rollout.status!.phase, P.ROLLOUT_PHASE_ROLLING_BACK);
    assert.deepEqual(waiting.actions, []);

    const all = recordAll(partly, rest, T0 + 10_004);
    const done = step({ rollout: all, hosts, now: T0 + 10_005 });
    assert.equal(done.rollout.status!.phase, P.ROLLOUT_PHASE_ROLLED_BACK);
    assert.match(done.rollout.status!.message, /analysis failed/);
    assert.deepEqual(done.actions, []);
    assert.equal(done.requeueAfterMs, null);
    assert.deepEqual(hostsIn(done.rollout, H.HOST_PHASE_PENDING).length, 2, 'untouched hosts stay as they were');
  });

  it('inconclusive holds and counts up, then fails once past inconclusiveLimit', () => {
    const hosts = fleet(4);
    let r = canaryDone(spec, hosts);
    const a = analyzer(Verdict.VERDICT_INCONCLUSIVE);
    let now = T0 + 10_000;
    for (const expected of [1, 2]) {
      const d = step({ rollout: r, hosts, now, analyze: a.analyze });
      r = d.rollout;
      assert.equal(r.status!.phase, P.ROLLOUT_PHASE_PROGRESSING);
      assert.equal(r.status!.step, 1, 'holding at the bake step');
      assert.equal(r.status!.inconclusiveInARow, expected);
      assert.match(r.status!.message, /^holding: stub/);
      assert.equal(d.requeueAfterMs, 2000);
      // Before the interval is up, no new analysis: just the time left.
      const early = step({ rollout: r, hosts, now: now + 500, analyze: a.analyze });
      assert.equal(early.requeueAfterMs, 1500);
      assert.equal(a.requests.length, expected);
      now += 2000;
    }
    const d = step({ rollout: r, hosts, now, analyze: a.analyze });
    assert.equal(d.rollout.status!.inconclusiveInARow, 3);
    assert.equal(d.rollout.status!.phase, P.ROLLOUT_PHASE_ROLLING_BACK);
    assert.match(d.rollout.status!.message, /no conclusive evidence after 3 analyses/);
  });

  it('a pass after inconclusive runs resets the count for the next step', () => {
    const hosts = fleet(4);
    let r = canaryDone(spec, hosts);
    const a = analyzer(Verdict.VERDICT_INCONCLUSIVE, Verdict.VERDICT_PASS);
    r = step({ rollout: r, hosts, now: T0 + 10_000, analyze: a.analyze }).rollout;
    assert.equal(r.status!.inconclusiveInARow, 1);
    r = step({ rollout: r, hosts, now: T0 + 12_000, analyze: a.analyze }).rollout;
    assert.equal(r.status!.step, 2);
    assert.equal(r.status!.inconclusiveInARow, 0);
  });

  it('onFailure halt fails without sending a single rollback', () => {
    const hosts = fleet(4);
    const r = canaryDone({ ...spec, onFailure: 'halt' }, hosts);
    const d = step({ rollout: r, hosts, now: T0 + 10_000, analyze: analyzer(Verdict.VERDICT_FAIL).analyze });
    assert.equal(d.rollout.status!.phase, P.ROLLOUT_PHASE_FAILED);
    assert.match(d.rollout.status!.message, /halted without rollback \(onFailure: halt\)/);
    assert.deepEqual(d.actions, []);
    assert.equal(d.requeueAfterMs, null);
    const after = step({ rollout: d.rollout, hosts, now: T0 + 20_000 });
    assert.deepEqual(after.actions, []);
    assert.deepEqual(hostsIn(after.rollout, H.HOST_PHASE_UPDATED), hostsIn(r, H.HOST_PHASE_UPDATED), 'the canary keeps the new version');
  });
});

describe('reconcile: rollback retries', () => {
  it('retries a failed rollback apply only after a pause, not in a tight loop', () => {
    const hosts = fleet(3);
    const r = canaryDone({ steps: [{ canary: 1 }, { bake: '1s' }] }, hosts);
    let now = T0 + 1000;
    const failed = step({ rollout: r, hosts, now, analyze: analyzer(Verdict.VERDICT_FAIL).analyze }).rollout;
    const rb = step({ rollout: failed, hosts, now });
    assert.equal(rb.actions.length, 1);
    const gone = recordApply(rb.rollout, rb.actions[0]!, { ok: false, reason: 'HOST_GONE', message: 'host h is no longer registered' }, now);
    assert.equal(hostOf(gone.rollout, rb.actions[0]!.host).phase, H.HOST_PHASE_ROLLING_BACK, 'a failed rollback keeps trying');
    assert.match(hostOf(gone.rollout, rb.actions[0]!.host).message, /HOST_GONE/);

    // The controller runs reconcile again right after recording results.
    now += 10;
    const soon = step({ rollout: gone.rollout, hosts, now });
    assert.deepEqual(soon.actions, []);
    assert.equal(soon.requeueAfterMs, 990);
    assert.equal(soon.rollout.status!.phase, P.ROLLOUT_PHASE_ROLLING_BACK);

    now += 990;
    const retry = step({ rollout: soon.rollout, hosts, now });
    assert.deepEqual(retry.actions.map((a) => [a.host, a.purpose]), [[rb.actions[0]!.host, 'rollback']]);
  });

  /** A rollout rolling back its canary, whose restore failed once (HOST_GONE), at `now`. */
  function rollbackFailedOnce() {
    const hosts = fleet(3);
    const r = canaryDone({ steps: [{ canary: 1 }, { bake: '1s' }] }, hosts);
    const now = T0 + 1000;
    const failed = step({ rollout: r, hosts, now, analyze: analyzer(Verdict.VERDICT_FAIL).analyze }).rollout;
    const rb = step({ rollout: failed, hosts, now });
    const gone = recordApply(rb.rollout, rb.actions[0]!, { ok: false, reason: 'HOST_GONE', message: 'host is no longer registered' }, now).rollout;
    return { hosts, rollout: gone, host: rb.actions[0]!.host, now };
  }

  it(`gives up on a host after ${ROLLBACK_MAX_ATTEMPTS} failed restores spaced 1, 2, 4, 8 s, names it, and ends FAILED`, () => {
    let { hosts, rollout, host, now } = rollbackFailedOnce();
    const waits: number[] = [];
    for (let attempt = 1; attempt < ROLLBACK_MAX_ATTEMPTS; attempt++) {
      const wait = step({ rollout, hosts, now }).requeueAfterMs!;
      waits.push(wait);
      now += wait;
      const retry = step({ rollout, hosts, now });
      assert.equal(retry.actions.length, 1);
      rollout = recordApply(retry.rollout, retry.actions[0]!, { ok: false, reason: 'DRIFT', message: 'runs something else' }, now).rollout;
    }
    assert.deepEqual(waits, [1000, 2000, 4000, 8000]);
    assert.equal(hostOf(rollout, host).rollbackAttempts, ROLLBACK_MAX_ATTEMPTS);
    const end = step({ rollout, hosts, now: now + 1 });
    assert.deepEqual(end.actions, []);
    assert.equal(end.rollout.status!.phase, P.ROLLOUT_PHASE_FAILED, 'a rollback that could not restore a host is no clean rollback');
    assert.equal(hostOf(end.rollout, host).phase, H.HOST_PHASE_RESTORE_FAILED);
    assert.match(end.rollout.status!.message, new RegExp(`could not restore 1 host: ${host} \\(not restored to 1\\.0\\.0 after 5 attempts \\(last error DRIFT: runs something else\\)\\)`));
    assert.equal(end.requeueAfterMs, null);
  });

  it('abort while rolling back ends the retries: ABORTED, the host named', () => {
    const { hosts, rollout, host, now } = rollbackFailedOnce();
    const abort: RolloutRequest = { seq: 1, verb: RolloutVerb.ROLLOUT_VERB_ABORT, actor: 'erin', at: '', reason: 'host is dead' };
    const d = reconcile({ rollout, target: TARGET, hosts, now: now + 10, analyze: neverAnalyze, requests: [abort] });
    assert.deepEqual(d.actions, []);
    assert.equal(d.rollout.status!.phase, P.ROLLOUT_PHASE_ABORTED);
    assert.equal(hostOf(d.rollout, host).phase, H.HOST_PHASE_RESTORE_FAILED);
    assert.match(d.rollout.status!.message, new RegExp(`aborted by erin \\(host is dead\\); could not restore 1 host: ${host} \\(not restored to 1\\.0\\.0 \\(aborted by erin`));
  });
});

describe('reconcile: final phases', () => {
  for (const phase of [P.ROLLOUT_PHASE_SUCCEEDED, P.ROLLOUT_PHASE_ROLLED_BACK, P.ROLLOUT_PHASE_FAILED, P.ROLLOUT_PHASE_ABORTED]) {
    it(`${phase} does nothing`, () => {
      const hosts = fleet(3);
      const r = step({ rollout: rolloutOf(), hosts, now: T0 }).rollout;
      r.status!.phase = phase;
      // Even with hosts that would otherwise be acted upon.
      r.status!.hosts[0]!.phase = H.HOST_PHASE_UPDATING;
      const d = step({ rollout: r, hosts, now: T0 + 60_000 });
      assert.deepEqual(d.rollout, r);
      assert.deepEqual(d.actions, []);
      assert.deepEqual(d.events, []);
      assert.equal(d.requeueAfterMs, null);
    });
  }
});

describe('reconcile: whole runs with a fake clock', () => {
  /** Drives reconcile like the controller does, with every apply landing on the fleet. */
  function drive(rollout: Rollout, hosts: HostView[], analyze: (req: AnalysisRequest) => AnalysisRun, maxUnavailable: number) {
    const running = new Map(hosts.map((h) => [h.name, h.running]));
    const view = () => hosts.map((h) => ({ ...h, running: running.get(h.name) ?? null }));
    const log: { now: number; actions: ApplyAction[] }[] = [];
    let r = rollout;
    let now = T0;
    for (let pass = 0; pass < 200; pass++) {
      const d = reconcile({ rollout: r, target: TARGET, hosts: view(), now, analyze });
      r = d.rollout;
      if (d.actions.length) {
        assert.ok(d.actions.length <= maxUnavailable || d.actions[0]!.purpose === 'rollback', `${d.actions.length} applies at once`);
        log.push({ now, actions: d.actions });
        for (const a of d.actions) {
          assert.equal(running.get(a.host)?.digest ?? '', a.expectedDigest, `apply to ${a.host} expects what it runs`);
          running.set(a.host, a.module);
        }
        r = recordAll(r, d.actions, now);
        continue;
      }
      if (d.requeueAfterMs === null) return { rollout: r, running, log, now };
      now += d.requeueAfterMs;
    }
    assert.fail(`no final phase after 200 passes: ${r.status!.phase} ${r.status!.message}`);
  }

  it('runs a canary, bakes, passes analysis and finishes every wave: SUCCEEDED', () => {
    const hosts = fleet(8);
    const spec = { steps: [{ canary: 1 }, { bake: '10s' }, { percent: 50 }, { bake: '5s' }], maxUnavailable: 2 };
    const a = analyzer(Verdict.VERDICT_PASS);
    const { rollout, running, log, now } = drive(rolloutOf(spec), hosts, a.analyze, 2);

    assert.equal(rollout.status!.phase, P.ROLLOUT_PHASE_SUCCEEDED);
    assert.equal(rollout.status!.message, 'all 8 hosts run pass-counter@2.0.0');
    assert.deepEqual(hostsIn(rollout, H.HOST_PHASE_UPDATED).length, 8);
    for (const [, m] of running) assert.deepEqual(m, TARGET);

    const wave = (n: string) => hostOf(rollout, n).wave;
    assert.deepEqual(log[0]!.actions.map((x) => wave(x.host)), [0], 'the canary goes alone first');
    const waveOrder = log.flatMap((l) => l.actions.map((x) => wave(x.host)));
    assert.deepEqual(waveOrder, [...waveOrder].sort((x, y) => x - y), 'no host of a later wave before an earlier one');

    // Two analyses, each after its bake time, each canary = everyone updated so far.
    assert.equal(a.requests.length, 2);
    assert.equal(a.requests[0]!.to - a.requests[0]!.from, 10_000);
    assert.deepEqual([a.requests[0]!.canaryHosts.length, a.requests[0]!.baselineHosts.length], [1, 7]);
    assert.equal(a.requests[1]!.to - a.requests[1]!.from, 5000);
    assert.deepEqual([a.requests[1]!.canaryHosts.length, a.requests[1]!.baselineHosts.length], [4, 4]);
    assert.equal(now, T0 + 15_000, 'the clock only moved by the bake times');
  });

  it('a canary failing analysis ends ROLLED_BACK with the fleet as it was', () => {
    const hosts = [...fleet(5), hostView('fresh', { running: null })];
    const spec = { steps: [{ canary: 2 }, { bake: '10s' }, { percent: 100 }], maxUnavailable: 2 };
    const { rollout, running } = drive(rolloutOf(spec), hosts, analyzer(Verdict.VERDICT_FAIL).analyze, 2);
    assert.equal(rollout.status!.phase, P.ROLLOUT_PHASE_ROLLED_BACK);
    for (const h of hosts) assert.deepEqual(running.get(h.name), h.running, `${h.name} restored`);
    assert.equal(hostsIn(rollout, H.HOST_PHASE_ROLLED_BACK).length, 2);
  });

  it('a rollout with nothing left to do succeeds without sending anything', () => {
    const hosts = fleet(3, { running: TARGET });
    const { rollout, log } = drive(rolloutOf({ steps: [{ percent: 100 }] }), hosts, neverAnalyze, 1);
    assert.equal(rollout.status!.phase, P.ROLLOUT_PHASE_SUCCEEDED);
    assert.deepEqual(log, []);
  });
});

describe('reconcile: failureLimit', () => {
  const spec = { steps: [{ canary: 1 }, { bake: '10s' }, { percent: 100 }], analysis: { interval: '2s', failureLimit: 1 } };

  it('holds after a tolerated failure, fails on the next, and a pass resets the count', () => {
    const hosts = fleet(4);
    let r = canaryDone(spec, hosts);
    const a = analyzer(Verdict.VERDICT_FAIL, Verdict.VERDICT_FAIL);
    let d = step({ rollout: r, hosts, now: T0 + 10_000, analyze: a.analyze });
    assert.equal(d.rollout.status!.phase, P.ROLLOUT_PHASE_PROGRESSING);
    assert.equal(d.rollout.status!.failuresInStep, 1);
    assert.match(d.rollout.status!.message, /^holding after failure 1 of 1 tolerated: stub VERDICT_FAIL/);
    assert.equal(d.requeueAfterMs, 2000);
    d = step({ rollout: d.rollout, hosts, now: T0 + 12_000, analyze: a.analyze });
    assert.equal(d.rollout.status!.phase, P.ROLLOUT_PHASE_ROLLING_BACK);
    assert.match(d.rollout.status!.message, /^analysis failed/);

    r = canaryDone(spec, hosts);
    const b = analyzer(Verdict.VERDICT_FAIL, Verdict.VERDICT_PASS);
    d = step({ rollout: r, hosts, now: T0 + 10_000, analyze: b.analyze });
    d = step({ rollout: d.rollout, hosts, now: T0 + 12_000, analyze: b.analyze });
    assert.equal(d.rollout.status!.step, 2);
    assert.equal(d.rollout.status!.failuresInStep, 0);
  });
});

describe('reconcile: which step a transition ends', () => {
  const spec = { steps: [{ canary: 1 }, { bake: '10s' }, { percent: 100 }], analysis: { interval: '2s' } };
  const ends = (d: Decision) => d.events.map(endedStep).filter((e) => e !== undefined);

  it('a halt ends the step under way as failed', () => {
    const r = canaryDone({ ...spec, onFailure: 'halt' }, fleet(3));
    const d = step({ rollout: r, hosts: fleet(3), now: T0 + 10_000, analyze: analyzer(Verdict.VERDICT_FAIL).analyze });
    assert.deepEqual(ends(d), [{ step: 1, kind: 'bake', outcome: 'failed', durationMs: 10_000 }]);
  });

  it('a failed apply of a paused rollout rolls back without ending a step; the rollback\'s end ends none either', () => {
    const hosts = fleet(2);
    const planned = step({ rollout: rolloutOf({ steps: [{ percent: 100 }] }), hosts, now: T0 }).rollout;
    const first = step({ rollout: planned, hosts, now: T0 });
    const paused = structuredClone(first.rollout);
    paused.status!.phase = P.ROLLOUT_PHASE_PAUSED;
    const failed = recordAll(paused, first.actions, T0 + 1, false);
    const rb = step({ rollout: failed, hosts, now: T0 + 2 });
    assert.equal(rb.rollout.status!.phase, P.ROLLOUT_PHASE_ROLLING_BACK);
    assert.deepEqual(ends(rb), []);
    const restoring = step({ rollout: rb.rollout, hosts, now: T0 + 3 });
    const done = step({ rollout: recordAll(restoring.rollout, restoring.actions, T0 + 4), hosts, now: T0 + 5 });
    assert.equal(done.rollout.status!.phase, P.ROLLOUT_PHASE_ROLLED_BACK);
    assert.deepEqual(ends(done), []);
  });

  it('each step of a whole run ends once, passed, in order', () => {
    const hosts = fleet(2);
    let r = step({ rollout: rolloutOf(spec), hosts, now: T0 }).rollout;
    const ended: unknown[] = [];
    const a = analyzer(Verdict.VERDICT_PASS);
    for (let now = T0; r.status!.phase === P.ROLLOUT_PHASE_PROGRESSING && now < T0 + 60_000; now += 1000) {
      const d = step({ rollout: r, hosts, now, analyze: a.analyze });
      ended.push(...ends(d).map((e) => [e.step, e.kind, e.outcome]));
      r = recordAll(d.rollout, d.actions, now);
    }
    assert.equal(r.status!.phase, P.ROLLOUT_PHASE_SUCCEEDED);
    assert.deepEqual(ended, [[0, 'canary', 'passed'], [1, 'bake', 'passed'], [2, 'percent', 'passed'], [3, 'final_wave', 'passed']]);
  });
});
