import type { ModuleRef } from '../../proto/gen/bpfleet/v1/module.js';
import {
  FailurePolicy,
  HostPhase,
  RolloutPhase,
  Verdict,
  type AnalysisRun,
  type HostProgress,
  type Rollout,
  type RolloutStatus,
} from '../../proto/gen/bpfleet/v1/rollout.js';
import { describeStep } from './spec.js';
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

export type ApplyOutcome = { ok: true; progId: number } | { ok: false; reason: string; message: string };

const P = RolloutPhase;
const H = HostPhase;
// How long to wait before re-trying a failed rollback apply on an unreachable host.
const ROLLBACK_RETRY_MS = 2000;

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
    default:
      // Paused and final phases wait for a verb.
      break;
  }
  if (d.events.length) status.updatedAt = new Date(input.now).toISOString();
  return d;
}

export function emptyStatus(): RolloutStatus {
  return {
    phase: P.ROLLOUT_PHASE_PENDING, step: 0, hosts: [], analyses: [], message: '',
    stepStartedAt: '', updatedAt: '', inconclusiveInARow: 0, digest: '',
  };
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
  })).sort((a, b) => a.wave - b.wave || a.host.localeCompare(b.host));
  status.digest = input.target.digest;
  status.phase = P.ROLLOUT_PHASE_PROGRESSING;
  status.step = 0;
  status.stepStartedAt = new Date(input.now).toISOString();
  const waveSizes = spec.steps.map((_, i) => status.hosts.filter((h) => h.wave === i).length);
  d.events.push(`planned ${status.hosts.length} hosts: ${status.hosts.map((h) => `${h.host}→wave ${h.wave}`).join(', ')} (wave sizes ${waveSizes.join('/')})`);
  d.requeueAfterMs = 0;
}

function progress(input: ReconcileInput, status: RolloutStatus, d: Decision): void {
  const spec = input.rollout.spec!;
  const failed = status.hosts.filter((h) => h.phase === H.HOST_PHASE_FAILED);
  if (failed.length) {
    fail(input, status, d, `apply failed on ${failed.map((h) => `${h.host} (${h.message})`).join(', ')}`);
    return;
  }
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
      bake(input, status, d, kind.value);
      return;
    case 'pause':
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
  d.events.push(`analysis at step ${status.step + 1}: ${Verdict[run.verdict].replace('VERDICT_', '').toLowerCase()} — ${run.summary}`);
  if (run.verdict === Verdict.VERDICT_PASS) {
    advance(input, status, d, `bake ${bakeMs}ms passed analysis`);
  } else if (run.verdict === Verdict.VERDICT_FAIL) {
    fail(input, status, d, `analysis failed: ${run.summary}`);
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
  status.step++;
  status.stepStartedAt = new Date(input.now).toISOString();
  status.inconclusiveInARow = 0;
  const steps = input.rollout.spec!.steps;
  const next = steps[status.step];
  status.message = `${why}; now ${next ? `step ${status.step + 1}/${steps.length}: ${describeStep(next)}` : 'finishing the last wave'}`;
  d.events.push(status.message);
  d.requeueAfterMs = 0;
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
    finish(status, d, P.ROLLOUT_PHASE_ROLLED_BACK, status.message);
  } else if (d.actions.length === 0) {
    d.requeueAfterMs = retryDue ? ROLLBACK_RETRY_MS : ROLLBACK_RETRY_MS - sinceChange;
  }
}

function finish(status: RolloutStatus, d: Decision, phase: RolloutPhase, message: string): void {
  status.phase = phase;
  status.message = message;
  d.events.push(`${P[phase].replace('ROLLOUT_PHASE_', '').toLowerCase()}: ${message}`);
  d.requeueAfterMs = null;
}

/** Folds the result of an apply into the status (pure, like reconcile). */
export function recordApply(rollout: Rollout, action: ApplyAction, outcome: ApplyOutcome, now: number): { rollout: Rollout; event: string } {
  const r = structuredClone(rollout);
  const h = r.status!.hosts.find((x) => x.host === action.host);
  if (!h) return { rollout: r, event: `ignored result for unplanned host ${action.host}` };
  r.status!.updatedAt = new Date(now).toISOString();
  if (outcome.ok) {
    h.phase = action.purpose === 'update' ? H.HOST_PHASE_UPDATED : H.HOST_PHASE_ROLLED_BACK;
    h.progId = outcome.progId;
    h.message = '';
    return { rollout: r, event: `${action.host}: ${action.purpose === 'update' ? 'updated' : 'rolled back'} (prog ${outcome.progId})` };
  }
  h.message = `${outcome.reason}: ${outcome.message}`;
  if (action.purpose === 'update') h.phase = H.HOST_PHASE_FAILED;
  return { rollout: r, event: `${action.host}: ${action.purpose} failed: ${h.message}` };
}
