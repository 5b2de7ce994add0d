import type { Rollout, RolloutRequest } from '../../proto/gen/bpfleet/v1/rollout.js';
import { applyRequest, pendingRequests } from './requests.js';
import { runSteps, type StepInput, type StepOutput } from './steps.js';
import { emptyStatus } from './vocabulary.js';

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
    d.events.push(outcome.kind === 'applied'
      ? outcome.event
      : { kind: 'request', request: { verb: req.verb, actor: req.actor, reason: req.reason }, outcome: outcome.kind, why: outcome.why });
    d.requeueAfterMs = 0;
  }
  runSteps(input, status, d);
  if (d.events.length) status.updatedAt = new Date(input.now).toISOString();
  return d;
}
