/**
 * Operators' requests (pause, resume, promote, abort): which ones the controller has yet to
 * act on, and what each does to a rollout.
 */
import { RolloutPhase, RolloutVerb, type Rollout, type RolloutRequest, type RolloutStatus } from '../../proto/gen/bpfleet/v1/rollout.js';
import { moveOn } from './steps.js';
import { emptyStatus, isFinalPhase, phaseName, verbPast } from './vocabulary.js';

const P = RolloutPhase;

/** What an operator's request did: changed the rollout, changed nothing, or cannot apply. */
export type RequestOutcome =
  | { kind: 'applied'; event: string }
  | { kind: 'unchanged'; why: string }
  | { kind: 'refused'; reason: string; why: string };

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
  if (status.phase === P.ROLLOUT_PHASE_ROLLING_BACK) {
    return { kind: 'refused', reason: 'ROLLING_BACK', why: `rollout ${rollout.id} is rolling back and can only finish` };
  }
  const by = `${verbPast(req.verb)} by ${req.actor}${req.reason ? ` (${req.reason})` : ''}`;
  switch (req.verb) {
    case RolloutVerb.ROLLOUT_VERB_PAUSE:
      if (status.phase === P.ROLLOUT_PHASE_PAUSED) return { kind: 'unchanged', why: `rollout ${rollout.id} is already paused` };
      status.phase = P.ROLLOUT_PHASE_PAUSED;
      status.message = `${by}: resume to continue`;
      return { kind: 'applied', event: status.message };
    case RolloutVerb.ROLLOUT_VERB_RESUME:
      if (status.phase !== P.ROLLOUT_PHASE_PAUSED) {
        return { kind: 'refused', reason: 'NOT_PAUSED', why: `rollout ${rollout.id} is not paused (${phaseName(status.phase)})` };
      }
      return { kind: 'applied', event: resume(rollout, now, by) };
    case RolloutVerb.ROLLOUT_VERB_PROMOTE: {
      if (status.promoted) return { kind: 'unchanged', why: `rollout ${rollout.id} is already promoted` };
      status.promoted = true;
      const why = `${by}: remaining bake, analysis and pause steps are skipped`;
      if (status.phase === P.ROLLOUT_PHASE_PAUSED) return { kind: 'applied', event: resume(rollout, now, why) };
      status.message = why;
      return { kind: 'applied', event: why };
    }
    case RolloutVerb.ROLLOUT_VERB_ABORT:
      status.aborted = true;
      if (!planned(status)) {
        status.phase = P.ROLLOUT_PHASE_ABORTED;
        status.message = `${by} before any host was touched`;
        return { kind: 'applied', event: `aborted: ${status.message}` };
      }
      status.phase = P.ROLLOUT_PHASE_ROLLING_BACK;
      status.message = by;
      return { kind: 'applied', event: `rolling back: ${by}; restoring every host it updated` };
    default:
      return { kind: 'refused', reason: 'UNKNOWN_VERB', why: `unknown verb ${String(req.verb)}` };
  }
}

const planned = (status: RolloutStatus): boolean => status.digest !== '';

/** Back to work after a pause; a `pause` step is done once resumed. */
function resume(rollout: Rollout, now: number, why: string): string {
  const status = rollout.status!;
  const steps = rollout.spec!.steps;
  if (!planned(status)) {
    status.phase = P.ROLLOUT_PHASE_PENDING;
    status.message = why;
    return why;
  }
  status.phase = P.ROLLOUT_PHASE_PROGRESSING;
  if (steps[status.step]?.kind?.$case === 'pause') return moveOn(steps, status, now, why);
  status.message = why;
  return why;
}
