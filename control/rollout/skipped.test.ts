import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HostPhase, RolloutPhase, type Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import { recordApply } from './apply-results.js';
import { reconcile } from './reconcile.js';
import { fleet, hostOf, hostView, neverAnalyze, recordAll, rolloutOf, step, T0, TARGET } from './rollouts.fixture.js';
import { SKIPPED_HOSTS_KEPT } from './skipped.js';
import type { AbsentHost, HostView } from './steps.js';
import { selectionLine } from './vocabulary.js';

const H = HostPhase;
const P = RolloutPhase;

/** Runs passes (every apply succeeding) until the rollout is final or 20 passes went by. */
function runToEnd(rollout: Rollout, hostsAt: (pass: number) => HostView[], absent: AbsentHost[] = []): Rollout {
  let r = rollout;
  for (let pass = 0; pass < 20; pass++) {
    const d = reconcile({ rollout: r, target: TARGET, hosts: hostsAt(pass), absent, now: T0, analyze: neverAnalyze });
    r = recordAll(d.rollout, d.actions, T0);
    if (d.rollout.status!.phase === P.ROLLOUT_PHASE_SUCCEEDED || d.rollout.status!.phase === P.ROLLOUT_PHASE_FAILED) return d.rollout;
  }
  return assert.fail(`not final after 20 passes: ${r.status!.message}`);
}

describe('reconcile: hosts that come and go', () => {
  it('names a selected host that is down at plan time as skipped, and finishes saying so', () => {
    const absent = [{ name: 'h03', labels: { role: 'edge' } }, { name: 'other', labels: { role: 'core' } }];
    const r = runToEnd(rolloutOf({ selector: { role: 'edge' }, steps: [{ canary: 1 }] }), () => fleet(2), absent);
    assert.equal(r.status!.phase, P.ROLLOUT_PHASE_SUCCEEDED);
    assert.deepEqual(r.status!.skippedHosts, [{ host: 'h03', reason: 'not registered' }], 'only the host the selector matches');
    assert.equal(r.status!.skippedTotal, 1);
    assert.equal(r.status!.message, '2 of 3 selected hosts run pass-counter@2.0.0; skipped 1: h03 (not registered)');
  });

  it('skips a planned host that is gone when its wave runs, instead of failing on it or waiting', () => {
    const all = fleet(3);
    let r = step({ rollout: rolloutOf({ steps: [{ canary: 1 }] }), hosts: all, now: T0 }).rollout;
    const canary = r.status!.hosts.find((h) => h.wave === 0)!.host;
    const gone = r.status!.hosts.find((h) => h.wave === 1)!.host;
    r = runToEnd(r, () => all.filter((h) => h.name !== gone));
    assert.equal(r.status!.phase, P.ROLLOUT_PHASE_SUCCEEDED);
    assert.equal(hostOf(r, gone).phase, H.HOST_PHASE_SKIPPED);
    assert.equal(hostOf(r, gone).message, 'not registered when its wave ran');
    assert.equal(hostOf(r, canary).phase, H.HOST_PHASE_UPDATED);
    assert.deepEqual(r.status!.skippedHosts, [{ host: gone, reason: 'not registered when its wave ran' }]);
    assert.match(r.status!.message, /^2 of 3 selected hosts run pass-counter@2\.0\.0; skipped 1: /);
  });

  it('skips a host whose apply finds it unregistered (gone between the plan of a pass and its apply)', () => {
    let r = step({ rollout: rolloutOf({ steps: [{ canary: 1 }] }), hosts: fleet(2), now: T0 }).rollout;
    const d = step({ rollout: r, hosts: fleet(2), now: T0 });
    assert.equal(d.actions.length, 1);
    r = recordApply(d.rollout, d.actions[0]!, { ok: false, reason: 'HOST_GONE', message: 'host h01 is no longer registered' }, T0).rollout;
    assert.equal(hostOf(r, d.actions[0]!.host).phase, H.HOST_PHASE_SKIPPED);
    assert.equal(r.status!.skippedTotal, 1);
    const next = step({ rollout: r, hosts: fleet(2), now: T0 });
    assert.notEqual(next.rollout.status!.phase, P.ROLLOUT_PHASE_ROLLING_BACK, 'a host that is gone is no failed apply');
  });

  it('treats a BROKEN attachment as not running the version: skipped at plan, never counted as updated', () => {
    const hosts = [...fleet(2), hostView('h03', { running: TARGET, broken: 'NO_INTERFACE' })];
    const r = runToEnd(rolloutOf({ steps: [{ canary: 1 }] }), () => hosts);
    assert.equal(r.status!.phase, P.ROLLOUT_PHASE_SUCCEEDED);
    assert.equal(r.status!.hosts.some((h) => h.host === 'h03'), false, 'a broken host is not "already running the target version"');
    assert.deepEqual(r.status!.skippedHosts, [{ host: 'h03', reason: 'attachment broken (NO_INTERFACE)' }]);
  });

  it('skips a planned host whose attachment broke before its wave', () => {
    const all = fleet(3);
    let r = step({ rollout: rolloutOf({ steps: [{ canary: 1 }] }), hosts: all, now: T0 }).rollout;
    const late = r.status!.hosts.find((h) => h.wave === 1)!.host;
    r = runToEnd(r, () => all.map((h) => (h.name === late ? { ...h, broken: 'NETNS_GONE' } : h)));
    assert.equal(hostOf(r, late).phase, H.HOST_PHASE_SKIPPED);
    assert.equal(hostOf(r, late).message, 'attachment broken (NETNS_GONE) when its wave ran');
  });

  it('fails a rollout whose every selected host is down, naming them', () => {
    const d = reconcile({ rollout: rolloutOf(), target: TARGET, hosts: [], absent: [{ name: 'h01', labels: { role: 'edge' } }], now: T0, analyze: neverAnalyze });
    assert.equal(d.rollout.status!.phase, P.ROLLOUT_PHASE_FAILED);
    assert.match(d.rollout.status!.message, /skipped 1: h01 \(not registered\)$/);
  });

  it(`names at most ${SKIPPED_HOSTS_KEPT} skipped hosts and counts them all`, () => {
    const absent = Array.from({ length: SKIPPED_HOSTS_KEPT + 5 }, (_, i) => ({ name: `gone-${i}`, labels: { role: 'edge' } }));
    const d = reconcile({ rollout: rolloutOf(), target: TARGET, hosts: fleet(2), absent, now: T0, analyze: neverAnalyze });
    assert.equal(d.rollout.status!.skippedHosts.length, SKIPPED_HOSTS_KEPT);
    assert.equal(d.rollout.status!.skippedTotal, SKIPPED_HOSTS_KEPT + 5);
  });

  it('says how many hosts were selected and which were skipped, from the hosts or from a record\'s counts', () => {
    const all = fleet(3);
    const r = reconcile({ rollout: rolloutOf({ steps: [{ canary: 1 }] }), target: TARGET, hosts: all, absent: [{ name: 'h04', labels: { role: 'edge' } }], now: T0, analyze: neverAnalyze }).rollout;
    const gone = r.status!.hosts.find((h) => h.wave === 1)!.host;
    const end = runToEnd(r, () => all.filter((h) => h.name !== gone));
    assert.equal(selectionLine(end.status!), `4 hosts selected, 2 skipped: h04 (not registered), ${gone} (not registered when its wave ran)`);
    const record = { ...end.status!, hosts: [], hostCounts: { total: 3, pending: 0, updating: 0, updated: 2, failed: 0, rollingBack: 0, rolledBack: 0, restoreFailed: 0, skipped: 1 } };
    assert.equal(selectionLine(record), selectionLine(end.status!));
    assert.equal(selectionLine(runToEnd(rolloutOf(), () => fleet(2)).status!), '');
  });

  it('does not count an updated host whose attachment broke since as running the version, and says so', () => {
    const all = fleet(2);
    let r = step({ rollout: rolloutOf({ steps: [{ canary: 1 }] }), hosts: all, now: T0 }).rollout;
    const canary = r.status!.hosts.find((h) => h.wave === 0)!.host;
    r = runToEnd(r, (pass) => all.map((h) => (h.name === canary && pass >= 3 ? { ...h, broken: 'NO_INTERFACE' } : h)));
    assert.equal(r.status!.phase, P.ROLLOUT_PHASE_SUCCEEDED);
    assert.equal(r.status!.message, `1 of 2 selected hosts run pass-counter@2.0.0; attachment broken since updated: ${canary} (NO_INTERFACE)`);
  });
});
