import type { ModuleRef } from '../../proto/gen/bpfleet/v1/module.js';
import { HostPhase, type HostProgress, type Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import type { RolloutEvent } from './events.js';
import { skip } from './skipped.js';
import type { ApplyPurpose } from './vocabulary.js';

/** Make `host` run `module` (null: detach), replacing `expectedDigest`. */
export interface ApplyAction {
  kind: 'apply';
  host: string;
  module: ModuleRef | null;
  expectedDigest: string;
  purpose: ApplyPurpose;
}

export type ApplyOutcome = { ok: true; progId: number } | { ok: false; reason: string; message: string; detail?: string };

const H = HostPhase;
// Enough of a verifier log to show the failing instruction; the status is stored in etcd.
const DETAIL_LINES = 30;

/** Folds the result of an apply into the status (pure, like reconcile). */
export function recordApply(rollout: Rollout, action: ApplyAction, outcome: ApplyOutcome, now: number): { rollout: Rollout; event: RolloutEvent } {
  const { rollout: r, events } = recordApplies(rollout, [{ action, outcome }], now);
  return { rollout: r, event: events[0]! };
}

/** recordApply for many results at once: one copy of the rollout, not one per host. */
export function recordApplies(rollout: Rollout, results: readonly { action: ApplyAction; outcome: ApplyOutcome }[], now: number): { rollout: Rollout; events: RolloutEvent[] } {
  const r = structuredClone(rollout);
  const byHost = new Map(r.status!.hosts.map((h) => [h.host, h]));
  const events = results.map(({ action, outcome }) => foldApply(r, byHost.get(action.host), action, outcome, now));
  return { rollout: r, events };
}

function foldApply(r: Rollout, h: HostProgress | undefined, action: ApplyAction, outcome: ApplyOutcome, now: number): RolloutEvent {
  if (!h) return { kind: 'apply-ignored', host: action.host };
  const { host, purpose } = action;
  r.status!.updatedAt = new Date(now).toISOString();
  if (outcome.ok) {
    h.phase = action.purpose === 'update' ? H.HOST_PHASE_UPDATED : H.HOST_PHASE_ROLLED_BACK;
    h.progId = outcome.progId;
    h.message = '';
    // A rollback keeps the detail: it is why the host was rolled back.
    if (action.purpose === 'update') h.detail = '';
    return { kind: 'apply-result', host, purpose, result: { ok: true, progId: outcome.progId } };
  }
  if (action.purpose === 'update' && outcome.reason === 'HOST_GONE') {
    // Gone between the plan of this pass and its apply: as if gone when its wave ran.
    const why = 'not registered when its wave ran';
    h.phase = H.HOST_PHASE_SKIPPED;
    h.message = why;
    skip(r.status!, host, why);
    return { kind: 'host-skipped', host, why };
  }
  h.message = `${outcome.reason}: ${outcome.message}`;
  if (outcome.detail) h.detail = outcome.detail.split('\n').slice(-DETAIL_LINES).join('\n');
  if (action.purpose === 'update') h.phase = H.HOST_PHASE_FAILED;
  else h.rollbackAttempts++;
  return { kind: 'apply-result', host, purpose, result: { ok: false, reason: outcome.reason, message: outcome.message } };
}
