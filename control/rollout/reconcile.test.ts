import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ModuleRef } from '../../proto/gen/bpfleet/v1/module.js';
import {
  HostPhase,
  RolloutPhase,
  RolloutVerb,
  Verdict,
  type AnalysisRun,
  type HostProgress,
  type Rollout,
  type RolloutRequest,
} from '../../proto/gen/bpfleet/v1/rollout.js';
import {
  applyRequest,
  pendingRequests,
  reconcile,
  recordApply,
  type AnalysisRequest,
  type ApplyAction,
  type Decision,
  type HostView,
} from './reconcile.js';
import { toRolloutSpec, type RolloutSpecInput } from './spec.js';
import { emptyStatus, verbName } from './vocabulary.js';
import { planWaves } from './waves.js';

const H = HostPhase;
const P = RolloutPhase;
const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const OLD: ModuleRef = { name: 'pass-counter', version: '1.0.0', digest: `sha256:${'a'.repeat(64)}` };
const TARGET: ModuleRef = { name: 'pass-counter', version: '2.0.0', digest: `sha256:${'b'.repeat(64)}` };

function rolloutOf(spec: Partial<RolloutSpecInput> = {}, id = 'r-1'): Rollout {
  return {
    id,
    spec: toRolloutSpec({ module: 'pass-counter', version: '2.0.0', attachment: 'xdp:eth0', steps: [{ canary: 1 }], ...spec }),
    status: undefined,
    createdAt: new Date(T0).toISOString(),
    createdBy: 'test',
    undoOf: '',
  };
}

function hostView(name: string, over: Partial<HostView> = {}): HostView {
  return { name, labels: { role: 'edge' }, capabilities: ['xdp', 'tcx-ingress', 'tcx-egress'], running: OLD, ...over };
}

const fleet = (n: number, over: Partial<HostView> = {}): HostView[] =>
  Array.from({ length: n }, (_, i) => hostView(`h${String(i + 1).padStart(2, '0')}`, over));

function runOf(step: number, verdict: Verdict, at: number): AnalysisRun {
  return { step, verdict, metrics: [], at: new Date(at).toISOString(), summary: `stub ${Verdict[verdict]}`, staleHosts: [] };
}

/** An analyze() that answers `verdicts` in turn and remembers what it was asked. */
function analyzer(...verdicts: Verdict[]) {
  const requests: AnalysisRequest[] = [];
  let now = 0;
  return {
    requests,
    at(t: number) {
      now = t;
    },
    analyze: (req: AnalysisRequest): AnalysisRun => {
      requests.push(req);
      const v = verdicts.length > 1 ? verdicts.shift()! : verdicts[0] ?? Verdict.VERDICT_PASS;
      return runOf(req.step, v, now || req.to);
    },
  };
}

const neverAnalyze = (): AnalysisRun => assert.fail('analyze must not be called here');

interface Step {
  rollout: Rollout;
  hosts: HostView[];
  now: number;
  inFlight?: string[];
  analyze?: (req: AnalysisRequest) => AnalysisRun;
}

function step({ rollout, hosts, now, inFlight = [], analyze = neverAnalyze }: Step): Decision {
  return reconcile({ rollout, target: TARGET, hosts, inFlight: new Set(inFlight), now, analyze });
}

function recordAll(rollout: Rollout, actions: ApplyAction[], now: number, ok = true): Rollout {
  let r = rollout;
  actions.forEach((a, i) => {
    r = recordApply(r, a, ok ? { ok: true, progId: 100 + i } : { ok: false, reason: 'VERIFIER_REJECTED', message: 'bad program' }, now).rollout;
  });
  return r;
}

const hostsIn = (r: Rollout, phase: HostPhase) => r.status!.hosts.filter((h) => h.phase === phase).map((h) => h.host);
const hostOf = (r: Rollout, name: string): HostProgress => r.status!.hosts.find((h) => h.host === name)!;

/** A rollout planned and with its canary wave updated: the state a bake step starts from. */
function canaryDone(spec: Partial<RolloutSpecInput>, hosts: HostView[], now = T0): Rollout {
  let r = step({ rollout: rolloutOf(spec), hosts, now }).rollout;
  const d = step({ rollout: r, hosts, now });
  r = recordAll(d.rollout, d.actions, now);
  r = step({ rollout: r, hosts, now }).rollout;
  assert.equal(r.status!.step, 1, 'canary step should be done');
  return r;
}

describe('reconcile: planning', () => {
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
    const event = d.events.find((e) => e.startsWith('planned'))!;
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

    // While both are still in flight the budget is used up: nothing new goes out.
    const busy = step({ rollout: d.rollout, hosts, now: T0 + 1, inFlight: d.actions.map((a) => a.host) });
    assert.deepEqual(busy.actions, []);

    // One answers: exactly one more host of the canary wave, and still none of a later wave.
    const one = recordApply(d.rollout, d.actions[0]!, { ok: true, progId: 7 }, T0 + 2).rollout;
    const next = step({ rollout: one, hosts, now: T0 + 2, inFlight: [d.actions[1]!.host] });
    assert.equal(next.actions.length, 1);
    const third = wave0.find((h) => !d.actions.some((a) => a.host === h))!;
    assert.equal(next.actions[0]!.host, third);
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
    assert.match(recorded.event, /updated \(prog 42\)/);

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

    // The same process still has that apply in flight: no duplicate.
    const inFlight = step({ rollout: orphaned, hosts, now: T0, inFlight: [stuck!.host] });
    assert.ok(!inFlight.actions.some((a) => a.host === stuck!.host));
    assert.equal(inFlight.actions.length, 1);
  });

  it('an apply failure on update rolls back', () => {
    const hosts = fleet(4);
    const planned = step({ rollout: rolloutOf({ steps: [{ canary: 1 }, { percent: 100 }] }), hosts, now: T0 }).rollout;
    const d = step({ rollout: planned, hosts, now: T0 });
    const canary = d.actions[0]!.host;
    const failed = recordApply(d.rollout, d.actions[0]!, { ok: false, reason: 'VERIFIER_REJECTED', message: 'R1 invalid mem access' }, T0 + 1);
    assert.equal(hostOf(failed.rollout, canary).phase, H.HOST_PHASE_FAILED);
    assert.match(failed.event, /update failed: VERIFIER_REJECTED: R1 invalid mem access/);

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
    assert.ok(d.events.some((e) => e.startsWith('analysis at step 2: pass')));
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
    const waiting = step({ rollout: partly, hosts, now: T0 + 10_003, inFlight: rest.map((a) => a.host) });
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
    assert.equal(soon.requeueAfterMs, 1990);
    assert.equal(soon.rollout.status!.phase, P.ROLLOUT_PHASE_ROLLING_BACK);

    now += 1990;
    const retry = step({ rollout: soon.rollout, hosts, now });
    assert.deepEqual(retry.actions.map((a) => [a.host, a.purpose]), [[rb.actions[0]!.host, 'rollback']]);
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

describe('recordApply', () => {
  it('ignores results for hosts the rollout did not plan', () => {
    const r = step({ rollout: rolloutOf(), hosts: fleet(2), now: T0 }).rollout;
    const out = recordApply(r, { kind: 'apply', host: 'stranger', module: TARGET, expectedDigest: '', purpose: 'update' }, { ok: true, progId: 1 }, T0);
    assert.deepEqual(out.rollout.status!.hosts, r.status!.hosts);
    assert.match(out.event, /unplanned host stranger/);
  });

  it('does not modify the rollout it is given', () => {
    const r = step({ rollout: rolloutOf(), hosts: fleet(2), now: T0 }).rollout;
    const copy = structuredClone(r);
    recordApply(r, { kind: 'apply', host: r.status!.hosts[0]!.host, module: TARGET, expectedDigest: '', purpose: 'update' }, { ok: true, progId: 1 }, T0 + 5);
    assert.deepEqual(r, copy);
  });

  it('a successful rollback marks the host ROLLED_BACK and clears its message', () => {
    const r = step({ rollout: rolloutOf(), hosts: fleet(2), now: T0 }).rollout;
    const h = r.status!.hosts[0]!;
    h.phase = H.HOST_PHASE_ROLLING_BACK;
    h.message = 'UNAVAILABLE: earlier attempt';
    const out = recordApply(r, { kind: 'apply', host: h.host, module: OLD, expectedDigest: TARGET.digest, purpose: 'rollback' }, { ok: true, progId: 5 }, T0 + 5);
    assert.equal(hostOf(out.rollout, h.host).phase, H.HOST_PHASE_ROLLED_BACK);
    assert.equal(hostOf(out.rollout, h.host).message, '');
    assert.equal(out.rollout.status!.updatedAt, new Date(T0 + 5).toISOString());
  });
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
      const d = reconcile({ rollout: r, target: TARGET, hosts: view(), inFlight: new Set(), now, analyze });
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

describe('emptyStatus', () => {
  it('starts pending at step 0', () => {
    const s = emptyStatus();
    assert.equal(s.phase, P.ROLLOUT_PHASE_PENDING);
    assert.equal(s.step, 0);
    assert.deepEqual(s.hosts, []);
  });
});

describe('reconcile: operator requests', () => {
  const spec = { steps: [{ canary: 1 }, { bake: '10s' }, { percent: 50 }, { pause: {} }, { percent: 100 }], analysis: { interval: '2s' } };
  let seq = 0;
  const req = (verb: RolloutVerb, actor = 'alice', reason = ''): RolloutRequest =>
    ({ seq: ++seq, verb, actor, at: new Date(T0).toISOString(), reason });
  const withRequests = (rollout: Rollout, hosts: HostView[], now: number, requests: RolloutRequest[], analyze: Step['analyze'] = neverAnalyze) =>
    reconcile({ rollout, target: TARGET, hosts, inFlight: new Set(), now, analyze, requests });

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
    assert.deepEqual(paused.events, ['paused by alice (looks odd): resume to continue']);
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
    assert.ok(d.events.includes('promoted by dave (hotfix): remaining bake, analysis and pause steps are skipped'));
    assert.equal(d.rollout.status!.step, 2, 'the bake at step 2 is skipped without waiting for it');
    assert.ok(d.events.some((e) => e.startsWith('bake 10s skipped (promoted)')));
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
    assert.ok(d.events.includes(`resume by gina changed nothing: rollout r-1 is not paused (progressing)`));

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
    assert.match(d.events[0]!, /^paused by/);
    assert.match(d.events[1]!, /^resumed by/);
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
    [P.ROLLOUT_PHASE_ROLLING_BACK, RolloutVerb.ROLLOUT_VERB_ABORT, 'refused:ROLLING_BACK'],
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

describe('recordApply: the detail of a failure', () => {
  const LOG = Array.from({ length: 60 }, (_, i) => `verifier line ${i + 1}`).join('\n');

  it('keeps the last 30 lines of a failed update, through the rollback, and clears it on a later update', () => {
    const r = step({ rollout: rolloutOf(), hosts: fleet(2), now: T0 }).rollout;
    const host = r.status!.hosts[0]!.host;
    const update: ApplyAction = { kind: 'apply', host, module: TARGET, expectedDigest: OLD.digest, purpose: 'update' };
    const failed = recordApply(r, update, { ok: false, reason: 'VERIFIER_REJECTED', message: 'R1 offset is outside of the packet', detail: LOG }, T0 + 1).rollout;
    const kept = hostOf(failed, host).detail.split('\n');
    assert.equal(kept.length, 30);
    assert.deepEqual([kept[0], kept[29]], ['verifier line 31', 'verifier line 60']);

    const rollback: ApplyAction = { kind: 'apply', host, module: OLD, expectedDigest: TARGET.digest, purpose: 'rollback' };
    const unreachable = recordApply(failed, rollback, { ok: false, reason: 'UNAVAILABLE', message: 'agent down' }, T0 + 2).rollout;
    assert.equal(hostOf(unreachable, host).detail, hostOf(failed, host).detail, 'a failure without a detail keeps the one there');
    const rolledBack = recordApply(unreachable, rollback, { ok: true, progId: 9 }, T0 + 3).rollout;
    assert.equal(hostOf(rolledBack, host).detail, hostOf(failed, host).detail, 'the rollback keeps why it happened');

    const updated = recordApply(rolledBack, update, { ok: true, progId: 10 }, T0 + 4).rollout;
    assert.equal(hostOf(updated, host).detail, '');
  });
});
