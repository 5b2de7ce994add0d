/**
 * When a module version may be retired, as a pure function: not while anything could still
 * need its object (control/api/day2.ts reads the fleet, the intents and the rollouts and
 * asks this).
 */
import type { Intent } from '../../proto/gen/bpfleet/v1/agent.js';
import type { Host } from '../../proto/gen/bpfleet/v1/control.js';
import type { Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import { isFinal } from '../rollout/vocabulary.js';

/** What still uses one module version; empty lists mean it may be retired. */
export interface VersionUses {
  /** Hosts whose agent reports running it. */
  running: string[];
  /** Hosts whose intent names it (desired state a host may still converge to). */
  intended: string[];
  /** Unfinished rollouts that roll it out, or would restore it on a rollback. */
  rollouts: string[];
}

/** Most names a refusal lists before "and N more". */
const NAMES_SHOWN = 10;

/** The uses of `name@version` in the fleet, the intents and the rollouts. */
export function versionUses(name: string, version: string, fleet: { hosts: readonly Host[]; intents: readonly Intent[]; rollouts: readonly Rollout[] }): VersionUses {
  const running = fleet.hosts.filter((h) => h.attachments.some((a) => a.module === name && a.version === version)).map((h) => h.name);
  const intended = [...new Set(fleet.intents.filter((i) => i.module?.name === name && i.module.version === version).map((i) => i.host))];
  const rollouts = fleet.rollouts.filter((r) => !isFinal(r) && r.spec?.module === name
    && (r.spec.version === version || (r.status?.hosts ?? []).some((h) => h.previousVersion === version))).map((r) => r.id);
  return { running, intended, rollouts };
}

/** The refusal's words: which hosts and rollouts use the version; '' when nothing does. */
export function describeUses(uses: VersionUses): string {
  const list = (names: string[]): string => names.length > NAMES_SHOWN ? `${names.slice(0, NAMES_SHOWN).join(', ')} and ${names.length - NAMES_SHOWN} more` : names.join(', ');
  const parts: string[] = [];
  if (uses.running.length) parts.push(`running on ${list(uses.running)}`);
  const onlyIntended = uses.intended.filter((h) => !uses.running.includes(h));
  if (onlyIntended.length) parts.push(`the desired state of ${list(onlyIntended)}`);
  if (uses.rollouts.length) parts.push(`used by unfinished rollout ${list(uses.rollouts)}`);
  return parts.join('; ');
}
