/**
 * A rollout's words: which phases are final, what a new status holds, and how phases,
 * verdicts, verbs and steps are named for people (logs, audit, CLI) and for metric and span
 * attributes. One place, so the controller, the store, the API, the CLI and the metrics
 * cannot drift apart.
 */
import { enumLabel } from '../../common/otel-attributes.js';
import {
  HostPhase,
  RolloutPhase,
  RolloutVerb,
  Verdict,
  type Rollout,
  type RolloutStatus,
  type Step,
} from '../../proto/gen/bpfleet/v1/rollout.js';

const P = RolloutPhase;

/** Phases a rollout never leaves. */
const FINAL_PHASES: ReadonlySet<RolloutPhase> = new Set([
  P.ROLLOUT_PHASE_SUCCEEDED,
  P.ROLLOUT_PHASE_ROLLED_BACK,
  P.ROLLOUT_PHASE_FAILED,
  P.ROLLOUT_PHASE_ABORTED,
]);

export const isFinalPhase = (phase: RolloutPhase): boolean => FINAL_PHASES.has(phase);

/** True once the rollout can never move again; a rollout without a status has not started. */
export const isFinal = (r: Rollout): boolean => isFinalPhase(r.status?.phase ?? P.ROLLOUT_PHASE_UNSPECIFIED);

/** The status of a rollout nobody has acted on yet: pending, at step 0, no hosts planned. */
export function emptyStatus(): RolloutStatus {
  return {
    phase: P.ROLLOUT_PHASE_PENDING, step: 0, hosts: [], analyses: [], message: '',
    stepStartedAt: '', updatedAt: '', inconclusiveInARow: 0, digest: '',
    observedRequest: 0, promoted: false, aborted: false, failuresInStep: 0, hostCounts: undefined,
    skippedHosts: [], requestOutcomes: [], analysesDropped: 0, skippedTotal: 0, hostsOmitted: 0, hostsChangedOnly: false,
  };
}

/** Skipped hosts a line names before "…". */
const SKIPPED_SHOWN = 10;

/**
 * "3 hosts selected, 1 skipped: h3 (not registered)": the hosts the selector matched and
 * those the rollout went on without, for the CLI; '' when none was skipped. Works on a
 * record without hosts too (from its host counts).
 */
export function selectionLine(s: RolloutStatus): string {
  if (!s.skippedTotal) return '';
  const planned = s.hosts.length || s.hostCounts?.total || 0;
  const skippedPlanned = s.hosts.length ? s.hosts.filter((h) => h.phase === HostPhase.HOST_PHASE_SKIPPED).length : s.hostCounts?.skipped ?? 0;
  const selected = planned + s.skippedTotal - skippedPlanned;
  const named = s.skippedHosts.slice(0, SKIPPED_SHOWN).map((h) => `${h.host} (${h.reason})`).join(', ');
  return `${selected} host${selected === 1 ? '' : 's'} selected, ${s.skippedTotal} skipped: ${named}${s.skippedTotal > SKIPPED_SHOWN ? ', …' : ''}`;
}

/** ROLLOUT_PHASE_ROLLED_BACK → "rolled_back": the `bpfleet.rollout.phase` attribute; unset is "unspecified". */
export const phaseLabel = (phase: RolloutPhase | undefined): string => enumLabel(phase ?? P.ROLLOUT_PHASE_UNSPECIFIED, 'ROLLOUT_PHASE_');

/** ROLLOUT_PHASE_ROLLED_BACK → "rolled back", as people read it; unset is "unspecified". */
export const phaseName = (phase: RolloutPhase | undefined): string => phaseLabel(phase).replace(/_/g, ' ');

/** Every host phase a progress entry can be in (not UNSPECIFIED, not UNRECOGNIZED). */
export const HOST_PHASES: readonly HostPhase[] = Object.values(HostPhase)
  .filter((p) => p !== HostPhase.HOST_PHASE_UNSPECIFIED && p !== HostPhase.UNRECOGNIZED);

/** HOST_PHASE_ROLLING_BACK → "rolling back". */
export const hostPhaseName = (phase: HostPhase): string => enumLabel(phase, 'HOST_PHASE_').replace(/_/g, ' ');

/** VERDICT_INCONCLUSIVE → "inconclusive": for people and the `bpfleet.verdict` attribute alike. */
export const verdictName = (verdict: Verdict): string => enumLabel(verdict, 'VERDICT_');

/** ROLLOUT_VERB_PROMOTE → "promote". */
export const verbName = (verb: RolloutVerb): string => enumLabel(verb, 'ROLLOUT_VERB_');

const PAST: Partial<Record<RolloutVerb, string>> = {
  [RolloutVerb.ROLLOUT_VERB_PAUSE]: 'paused',
  [RolloutVerb.ROLLOUT_VERB_RESUME]: 'resumed',
  [RolloutVerb.ROLLOUT_VERB_PROMOTE]: 'promoted',
  [RolloutVerb.ROLLOUT_VERB_ABORT]: 'aborted',
};

/** ROLLOUT_VERB_PROMOTE → "promoted", as in "promoted by alice"; a verb without one keeps its name. */
export const verbPast = (verb: RolloutVerb): string => PAST[verb] ?? verbName(verb);

/** Why the controller sends an apply: move a host to the target, or restore what it ran. */
export type ApplyPurpose = 'update' | 'rollback';

/** A step as the `bpfleet.rollout.step.kind` attribute names it; the wave after the last step is "final_wave". */
export type StepKind = 'canary' | 'percent' | 'bake' | 'pause' | 'final_wave';

/** The kind of `step`; undefined (past the last step) is the final wave. */
export function stepKind(step: Step | undefined): StepKind {
  const kind = step?.kind?.$case;
  if (!kind) return 'final_wave';
  return kind === 'bakeMs' ? 'bake' : kind;
}
