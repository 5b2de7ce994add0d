import { BpfleetError } from '../../common/errors.js';
import { HostPhase, RolloutPhase, type Rollout, type RolloutSpec } from '../../proto/gen/bpfleet/v1/rollout.js';
import { isFinalPhase } from './vocabulary.js';

// Outcomes that leave hosts on the rollout's version.
const LEFT_HOSTS_CHANGED = new Set([RolloutPhase.ROLLOUT_PHASE_SUCCEEDED, RolloutPhase.ROLLOUT_PHASE_FAILED]);

/**
 * The spec of the rollout that undoes a finished one: the same module, attachment,
 * selector, steps and analysis (going back can break things too, so it is gated the same
 * way), aimed at the version the finished rollout replaced. That version is read from the
 * hosts the rollout changed; it must be one version, because a rollout has one target:
 * hosts that ran different versions, or nothing, before are refused with their names
 * rather than guessed at. `others` are the other rollouts of the fleet: a later rollout of
 * the same module and attachment that changed hosts supersedes this one.
 */
export function undoSpec(original: Rollout, others: readonly Rollout[]): RolloutSpec {
  const spec = original.spec!;
  const status = original.status!;
  const id = original.id;
  if (!isFinalPhase(status.phase)) {
    throw new BpfleetError('FAILED_PRECONDITION', 'ROLLOUT_ACTIVE', `rollout ${id} has not finished; to stop it and restore its hosts, abort it`);
  }
  const later = others.find((r) => r.id !== id && r.createdAt > original.createdAt
    && r.spec?.module === spec.module && r.spec.attachment === spec.attachment
    && LEFT_HOSTS_CHANGED.has(r.status?.phase ?? RolloutPhase.ROLLOUT_PHASE_UNSPECIFIED));
  if (later) {
    throw new BpfleetError('FAILED_PRECONDITION', 'SUPERSEDED',
      `rollout ${later.id} (${spec.module}@${later.spec!.version}) changed ${spec.attachment} after ${id}; undo that one instead`);
  }
  const changed = status.hosts.filter((h) => h.phase === HostPhase.HOST_PHASE_UPDATED && h.previousDigest !== status.digest);
  if (changed.length === 0) {
    throw new BpfleetError('FAILED_PRECONDITION', 'NOTHING_TO_UNDO', `rollout ${id} left no host changed to ${spec.module}@${spec.version}`);
  }
  const byVersion = new Map<string, string[]>();
  for (const h of changed) byVersion.set(h.previousVersion, [...(byVersion.get(h.previousVersion) ?? []), h.host]);
  const nothing = byVersion.get('');
  if (nothing) {
    throw new BpfleetError('FAILED_PRECONDITION', 'NO_PREVIOUS_VERSION',
      `${list(nothing)} ran nothing on ${spec.attachment} before rollout ${id}, and a rollout cannot remove a module; roll out the version you want instead`);
  }
  if (byVersion.size > 1) {
    const versions = [...byVersion].map(([v, hosts]) => `${v} (${list(hosts)})`).join(', ');
    throw new BpfleetError('FAILED_PRECONDITION', 'MIXED_PREVIOUS_VERSIONS',
      `hosts ran different versions before rollout ${id}: ${versions}; roll out the version you want instead`);
  }
  return { ...structuredClone(spec), version: [...byVersion.keys()][0]! };
}

function list(hosts: string[]): string {
  return hosts.length > 5 ? `${hosts.slice(0, 5).join(', ')} and ${hosts.length - 5} more` : hosts.join(', ');
}
