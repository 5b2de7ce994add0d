import type { Rollout, RolloutRequest } from '../../proto/gen/bpfleet/v1/rollout.js';
import { applyRequest, pendingRequests } from './requests.js';
import { runSteps, type StepInput, type StepOutput } from './steps.js';
import { describe } from './events.js';
import { emptyStatus } from './vocabulary.js';

/** How many request outcomes a status keeps (the newest). */
export const REQUEST_OUTCOMES_KEPT = 20;

export interface ReconcileInput extends StepInput {
  /** Operators' requests on this rollout, any order; those after status.observedRequest are acted on first. */
  requests?: readonly RolloutRequest[];
}

export interface Decision extends StepOutput {
  rollout: Rollout;
}

/**
 * The rollout controller's decision, as a pure function of the rollout, the fleet and
 * the clock: what the status becomes and which applies to send. Operators' new requests
 * come first, then the step machine (steps.ts) moves the rollout on. The loop around it
 * does the I/O, persists the status before sending the actions, and feeds results back
 * with recordApplies() (apply-results.ts).
 */
export function reconcile(input: ReconcileInput): Decision {
  const rollout = structuredClone(input.rollout);
  const status = (rollout.status ??= emptyStatus());
  const d: Decision = { rollout, actions: [], requeueAfterMs: null, events: [] };
  for (const req of pendingRequests(status, input.requests ?? [])) {
    const outcome = applyRequest(rollout, req, input.now);
    // The API answered OK when it recorded the request; what the controller then did with it
    // is here, so the CLI can wait for it and say (and exit with) which.
    status.requestOutcomes = [...status.requestOutcomes, {
      seq: req.seq,
      verb: req.verb,
      applied: outcome.kind !== 'refused',
      reason: outcome.kind === 'refused' ? outcome.reason : '',
      message: outcome.kind === 'applied' ? describe(outcome.event) : outcome.why,
    }].slice(-REQUEST_OUTCOMES_KEPT);
    d.events.push(outcome.kind === 'applied'
      ? outcome.event
      : { kind: 'request', request: { verb: req.verb, actor: req.actor, reason: req.reason }, outcome: outcome.kind, why: outcome.why });
    d.requeueAfterMs = 0;
  }
  runSteps(input, status, d);
  if (d.events.length) status.updatedAt = new Date(input.now).toISOString();
  return d;
}
