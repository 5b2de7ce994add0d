/**
 * What a rollout's passes did, as data: reconcile() and recordApplies() return these events;
 * describe() turns one into the line the logs, the audit log and the trace show. Metrics
 * read the data (endedStep()), never the words.
 */
import { RolloutVerb, type RolloutPhase, type RolloutRequest, type Step, type Verdict } from '../../proto/gen/bpfleet/v1/rollout.js';
import { describeStep } from './spec.js';
import { phaseName, verbName, verbPast, verdictName, type ApplyPurpose, type StepKind } from './vocabulary.js';

/** A step that ended: which (steps.length is the wave after the last step), its kind, how, and for how long. */
export interface StepEnd {
  step: number;
  kind: StepKind;
  outcome: 'passed' | 'failed';
  /** From the step's start (status.stepStartedAt) to the transition that ended it; NaN if it never started. */
  durationMs: number;
}

/** An operator's request as events name it. */
export type RequestBy = Pick<RolloutRequest, 'verb' | 'actor' | 'reason'>;

/** Why a step passed: its wave is updated, its bake passed analysis, a promotion skipped it, or a request moved past it. */
export type PassedBy =
  | { by: 'wave-updated' }
  | { by: 'analysis'; bakeMs: number }
  | { by: 'promotion' }
  | { by: 'request'; request: RequestBy };

type ApplyResult = { ok: true; progId: number } | { ok: false; reason: string; message: string };

/**
 * One thing a pass did. A step's end rides on the event of the transition that ended it
 * (`advanced`, `rolling-back`, `finished`: see endedStep()), so each transition stays one line.
 */
export type RolloutEvent =
  /** Waves planned: every host's wave is in the status; the event names the first `shown`. */
  | { kind: 'planned'; hosts: number; waveSizes: number[]; shown: { host: string; wave: number }[] }
  /** An update sent to a host for the first time in this rollout. */
  | { kind: 'apply-sent'; host: string; wave: number; module: string; version: string }
  | { kind: 'analysis'; step: number; verdict: Verdict; summary: string }
  /** Step `from` passed and `next` began (null: the last wave); `of` is the number of steps. */
  | { kind: 'advanced'; ended: StepEnd; from: Step; why: PassedBy; next: Step | null; of: number }
  /** A pause step was reached. */
  | { kind: 'paused'; step: number }
  /** An operator's request that changed only what its own words say, or nothing (`why`). */
  | { kind: 'request'; request: RequestBy; outcome: 'applied' }
  | { kind: 'request'; request: RequestBy; outcome: 'unchanged' | 'refused'; why: string }
  | { kind: 'rolling-back'; reason: string; ended?: StepEnd }
  /** A rollback apply sent to a host for the first time; `to` is the version restored, '' for none. */
  | { kind: 'restoring'; host: string; to: string }
  /** The rollback gave up on a host after `attempts` failed restores (or an abort ended them); `message` says why. */
  | { kind: 'restore-failed'; host: string; attempts: number; message: string }
  | { kind: 'finished'; phase: RolloutPhase; message: string; ended?: StepEnd }
  | { kind: 'apply-result'; host: string; purpose: ApplyPurpose; result: ApplyResult }
  /** A result for a host the rollout never planned. */
  | { kind: 'apply-ignored'; host: string }
  /** A planned host the rollout went on without (gone or broken when its wave ran); `why` says which. */
  | { kind: 'host-skipped'; host: string; why: string };

/** The step `event` ended, if it ended one. */
export function endedStep(event: RolloutEvent): StepEnd | undefined {
  return 'ended' in event ? event.ended : undefined;
}

/** "promoted by alice (hotfix)": who asked for what, and why if they said. */
export const requestedBy = (r: RequestBy): string => `${verbPast(r.verb)} by ${r.actor}${r.reason ? ` (${r.reason})` : ''}`;

/** The line for `event` in the logs, the audit log, the trace and the status message. */
export function describe(event: RolloutEvent): string {
  switch (event.kind) {
    case 'planned': {
      const shown = event.shown.map((h) => `${h.host}→wave ${h.wave}`).join(', ');
      const more = event.hosts > event.shown.length ? ` and ${event.hosts - event.shown.length} more` : '';
      return `planned ${event.hosts} hosts: ${shown}${more} (wave sizes ${event.waveSizes.join('/')})`;
    }
    case 'apply-sent':
      return `applying ${event.module}@${event.version} to ${event.host} (wave ${event.wave})`;
    case 'analysis':
      return `analysis at step ${event.step + 1}: ${verdictName(event.verdict)} — ${event.summary}`;
    case 'advanced': {
      const now = event.next ? `step ${event.ended.step + 2}/${event.of}: ${describeStep(event.next)}` : 'finishing the last wave';
      return `${passedBecause(event.why, event.from)}; now ${now}`;
    }
    case 'paused':
      return `paused at step ${event.step + 1}: resume to continue`;
    case 'request':
      if (event.outcome !== 'applied') return `${verbName(event.request.verb)} by ${event.request.actor} changed nothing: ${event.why}`;
      return requestApplied(event.request);
    case 'rolling-back':
      return `rolling back: ${event.reason}`;
    case 'restoring':
      return `restoring ${event.host} to ${event.to || 'nothing'}`;
    case 'restore-failed':
      return `${event.host}: ${event.message}`;
    case 'finished':
      return `${phaseName(event.phase)}: ${event.message}`;
    case 'apply-result':
      if (event.result.ok) return `${event.host}: ${event.purpose === 'update' ? 'updated' : 'rolled back'} (prog ${event.result.progId})`;
      return `${event.host}: ${event.purpose} failed: ${event.result.reason}: ${event.result.message}`;
    case 'apply-ignored':
      return `ignored result for unplanned host ${event.host}`;
    case 'host-skipped':
      return `skipped ${event.host}: ${event.why}`;
  }
}

function passedBecause(why: PassedBy, step: Step): string {
  switch (why.by) {
    case 'wave-updated': return `${describeStep(step)} done`;
    case 'analysis': return `bake ${why.bakeMs}ms passed analysis`;
    case 'promotion': return `${describeStep(step)} skipped (promoted)`;
    case 'request': return requestApplied(why.request);
  }
}

function requestApplied(r: RequestBy): string {
  switch (r.verb) {
    case RolloutVerb.ROLLOUT_VERB_PAUSE: return `${requestedBy(r)}: resume to continue`;
    case RolloutVerb.ROLLOUT_VERB_PROMOTE: return `${requestedBy(r)}: remaining bake, analysis and pause steps are skipped`;
    default: return requestedBy(r);
  }
}
