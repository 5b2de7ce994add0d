/**
 * The step machine: what a rollout does next in its phase. Pending: plan the waves.
 * Progressing: update the current step's wave, bake and analyse, pause, or finish after the
 * last wave. Rolling back: restore every host the rollout touched. Each function changes the
 * status in place and adds actions and events to the pass's output.
 */
import type { ModuleRef } from '../../proto/gen/bpfleet/v1/module.js';
import {
  FailurePolicy,
  HostPhase,
  RolloutPhase,
  type AnalysisRun,
  type HostProgress,
  type Rollout,
  type RolloutStatus,
  type Step,
} from '../../proto/gen/bpfleet/v1/rollout.js';
import { assess } from '../analysis/assess.js';
import { boundedRun, recordAnalysis } from './analyses.js';
import type { ApplyAction } from './apply-results.js';
import { PLAN_HOSTS_SHOWN, skip, skippedWords } from './skipped.js';
import { describe, type PassedBy, type RolloutEvent, type StepEnd } from './events.js';
import { stepKind } from './vocabulary.js';
import { maxUnavailableOf, planWaves } from './waves.js';

/** A registered host as the controller sees it, for one attachment. */
export interface HostView {
  name: string;
  labels: Record<string, string>;
  capabilities: string[];
  /** What the host's agent reports running on the rollout's attachment. */
  running: ModuleRef | null;
  /** Drained or decommissioned (`bpfleet hosts drain`): never planned into a rollout. */
  drained?: boolean;
  /** The agent's reason word when that attachment is BROKEN (the kernel does not run it there); absent or '' otherwise. */
  broken?: string;
  /**
   * Set when the agent reports `running` as failing its signature policy (adopted after a
   * restart, ATTACHMENT_STATUS_UNVERIFIED): the reason. Such a host is never counted as
   * already on the target; the intent sent to it is checked by the agent's policy.
   */
  unverified?: string;
}

/** A host etcd knows (it reported state once) that is not registered now, with the labels it last reported. */
export interface AbsentHost {
  name: string;
  labels: Record<string, string>;
}

/** One canary analysis to run: the updated hosts against the pending ones over [from, to] (ms since the epoch). */
export interface AnalysisRequest {
  step: number;
  canaryHosts: string[];
  baselineHosts: string[];
  from: number;
  to: number;
}

/** What the step machine decides from. */
export interface StepInput {
  rollout: Rollout;
  /** The module version being rolled out, with its digest. */
  target: ModuleRef;
  hosts: HostView[];
  /** Hosts that are down: a rollout they would take part in names them as skipped. */
  absent?: readonly AbsentHost[];
  now: number;
  analyze: (req: AnalysisRequest) => AnalysisRun;
}

/** What a pass decides besides the status. */
export interface StepOutput {
  actions: ApplyAction[];
  /** When to look again even if nothing changes; null: only on events. */
  requeueAfterMs: number | null;
  /** What happened, for the audit log, the operator and the metrics. */
  events: RolloutEvent[];
}

const P = RolloutPhase;
const H = HostPhase;
/**
 * A rollback tries each host at most this many times (the first try and 4 retries), the
 * retries 1 s, 2 s, 4 s and 8 s after the previous failure: a host that is gone, drifted or
 * refuses its previous version is given up on about 15 s after the rollback started, marked
 * RESTORE_FAILED with its last error, and the rollout still ends.
 */
export const ROLLBACK_MAX_ATTEMPTS = 5;
/** The pause before the first retry of a host's rollback; it doubles after each failure. */
export const ROLLBACK_RETRY_MS = 1000;

/** Moves `status` on as far as one pass can in its phase; final phases never move again. */
export function runSteps(input: StepInput, status: RolloutStatus, out: StepOutput): void {
  switch (status.phase) {
    case P.ROLLOUT_PHASE_UNSPECIFIED:
    case P.ROLLOUT_PHASE_PENDING:
      plan(input, status, out);
      break;
    case P.ROLLOUT_PHASE_PROGRESSING:
      progress(input, status, out);
      break;
    case P.ROLLOUT_PHASE_ROLLING_BACK:
      rollBack(input, status, out);
      break;
    case P.ROLLOUT_PHASE_PAUSED:
      // A pause holds back new applies, not the rollback of an apply that already failed.
      failOnFailedHosts(input, status, out);
      break;
    default:
      // Final phases never move again.
      break;
  }
}

function plan(input: StepInput, status: RolloutStatus, out: StepOutput): void {
  const spec = input.rollout.spec!;
  const hook = spec.attachment.split(':')[0]!;
  const matches = (labels: Record<string, string>) => Object.entries(spec.selector).every(([k, v]) => labels[k] === v);
  const registered = new Set(input.hosts.map((h) => h.name));
  // Hosts the selector matches that cannot take part now; the rollout says so, and a host
  // that comes back converges to what it promotes (control/convergence/).
  for (const h of input.absent ?? []) if (!registered.has(h.name) && matches(h.labels)) skip(status, h.name, 'not registered');
  const matched = input.hosts.filter((h) => matches(h.labels));
  for (const h of matched) if (h.broken && !h.drained) skip(status, h.name, `attachment broken (${h.broken})`);
  const selected = matched.filter((h) => !h.broken && !h.drained);
  if (selected.length === 0) {
    const drained = matched.filter((h) => h.drained).map((h) => h.name);
    const skipped = status.skippedTotal ? `; skipped ${skippedWords(status)}` : '';
    const why = drained.length
      ? `every host that matches the selector ${JSON.stringify(spec.selector)} is drained (${drained.slice(0, PLAN_HOSTS_SHOWN).join(', ')}); undrain one with bpfleet hosts undrain${skipped}`
      : `no registered host matches the selector ${JSON.stringify(spec.selector)}${skipped}`;
    finish(status, out, P.ROLLOUT_PHASE_FAILED, why);
    return;
  }
  const lacking = selected.filter((h) => !h.capabilities.includes(hook));
  if (lacking.length) {
    finish(status, out, P.ROLLOUT_PHASE_FAILED, `hosts cannot run ${hook} programs: ${lacking.map((h) => h.name).join(', ')}`);
    return;
  }
  // A rollback restores <this module>@<previous version>, so a host running another module
  // there could never be restored; and that module is not this rollout's to replace.
  const foreign = selected.filter((h) => h.running && h.running.name !== input.target.name);
  if (foreign.length) {
    finish(status, out, P.ROLLOUT_PHASE_FAILED, `hosts run another module on ${spec.attachment}: ${foreign.map((h) => `${h.name} (${h.running!.name}@${h.running!.version})`).join(', ')}`);
    return;
  }
  const waves = planWaves(input.rollout.id, spec.steps, selected.map((h) => h.name));
  // A bake with every selected host updated before it has no baseline: only an absolute
  // limit can pass there. Found now, before any host is touched, rather than at its end.
  const relativeOnly = (spec.analysis?.metrics ?? []).filter((m) => !(m.max > 0)).map((m) => m.name);
  const blind = spec.steps.flatMap((s, i) => (s.kind?.$case === 'bakeMs' && ![...waves.values()].some((w) => w > i) ? [i] : []));
  if (blind.length && relativeOnly.length) {
    finish(status, out, P.ROLLOUT_PHASE_FAILED, `no baseline: all ${selected.length} selected host${selected.length === 1 ? ' is' : 's are'} updated before step ${blind[0]! + 1} (bake), so only an absolute limit can pass there; give ${relativeOnly.join(', ')} a max, or select more hosts`);
    return;
  }
  const onTarget = (h: HostView) => h.running?.digest === input.target.digest && !h.unverified;
  status.hosts = selected.map((h): HostProgress => ({
    host: h.name,
    wave: waves.get(h.name)!,
    phase: onTarget(h) ? H.HOST_PHASE_UPDATED : H.HOST_PHASE_PENDING,
    previousDigest: h.running?.digest ?? '',
    previousVersion: h.running?.version ?? '',
    message: onTarget(h) ? 'already running the target version' : '',
    progId: 0,
    detail: '',
    rollbackAttempts: 0,
  })).sort((a, b) => a.wave - b.wave || a.host.localeCompare(b.host));
  status.digest = input.target.digest;
  status.phase = P.ROLLOUT_PHASE_PROGRESSING;
  status.step = 0;
  status.stepStartedAt = new Date(input.now).toISOString();
  out.events.push({
    kind: 'planned',
    hosts: status.hosts.length,
    waveSizes: spec.steps.map((_, i) => status.hosts.filter((h) => h.wave === i).length),
    // The event lands in the audit log and the logs: name the first waves' hosts, not a
    // fleet's worth (the plan itself is in the status, host by host).
    shown: status.hosts.slice(0, PLAN_HOSTS_SHOWN).map((h) => ({ host: h.host, wave: h.wave })),
  });
  out.requeueAfterMs = 0;
}

function failOnFailedHosts(input: StepInput, status: RolloutStatus, out: StepOutput): boolean {
  const failed = status.hosts.filter((h) => h.phase === H.HOST_PHASE_FAILED);
  if (failed.length) fail(input, status, out, `apply failed on ${failed.map((h) => `${h.host} (${h.message})`).join(', ')}`);
  return failed.length > 0;
}

function progress(input: StepInput, status: RolloutStatus, out: StepOutput): void {
  const spec = input.rollout.spec!;
  if (failOnFailedHosts(input, status, out)) return;
  const i = status.step;
  const step = spec.steps[i];
  if (!step) {
    if (updateWave(input, status, out, spec.steps.length)) {
      const ended = endOfStep(spec.steps, status, input.now, 'passed');
      // An updated host whose attachment broke since does not run the version: said, not counted.
      const views = new Map(input.hosts.map((h) => [h.name, h]));
      const updatedHosts = status.hosts.filter((h) => h.phase === H.HOST_PHASE_UPDATED);
      const broken = updatedHosts.filter((h) => views.get(h.host)?.broken).map((h) => `${h.host} (${views.get(h.host)!.broken})`);
      const updated = updatedHosts.length - broken.length;
      const selected = updatedHosts.length + status.skippedTotal;
      const message = (status.skippedTotal || broken.length
        ? `${updated} of ${selected} selected hosts run ${spec.module}@${spec.version}`
        : `all ${updated} hosts run ${spec.module}@${spec.version}`)
        + (status.skippedTotal ? `; skipped ${skippedWords(status)}` : '')
        + (broken.length ? `; attachment broken since updated: ${broken.slice(0, PLAN_HOSTS_SHOWN).join(', ')}${broken.length > PLAN_HOSTS_SHOWN ? ', …' : ''}` : '');
      finish(status, out, P.ROLLOUT_PHASE_SUCCEEDED, message, ended);
    }
    return;
  }
  const kind = step.kind;
  switch (kind?.$case) {
    case 'canary':
    case 'percent':
      if (updateWave(input, status, out, i)) advance(input, status, out, { by: 'wave-updated' });
      return;
    case 'bakeMs':
      if (status.promoted) advance(input, status, out, { by: 'promotion' });
      else bake(input, status, out, kind.value);
      return;
    case 'pause': {
      if (status.promoted) {
        advance(input, status, out, { by: 'promotion' });
        return;
      }
      status.phase = P.ROLLOUT_PHASE_PAUSED;
      const paused: RolloutEvent = { kind: 'paused', step: i };
      status.message = describe(paused);
      out.events.push(paused);
      return;
    }
    default:
      fail(input, status, out, `step ${i + 1} has no kind`);
  }
}

/** Sends applies for hosts of waves ≤ maxWave within maxUnavailable; true once all are updated. */
function updateWave(input: StepInput, status: RolloutStatus, out: StepOutput, maxWave: number): boolean {
  const spec = input.rollout.spec!;
  const inWave = status.hosts.filter((h) => h.wave <= maxWave);
  const now = new Map(input.hosts.map((h) => [h.name, h]));
  // A host that went down (or whose attachment broke) before its wave is not waited for
  // nor failed on: the rollout goes on without it and says so.
  for (const h of inWave) {
    if (h.phase !== H.HOST_PHASE_PENDING) continue;
    const view = now.get(h.host);
    const why = !view ? 'not registered when its wave ran' : view.broken ? `attachment broken (${view.broken}) when its wave ran` : '';
    if (!why) continue;
    h.phase = H.HOST_PHASE_SKIPPED;
    h.message = why;
    skip(status, h.host, why);
    out.events.push({ kind: 'host-skipped', host: h.host, why });
  }
  if (inWave.every((h) => h.phase === H.HOST_PHASE_UPDATED || h.phase === H.HOST_PHASE_SKIPPED)) return true;
  const budget = maxUnavailableOf(spec.maxUnavailable, status.hosts.length);
  const updating = inWave.filter((h) => h.phase === H.HOST_PHASE_UPDATING);
  // A pass folds in the results of its applies before the next pass runs, so a host still
  // UPDATING here was left so by a pass cut short (a crash, a lost leadership): send it
  // again (Apply is idempotent, so a host that did switch reports "unchanged").
  for (const h of updating) out.actions.push(updateAction(input, h));
  let free = budget - updating.length;
  for (const h of inWave) {
    if (free <= 0) break;
    if (h.phase !== H.HOST_PHASE_PENDING) continue;
    h.phase = H.HOST_PHASE_UPDATING;
    h.message = '';
    out.actions.push(updateAction(input, h));
    out.events.push({ kind: 'apply-sent', host: h.host, wave: h.wave, module: spec.module, version: spec.version });
    free--;
  }
  return false;
}

function updateAction(input: StepInput, h: HostProgress): ApplyAction {
  return { kind: 'apply', host: h.host, module: input.target, expectedDigest: h.previousDigest, purpose: 'update' };
}

function bake(input: StepInput, status: RolloutStatus, out: StepOutput, bakeMs: number): void {
  const spec = input.rollout.spec!;
  const started = Date.parse(status.stepStartedAt);
  const due = started + bakeMs;
  if (input.now < due) {
    out.requeueAfterMs = due - input.now;
    return;
  }
  const interval = spec.analysis!.intervalMs;
  const last = status.analyses.filter((a) => a.step === status.step).at(-1);
  if (last && input.now - Date.parse(last.at) < interval) {
    out.requeueAfterMs = interval - (input.now - Date.parse(last.at));
    return;
  }
  // Bounded before anything quotes it: the summary also becomes the status message.
  const run = boundedRun(input.analyze({
    step: status.step,
    canaryHosts: status.hosts.filter((h) => h.phase === H.HOST_PHASE_UPDATED).map((h) => h.host),
    baselineHosts: status.hosts.filter((h) => h.phase === H.HOST_PHASE_PENDING).map((h) => h.host),
    from: started,
    to: input.now,
  }));
  recordAnalysis(status, run);
  out.events.push({ kind: 'analysis', step: status.step, verdict: run.verdict, summary: run.summary });
  const assessed = assess(run, status, spec.analysis!);
  status.failuresInStep = assessed.counters.failuresInStep;
  status.inconclusiveInARow = assessed.counters.inconclusiveInARow;
  switch (assessed.outcome) {
    case 'pass':
      advance(input, status, out, { by: 'analysis', bakeMs });
      return;
    case 'hold':
      status.message = assessed.message;
      out.requeueAfterMs = interval;
      return;
    case 'fail':
      fail(input, status, out, assessed.reason);
  }
}

function advance(input: StepInput, status: RolloutStatus, out: StepOutput, why: PassedBy): void {
  out.events.push(moveOn(input.rollout.spec!.steps, status, input.now, why));
  out.requeueAfterMs = 0;
}

/**
 * Ends the current step as passed and starts the next (or the last wave); resets the step's
 * analysis counters and leaves the event's words as the status message.
 */
export function moveOn(steps: readonly Step[], status: RolloutStatus, now: number, why: PassedBy): RolloutEvent {
  const ended = endOfStep(steps, status, now, 'passed');
  const from = steps[status.step]!;
  status.step++;
  status.stepStartedAt = new Date(now).toISOString();
  status.inconclusiveInARow = 0;
  status.failuresInStep = 0;
  const event: RolloutEvent = { kind: 'advanced', ended, from, why, next: steps[status.step] ?? null, of: steps.length };
  status.message = describe(event);
  return event;
}

/**
 * The current step, ended now with `outcome`. Only a step under way ends: call it while the
 * rollout is PROGRESSING, or for a pause step being moved past.
 */
export function endOfStep(steps: readonly Step[], status: RolloutStatus, now: number, outcome: StepEnd['outcome']): StepEnd {
  return { step: status.step, kind: stepKind(steps[status.step]), outcome, durationMs: now - Date.parse(status.stepStartedAt) };
}

function fail(input: StepInput, status: RolloutStatus, out: StepOutput, reason: string): void {
  // A paused rollout's step ends when it is resumed, not here (a pause is no step outcome).
  const ended = status.phase === P.ROLLOUT_PHASE_PROGRESSING ? endOfStep(input.rollout.spec!.steps, status, input.now, 'failed') : undefined;
  if (input.rollout.spec!.onFailure === FailurePolicy.FAILURE_POLICY_HALT) {
    finish(status, out, P.ROLLOUT_PHASE_FAILED, `${reason}; halted without rollback (onFailure: halt)`, ended);
    return;
  }
  status.phase = P.ROLLOUT_PHASE_ROLLING_BACK;
  status.message = reason;
  out.events.push({ kind: 'rolling-back', reason, ended });
  out.requeueAfterMs = 0;
}

/** The pause after a host's `attempts`-th failed restore: 1 s, 2 s, 4 s, 8 s. */
export const rollbackRetryMs = (attempts: number): number => ROLLBACK_RETRY_MS * 2 ** Math.max(0, attempts - 1);

function rollBack(input: StepInput, status: RolloutStatus, out: StepOutput): void {
  // Every host an update was sent to: passes never overlap, so none has an apply in flight.
  const touched = (h: HostProgress) =>
    h.phase === H.HOST_PHASE_UPDATED || h.phase === H.HOST_PHASE_FAILED || h.phase === H.HOST_PHASE_ROLLING_BACK || h.phase === H.HOST_PHASE_UPDATING;
  // A host still ROLLING_BACK saw its last attempt fail (success makes it ROLLED_BACK). The
  // loop re-runs reconcile as soon as results are recorded, so without a pause a host that
  // is gone would be retried in a tight loop of etcd writes; and without a bound, forever.
  const sinceChange = input.now - Date.parse(status.updatedAt);
  let nextRetryMs = Infinity;
  for (const h of status.hosts) {
    if (!touched(h)) continue;
    if (h.phase === H.HOST_PHASE_ROLLING_BACK) {
      if (h.rollbackAttempts >= ROLLBACK_MAX_ATTEMPTS) {
        giveUp(h, `after ${h.rollbackAttempts} attempts`);
        out.events.push({ kind: 'restore-failed', host: h.host, attempts: h.rollbackAttempts, message: h.message });
        continue;
      }
      const wait = rollbackRetryMs(h.rollbackAttempts) - sinceChange;
      if (wait > 0) {
        nextRetryMs = Math.min(nextRetryMs, wait);
        continue;
      }
    } else {
      out.events.push({ kind: 'restoring', host: h.host, to: h.previousVersion });
      h.rollbackAttempts = 0;
    }
    h.phase = H.HOST_PHASE_ROLLING_BACK;
    out.actions.push({
      kind: 'apply',
      host: h.host,
      module: h.previousDigest ? { name: input.target.name, version: h.previousVersion, digest: h.previousDigest } : null,
      expectedDigest: input.target.digest,
      purpose: 'rollback',
    });
  }
  if (!status.hosts.some((h) => h.phase === H.HOST_PHASE_ROLLING_BACK)) {
    const lost = status.hosts.filter((h) => h.phase === H.HOST_PHASE_RESTORE_FAILED);
    const message = lost.length
      ? `${status.message}; could not restore ${lost.length} host${lost.length === 1 ? '' : 's'}: ${lost.slice(0, PLAN_HOSTS_SHOWN).map((h) => `${h.host} (${h.message})`).join(', ')}${lost.length > PLAN_HOSTS_SHOWN ? ', …' : ''}`
      : status.message;
    const phase = status.aborted ? P.ROLLOUT_PHASE_ABORTED : lost.length ? P.ROLLOUT_PHASE_FAILED : P.ROLLOUT_PHASE_ROLLED_BACK;
    finish(status, out, phase, message);
  } else if (out.actions.length === 0) {
    out.requeueAfterMs = nextRetryMs;
  }
}

/**
 * Stops restoring `h`: it is recorded RESTORE_FAILED with why (its last error kept), so the
 * rollout can end and say which hosts may still run the new version.
 */
export function giveUp(h: HostProgress, why: string): void {
  h.phase = H.HOST_PHASE_RESTORE_FAILED;
  h.message = `not restored to ${h.previousVersion || 'nothing'} ${why}${h.message ? ` (last error ${h.message})` : ''}`;
}

function finish(status: RolloutStatus, out: StepOutput, phase: RolloutPhase, message: string, ended?: StepEnd): void {
  status.phase = phase;
  status.message = message;
  out.events.push({ kind: 'finished', phase, message, ended });
  out.requeueAfterMs = null;
}
