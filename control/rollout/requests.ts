/**
 * Operators' requests (pause, resume, promote, abort): which ones the controller has yet to
 * act on, and what each does to a rollout.
 */
import type { ErrorReason } from '../../common/errors.js';
import { HostPhase, RolloutPhase, RolloutVerb, type Rollout, type RolloutRequest, type RolloutStatus } from '../../proto/gen/bpfleet/v1/rollout.js';
import { describe, requestedBy, type RequestBy, type RolloutEvent } from './events.js';
import { endOfStep, giveUp, moveOn } from './steps.js';
import { emptyStatus, isFinalPhase, phaseName } from './vocabulary.js';

const P = RolloutPhase;

/** What an operator's request did: changed the rollout (saying so in `event`), changed nothing, or cannot apply. */
export type RequestOutcome =
  | { kind: 'applied'; event: RolloutEvent }
  | { kind: 'unchanged'; why: string }
  | { kind: 'refused'; reason: ErrorReason; why: string };

/** Requests the controller has not acted on yet, oldest first. */
export function pendingRequests(status: RolloutStatus | undefined, requests: readonly RolloutRequest[]): RolloutRequest[] {
  const seen = status?.observedRequest ?? 0;
  return requests.filter((r) => r.seq > seen).sort((a, b) => a.seq - b.seq);
}

/**
 * What one operator request does to a rollout; changes `rollout.status` in place. The
 * controller calls it from reconcile(); the API calls it on a copy before recording a
 * request, so a verb the controller would not act on is refused up front with the same
 * words.
 */
export function applyRequest(rollout: Rollout, req: RolloutRequest, now: number): RequestOutcome {
  const status = (rollout.status ??= emptyStatus());
  status.observedRequest = Math.max(status.observedRequest, req.seq);
  if (isFinalPhase(status.phase)) {
    return { kind: 'refused', reason: 'ROLLOUT_FINISHED', why: `rollout ${rollout.id} already ended (${phaseName(status.phase)})` };
  }
  const request: RequestBy = { verb: req.verb, actor: req.actor, reason: req.reason };
  if (status.phase === P.ROLLOUT_PHASE_ROLLING_BACK) {
    if (req.verb === RolloutVerb.ROLLOUT_VERB_ABORT) return abortRollback(status, request);
    return { kind: 'refused', reason: 'ROLLING_BACK', why: `rollout ${rollout.id} is rolling back and can only finish (abort ends its retries)` };
  }
  switch (req.verb) {
    case RolloutVerb.ROLLOUT_VERB_PAUSE:
      if (status.phase === P.ROLLOUT_PHASE_PAUSED) return { kind: 'unchanged', why: `rollout ${rollout.id} is already paused` };
      status.phase = P.ROLLOUT_PHASE_PAUSED;
      return applied(status, request);
    case RolloutVerb.ROLLOUT_VERB_RESUME:
      if (status.phase !== P.ROLLOUT_PHASE_PAUSED) {
        return { kind: 'refused', reason: 'NOT_PAUSED', why: `rollout ${rollout.id} is not paused (${phaseName(status.phase)})` };
      }
      return resume(rollout, now, request);
    case RolloutVerb.ROLLOUT_VERB_PROMOTE:
      if (status.promoted) return { kind: 'unchanged', why: `rollout ${rollout.id} is already promoted` };
      status.promoted = true;
      if (status.phase === P.ROLLOUT_PHASE_PAUSED) return resume(rollout, now, request);
      return applied(status, request);
    case RolloutVerb.ROLLOUT_VERB_ABORT: {
      status.aborted = true;
      const by = requestedBy(request);
      if (!planned(status)) {
        status.phase = P.ROLLOUT_PHASE_ABORTED;
        status.message = `${by} before any host was touched`;
        return { kind: 'applied', event: { kind: 'finished', phase: status.phase, message: status.message } };
      }
      const ended = status.phase === P.ROLLOUT_PHASE_PROGRESSING ? endOfStep(rollout.spec!.steps, status, now, 'failed') : undefined;
      status.phase = P.ROLLOUT_PHASE_ROLLING_BACK;
      status.message = by;
      return { kind: 'applied', event: { kind: 'rolling-back', reason: `${by}; restoring every host it updated`, ended } };
    }
    default:
      return { kind: 'refused', reason: 'UNKNOWN_VERB', why: `unknown verb ${String(req.verb)}` };
  }
}

const planned = (status: RolloutStatus): boolean => status.digest !== '';

/**
 * Abort during a rollback: hosts whose restore already failed are not retried any more
 * (they are recorded RESTORE_FAILED, named in the final message); the rollback then ends
 * ABORTED on its next pass. A host not yet tried cannot exist here: a rollback sends every
 * host its first restore in the pass that starts it.
 */
function abortRollback(status: RolloutStatus, request: RequestBy): RequestOutcome {
  status.aborted = true;
  const by = requestedBy(request);
  for (const h of status.hosts) if (h.phase === HostPhase.HOST_PHASE_ROLLING_BACK) giveUp(h, `(${by} after ${h.rollbackAttempts} attempts)`);
  status.message = `${status.message}; ${by}`;
  return { kind: 'applied', event: { kind: 'request', request, outcome: 'applied' } };
}

/** A request applied as its own words say; they become the status message. */
function applied(status: RolloutStatus, request: RequestBy): RequestOutcome {
  const event: RolloutEvent = { kind: 'request', request, outcome: 'applied' };
  status.message = describe(event);
  return { kind: 'applied', event };
}

/** Back to work after a pause; a `pause` step is done once resumed. */
function resume(rollout: Rollout, now: number, request: RequestBy): RequestOutcome {
  const status = rollout.status!;
  const steps = rollout.spec!.steps;
  if (!planned(status)) {
    status.phase = P.ROLLOUT_PHASE_PENDING;
    return applied(status, request);
  }
  status.phase = P.ROLLOUT_PHASE_PROGRESSING;
  if (steps[status.step]?.kind?.$case === 'pause') return { kind: 'applied', event: moveOn(steps, status, now, { by: 'request', request }) };
  return applied(status, request);
}
