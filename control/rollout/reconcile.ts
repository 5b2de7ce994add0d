import type { ModuleRef } from '../../proto/gen/bpfleet/v1/module.js';
import {
  FailurePolicy,
  HostPhase,
  RolloutPhase,
  RolloutVerb,
  Verdict,
  type AnalysisRun,
  type HostProgress,
  type Rollout,
  type RolloutRequest,
  type RolloutStatus,
  type Step,
} from '../../proto/gen/bpfleet/v1/rollout.js';
import { describeStep } from './spec.js';
import { emptyStatus, isFinalPhase, phaseName, verbName, verbPast, verdictName } from './vocabulary.js';
import { maxUnavailableOf, planWaves } from './waves.js';

/** A registered host as the controller sees it, for one attachment. */
export interface HostView {
  name: string;
  labels: Record<string, string>;
  capabilities: string[];
  /** What the host's agent reports running on the rollout's attachment. */
  running: ModuleRef | null;
}

export interface AnalysisRequest {
  step: number;
  canaryHosts: string[];
  baselineHosts: string[];
  from: number;
  to: number;
}

export interface ReconcileInput {
  rollout: Rollout;
  /** The module version being rolled out, with its digest. */
  target: ModuleRef;
  hosts: HostView[];
  /** Hosts with an Apply in flight from this controller process. */
  inFlight: ReadonlySet<string>;
  now: number;
  analyze: (req: AnalysisRequest) => AnalysisRun;
  /** Operators' requests on this rollout, any order; those after status.observedRequest are acted on first. */
  requests?: readonly RolloutRequest[];
}

/** Make `host` run `module` (null: detach), replacing `expectedDigest`. */
export interface ApplyAction {
  kind: 'apply';
  host: string;
  module: ModuleRef | null;
  expectedDigest: string;
  purpose: 'update' | 'rollback';
}

export interface Decision {
  rollout: Rollout;
  actions: ApplyAction[];
  /** When to look again even if nothing changes; null: only on events. */
  requeueAfterMs: number | null;
  /** What happened, for the audit log and the operator. */
  events: string[];
}

export type ApplyOutcome = { ok: true; progId: number } | { ok: false; reason: string; message: string; detail?: string };

const P = RolloutPhase;
const PLAN_HOSTS_SHOWN = 20;
const H = HostPhase;
// How long to wait before re-trying a failed rollback apply on an unreachable host.
const ROLLBACK_RETRY_MS = 2000;
// Enough of a verifier log to show the failing instruction; the status is stored in etcd.
const DETAIL_LINES = 30;

/**
 * The rollout controller's decision, as a pure function of the rollout, the fleet and
 * the clock: what the status becomes and which applies to send. The loop around it does
 * the I/O, persists the status before sending the actions, and feeds results back with
 * recordApply().
 */
export function reconcile(input: ReconcileInput): Decision {
  const rollout = structuredClone(input.rollout);
  const status = (rollout.status ??= emptyStatus());
  const d: Decision = { rollout, actions: [], requeueAfterMs: null, events: [] };
  for (const req of pendingRequests(status, input.requests ?? [])) {
    const outcome = applyRequest(rollout, req, input.now);
    d.events.push(outcome.kind === 'applied' ? outcome.event : `${verbName(req.verb)} by ${req.actor} changed nothing: ${outcome.why}`);
    d.requeueAfterMs = 0;
  }
  switch (status.phase) {
    case P.ROLLOUT_PHASE_UNSPECIFIED:
    case P.ROLLOUT_PHASE_PENDING:
      plan(input, status, d);
      break;
    case P.ROLLOUT_PHASE_PROGRESSING:
      progress(input, status, d);
      break;
    case P.ROLLOUT_PHASE_ROLLING_BACK:
      rollBack(input, status, d);
      break;
    case P.ROLLOUT_PHASE_PAUSED:
      // A pause holds back new applies, not the rollback of an apply that already failed.
      failOnFailedHosts(input, status, d);
      break;
    default:
      // Final phases never move again.
      break;
  }
  if (d.events.length) status.updatedAt = new Date(input.now).toISOString();
  return d;
}

function plan(input: ReconcileInput, status: RolloutStatus, d: Decision): void {
  const spec = input.rollout.spec!;
  const hook = spec.attachment.split(':')[0]!;
  const selected = input.hosts.filter((h) => Object.entries(spec.selector).every(([k, v]) => h.labels[k] === v));
  if (selected.length === 0) {
    finish(status, d, P.ROLLOUT_PHASE_FAILED, `no registered host matches the selector ${JSON.stringify(spec.selector)}`);
    return;
  }
  const lacking = selected.filter((h) => !h.capabilities.includes(hook));
  if (lacking.length) {
    finish(status, d, P.ROLLOUT_PHASE_FAILED, `hosts cannot run ${hook} programs: ${lacking.map((h) => h.name).join(', ')}`);
    return;
  }
  // A rollback restores <this module>@<previous version>, so a host running another module
  // there could never be restored; and that module is not this rollout's to replace.
  const foreign = selected.filter((h) => h.running && h.running.name !== input.target.name);
  if (foreign.length) {
    finish(status, d, P.ROLLOUT_PHASE_FAILED, `hosts run another module on ${spec.attachment}: ${foreign.map((h) => `${h.name} (${h.running!.name}@${h.running!.version})`).join(', ')}`);
    return;
  }
  const waves = planWaves(input.rollout.id, spec.steps, selected.map((h) => h.name));
  status.hosts = selected.map((h): HostProgress => ({
    host: h.name,
    wave: waves.get(h.name)!,
    phase: h.running?.digest === input.target.digest ? H.HOST_PHASE_UPDATED : H.HOST_PHASE_PENDING,
    previousDigest: h.running?.digest ?? '',
    previousVersion: h.running?.version ?? '',
    message: h.running?.digest === input.target.digest ? 'already running the target version' : '',
    progId: 0,
    detail: '',
  })).sort((a, b) => a.wave - b.wave || a.host.localeCompare(b.host));
  status.digest = input.target.digest;
  status.phase = P.ROLLOUT_PHASE_PROGRESSING;
  status.step = 0;
  status.stepStartedAt = new Date(input.now).toISOString();
  const waveSizes = spec.steps.map((_, i) => status.hosts.filter((h) => h.wave === i).length);
  // The event lands in the audit log and the logs: name the first waves' hosts, not a
  // fleet's worth (the plan itself is in the status, host by host).
  const shown = status.hosts.slice(0, PLAN_HOSTS_SHOWN).map((h) => `${h.host}→wave ${h.wave}`).join(', ');
  const more = status.hosts.length > PLAN_HOSTS_SHOWN ? ` and ${status.hosts.length - PLAN_HOSTS_SHOWN} more` : '';
  d.events.push(`planned ${status.hosts.length} hosts: ${shown}${more} (wave sizes ${waveSizes.join('/')})`);
  d.requeueAfterMs = 0;
}

function failOnFailedHosts(input: ReconcileInput, status: RolloutStatus, d: Decision): boolean {
  const failed = status.hosts.filter((h) => h.phase === H.HOST_PHASE_FAILED);
  if (failed.length) fail(input, status, d, `apply failed on ${failed.map((h) => `${h.host} (${h.message})`).join(', ')}`);
  return failed.length > 0;
}

function progress(input: ReconcileInput, status: RolloutStatus, d: Decision): void {
  const spec = input.rollout.spec!;
  if (failOnFailedHosts(input, status, d)) return;
  const i = status.step;
  const step = spec.steps[i];
  if (!step) {
    if (updateWave(input, status, d, spec.steps.length)) {
      finish(status, d, P.ROLLOUT_PHASE_SUCCEEDED, `all ${status.hosts.length} hosts run ${spec.module}@${spec.version}`);
    }
    return;
  }
  const kind = step.kind;
  switch (kind?.$case) {
    case 'canary':
    case 'percent':
      if (updateWave(input, status, d, i)) advance(input, status, d, `${describeStep(step)} done`);
      return;
    case 'bakeMs':
      if (status.promoted) advance(input, status, d, `${describeStep(step)} skipped (promoted)`);
      else bake(input, status, d, kind.value);
      return;
    case 'pause':
      if (status.promoted) {
        advance(input, status, d, 'pause skipped (promoted)');
        return;
      }
      status.phase = P.ROLLOUT_PHASE_PAUSED;
      status.message = `paused at step ${i + 1}: resume to continue`;
      d.events.push(status.message);
      return;
    default:
      fail(input, status, d, `step ${i + 1} has no kind`);
  }
}

/** Sends applies for hosts of waves ≤ maxWave within maxUnavailable; true once all are updated. */
function updateWave(input: ReconcileInput, status: RolloutStatus, d: Decision, maxWave: number): boolean {
  const spec = input.rollout.spec!;
  const inWave = status.hosts.filter((h) => h.wave <= maxWave);
  if (inWave.every((h) => h.phase === H.HOST_PHASE_UPDATED)) return true;
  const budget = maxUnavailableOf(spec.maxUnavailable, status.hosts.length);
  const updating = inWave.filter((h) => h.phase === H.HOST_PHASE_UPDATING);
  // A host left UPDATING by a previous leader has no apply in flight here: send it again
  // (Apply is idempotent, so a host that did switch reports "unchanged").
  for (const h of updating.filter((x) => !input.inFlight.has(x.host))) {
    d.actions.push(updateAction(input, h));
  }
  let free = budget - updating.length;
  for (const h of inWave) {
    if (free <= 0) break;
    if (h.phase !== H.HOST_PHASE_PENDING) continue;
    h.phase = H.HOST_PHASE_UPDATING;
    h.message = '';
    d.actions.push(updateAction(input, h));
    d.events.push(`applying ${spec.module}@${spec.version} to ${h.host} (wave ${h.wave})`);
    free--;
  }
  return false;
}

function updateAction(input: ReconcileInput, h: HostProgress): ApplyAction {
  return { kind: 'apply', host: h.host, module: input.target, expectedDigest: h.previousDigest, purpose: 'update' };
}

function bake(input: ReconcileInput, status: RolloutStatus, d: Decision, bakeMs: number): void {
  const spec = input.rollout.spec!;
  const started = Date.parse(status.stepStartedAt);
  const due = started + bakeMs;
  if (input.now < due) {
    d.requeueAfterMs = due - input.now;
    return;
  }
  const interval = spec.analysis!.intervalMs;
  const last = status.analyses.filter((a) => a.step === status.step).at(-1);
  if (last && input.now - Date.parse(last.at) < interval) {
    d.requeueAfterMs = interval - (input.now - Date.parse(last.at));
    return;
  }
  const run = input.analyze({
    step: status.step,
    canaryHosts: status.hosts.filter((h) => h.phase === H.HOST_PHASE_UPDATED).map((h) => h.host),
    baselineHosts: status.hosts.filter((h) => h.phase === H.HOST_PHASE_PENDING).map((h) => h.host),
    from: started,
    to: input.now,
  });
  status.analyses.push(run);
  d.events.push(`analysis at step ${status.step + 1}: ${verdictName(run.verdict)} — ${run.summary}`);
  if (run.verdict === Verdict.VERDICT_PASS) {
    advance(input, status, d, `bake ${bakeMs}ms passed analysis`);
  } else if (run.verdict === Verdict.VERDICT_FAIL) {
    status.failuresInStep++;
    status.inconclusiveInARow = 0;
    const tolerated = spec.analysis!.failureLimit;
    if (status.failuresInStep > tolerated) {
      fail(input, status, d, `analysis failed: ${run.summary}`);
    } else {
      status.message = `holding after failure ${status.failuresInStep} of ${tolerated} tolerated: ${run.summary}`;
      d.requeueAfterMs = interval;
    }
  } else {
    status.inconclusiveInARow++;
    if (status.inconclusiveInARow > spec.analysis!.inconclusiveLimit) {
      fail(input, status, d, `no conclusive evidence after ${status.inconclusiveInARow} analyses: ${run.summary}`);
    } else {
      status.message = `holding: ${run.summary}`;
      d.requeueAfterMs = interval;
    }
  }
}

function advance(input: ReconcileInput, status: RolloutStatus, d: Decision, why: string): void {
  d.events.push(moveOn(input.rollout.spec!.steps, status, input.now, why));
  d.requeueAfterMs = 0;
}

function moveOn(steps: readonly Step[], status: RolloutStatus, now: number, why: string): string {
  status.step++;
  status.stepStartedAt = new Date(now).toISOString();
  status.inconclusiveInARow = 0;
  status.failuresInStep = 0;
  const next = steps[status.step];
  status.message = `${why}; now ${next ? `step ${status.step + 1}/${steps.length}: ${describeStep(next)}` : 'finishing the last wave'}`;
  return status.message;
}

function fail(input: ReconcileInput, status: RolloutStatus, d: Decision, reason: string): void {
  if (input.rollout.spec!.onFailure === FailurePolicy.FAILURE_POLICY_HALT) {
    finish(status, d, P.ROLLOUT_PHASE_FAILED, `${reason}; halted without rollback (onFailure: halt)`);
    return;
  }
  status.phase = P.ROLLOUT_PHASE_ROLLING_BACK;
  status.message = reason;
  d.events.push(`rolling back: ${reason}`);
  d.requeueAfterMs = 0;
}

function rollBack(input: ReconcileInput, status: RolloutStatus, d: Decision): void {
  const touched = (h: HostProgress) =>
    h.phase === H.HOST_PHASE_UPDATED || h.phase === H.HOST_PHASE_FAILED || h.phase === H.HOST_PHASE_ROLLING_BACK
    || (h.phase === H.HOST_PHASE_UPDATING && !input.inFlight.has(h.host));
  // A host still ROLLING_BACK with nothing in flight saw its last attempt fail (success
  // makes it ROLLED_BACK). The loop re-runs reconcile as soon as results are recorded, so
  // without a pause a host that is gone would be retried in a tight loop of etcd writes.
  const sinceChange = input.now - Date.parse(status.updatedAt);
  const retryDue = !(sinceChange < ROLLBACK_RETRY_MS);
  for (const h of status.hosts) {
    if (!touched(h) || input.inFlight.has(h.host)) continue;
    if (h.phase === H.HOST_PHASE_ROLLING_BACK && !retryDue) continue;
    if (h.phase !== H.HOST_PHASE_ROLLING_BACK) d.events.push(`restoring ${h.host} to ${h.previousVersion || 'nothing'}`);
    h.phase = H.HOST_PHASE_ROLLING_BACK;
    d.actions.push({
      kind: 'apply',
      host: h.host,
      module: h.previousDigest ? { name: input.target.name, version: h.previousVersion, digest: h.previousDigest } : null,
      expectedDigest: input.target.digest,
      purpose: 'rollback',
    });
  }
  const pending = status.hosts.filter((h) => h.phase === H.HOST_PHASE_ROLLING_BACK || h.phase === H.HOST_PHASE_UPDATING);
  if (pending.length === 0) {
    finish(status, d, status.aborted ? P.ROLLOUT_PHASE_ABORTED : P.ROLLOUT_PHASE_ROLLED_BACK, status.message);
  } else if (d.actions.length === 0) {
    d.requeueAfterMs = retryDue ? ROLLBACK_RETRY_MS : ROLLBACK_RETRY_MS - sinceChange;
  }
}

function finish(status: RolloutStatus, d: Decision, phase: RolloutPhase, message: string): void {
  status.phase = phase;
  status.message = message;
  d.events.push(`${phaseName(phase)}: ${message}`);
  d.requeueAfterMs = null;
}

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

/** Folds the result of an apply into the status (pure, like reconcile). */
export function recordApply(rollout: Rollout, action: ApplyAction, outcome: ApplyOutcome, now: number): { rollout: Rollout; event: string } {
  const { rollout: r, events } = recordApplies(rollout, [{ action, outcome }], now);
  return { rollout: r, event: events[0]! };
}

/** recordApply for many results at once: one copy of the rollout, not one per host. */
export function recordApplies(rollout: Rollout, results: readonly { action: ApplyAction; outcome: ApplyOutcome }[], now: number): { rollout: Rollout; events: string[] } {
  const r = structuredClone(rollout);
  const byHost = new Map(r.status!.hosts.map((h) => [h.host, h]));
  const events = results.map(({ action, outcome }) => foldApply(r, byHost.get(action.host), action, outcome, now));
  return { rollout: r, events };
}

function foldApply(r: Rollout, h: HostProgress | undefined, action: ApplyAction, outcome: ApplyOutcome, now: number): string {
  if (!h) return `ignored result for unplanned host ${action.host}`;
  r.status!.updatedAt = new Date(now).toISOString();
  if (outcome.ok) {
    h.phase = action.purpose === 'update' ? H.HOST_PHASE_UPDATED : H.HOST_PHASE_ROLLED_BACK;
    h.progId = outcome.progId;
    h.message = '';
    // A rollback keeps the detail: it is why the host was rolled back.
    if (action.purpose === 'update') h.detail = '';
    return `${action.host}: ${action.purpose === 'update' ? 'updated' : 'rolled back'} (prog ${outcome.progId})`;
  }
  h.message = `${outcome.reason}: ${outcome.message}`;
  if (outcome.detail) h.detail = outcome.detail.split('\n').slice(-DETAIL_LINES).join('\n');
  if (action.purpose === 'update') h.phase = H.HOST_PHASE_FAILED;
  return `${action.host}: ${action.purpose} failed: ${h.message}`;
}
