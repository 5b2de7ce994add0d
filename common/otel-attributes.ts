/**
 * Names of bpfleet's own span and metric attributes, in one place so that a trace query or a
 * dashboard written against one process works against all of them. The `bpfleet.` namespace
 * keeps them apart from the OTel semantic conventions, which bpfleet uses where they fit
 * (rpc.*, error.type, service.*). docs/OBSERVABILITY.md lists them.
 */
export const ATTR_ROLLOUT_ID = 'bpfleet.rollout.id';
/** 1-based, as the CLI shows steps. */
export const ATTR_ROLLOUT_STEP = 'bpfleet.rollout.step';
/** "progressing", "rolled_back", ... (the RolloutPhase without its prefix, lowercase). */
export const ATTR_ROLLOUT_PHASE = 'bpfleet.rollout.phase';
export const ATTR_STEP_KIND = 'bpfleet.rollout.step.kind';
export const ATTR_STEP_OUTCOME = 'bpfleet.rollout.step.outcome';
export const ATTR_HOST = 'bpfleet.host';
export const ATTR_ATTACHMENT = 'bpfleet.attachment';
export const ATTR_HOOK = 'bpfleet.hook';
/** "pass-counter@2.0.0". */
export const ATTR_MODULE = 'bpfleet.module';
export const ATTR_MODULE_NAME = 'bpfleet.module.name';
export const ATTR_MODULE_VERSION = 'bpfleet.module.version';
export const ATTR_DIGEST = 'bpfleet.module.digest';
export const ATTR_EXPECTED_DIGEST = 'bpfleet.expected_digest';
export const ATTR_GENERATION = 'bpfleet.intent.generation';
export const ATTR_LEADER_EPOCH = 'bpfleet.leader.epoch';
export const ATTR_PROG_ID = 'bpfleet.prog.id';
export const ATTR_LINK_ID = 'bpfleet.link.id';
/** "update" or "rollback". */
export const ATTR_APPLY_PURPOSE = 'bpfleet.apply.purpose';
/** "rpc" (AgentService/Apply) or "watch" (the agent's etcd intent watch). */
export const ATTR_APPLY_TRIGGER = 'bpfleet.apply.trigger';
/** "changed", "unchanged" or "failed". */
export const ATTR_APPLY_RESULT = 'bpfleet.apply.result';
/** "pass", "fail" or "inconclusive". */
export const ATTR_VERDICT = 'bpfleet.verdict';
/** "canary" or "baseline". */
export const ATTR_COHORT = 'bpfleet.analysis.cohort';
export const ATTR_METRIC = 'bpfleet.analysis.metric';
/** What decided a metric's verdict: "mann-whitney", "kayenta", "threshold", "max". */
export const ATTR_ANALYSIS_TEST = 'bpfleet.analysis.test';
/** Why a host registration is refused: "NAME_MISMATCH", "DUPLICATE_NAME" (common/etcd/host-refusals.ts). */
export const ATTR_REFUSAL_REASON = 'bpfleet.registration.refusal';

/** "ROLLOUT_PHASE_ROLLED_BACK" → "rolled_back": the enum names are stable, the prefix is noise. */
export function enumLabel(value: string, prefix: string): string {
  return value.startsWith(prefix) ? value.slice(prefix.length).toLowerCase() : value.toLowerCase();
}
