/**
 * Rollouts, fleets and analysers for the rollout unit tests: a rollout of pass-counter
 * 1.0.0 → 2.0.0 on xdp:eth0 at a fixed clock. Depends on production code only.
 */
import assert from 'node:assert/strict';
import type { ModuleRef } from '../../proto/gen/bpfleet/v1/module.js';
import { HostPhase, Verdict, type AnalysisRun, type HostProgress, type Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import { recordApply, type ApplyAction } from './apply-results.js';
import { reconcile, type Decision } from './reconcile.js';
import { toRolloutSpec, type RolloutSpecInput } from './spec.js';
import type { AnalysisRequest, HostView } from './steps.js';

export const T0 = Date.parse('2026-01-01T00:00:00.000Z');
export const OLD: ModuleRef = { name: 'pass-counter', version: '1.0.0', digest: `sha256:${'a'.repeat(64)}` };
export const TARGET: ModuleRef = { name: 'pass-counter', version: '2.0.0', digest: `sha256:${'b'.repeat(64)}` };

export function rolloutOf(spec: Partial<RolloutSpecInput> = {}, id = 'r-1'): Rollout {
  return {
    id,
    spec: toRolloutSpec({ module: 'pass-counter', version: '2.0.0', attachment: 'xdp:eth0', steps: [{ canary: 1 }], ...spec }),
    status: undefined,
    createdAt: new Date(T0).toISOString(),
    createdBy: 'test',
    undoOf: '',
  };
}

export function hostView(name: string, over: Partial<HostView> = {}): HostView {
  return { name, labels: { role: 'edge' }, capabilities: ['xdp', 'tcx-ingress', 'tcx-egress'], running: OLD, ...over };
}

/** `n` hosts h01, h02, … running OLD. */
export const fleet = (n: number, over: Partial<HostView> = {}): HostView[] =>
  Array.from({ length: n }, (_, i) => hostView(`h${String(i + 1).padStart(2, '0')}`, over));

export function runOf(step: number, verdict: Verdict, at: number): AnalysisRun {
  return { step, verdict, metrics: [], at: new Date(at).toISOString(), summary: `stub ${Verdict[verdict]}`, staleHosts: [] };
}

/** An analyze() that answers `verdicts` in turn and remembers what it was asked. */
export function analyzer(...verdicts: Verdict[]) {
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

export const neverAnalyze = (): AnalysisRun => assert.fail('analyze must not be called here');

export interface Pass {
  rollout: Rollout;
  hosts: HostView[];
  now: number;
  analyze?: (req: AnalysisRequest) => AnalysisRun;
}

/** One reconcile() towards TARGET, with no operator requests. */
export function step({ rollout, hosts, now, analyze = neverAnalyze }: Pass): Decision {
  return reconcile({ rollout, target: TARGET, hosts, now, analyze });
}

/** Records every action as succeeded (progId 100, 101, …) or as rejected by the verifier. */
export function recordAll(rollout: Rollout, actions: ApplyAction[], now: number, ok = true): Rollout {
  let r = rollout;
  actions.forEach((a, i) => {
    r = recordApply(r, a, ok ? { ok: true, progId: 100 + i } : { ok: false, reason: 'VERIFIER_REJECTED', message: 'bad program' }, now).rollout;
  });
  return r;
}

export const hostsIn = (r: Rollout, phase: HostPhase) => r.status!.hosts.filter((h) => h.phase === phase).map((h) => h.host);
export const hostOf = (r: Rollout, name: string): HostProgress => r.status!.hosts.find((h) => h.host === name)!;

/** A rollout planned and with its canary wave updated: the state a bake step starts from. */
export function canaryDone(spec: Partial<RolloutSpecInput>, hosts: HostView[], now = T0): Rollout {
  let r = step({ rollout: rolloutOf(spec), hosts, now }).rollout;
  const d = step({ rollout: r, hosts, now });
  r = recordAll(d.rollout, d.actions, now);
  r = step({ rollout: r, hosts, now }).rollout;
  assert.equal(r.status!.step, 1, 'canary step should be done');
  return r;
}
