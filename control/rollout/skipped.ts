import type { RolloutStatus } from '../../proto/gen/bpfleet/v1/rollout.js';

/** Hosts a rollout's messages name at most before "…". */
export const PLAN_HOSTS_SHOWN = 20;

/** A status names at most this many skipped hosts (RolloutStatus.skipped_hosts); skipped_total counts them all. */
export const SKIPPED_HOSTS_KEPT = 100;

/** Records `host` as skipped (named while fewer than SKIPPED_HOSTS_KEPT are, counted always). */
export function skip(status: RolloutStatus, host: string, reason: string): void {
  status.skippedTotal++;
  if (status.skippedHosts.length < SKIPPED_HOSTS_KEPT) status.skippedHosts.push({ host, reason });
}

/** "1: h3 (not registered)": how many hosts were skipped and the first few, for messages. */
export function skippedWords(status: RolloutStatus): string {
  const shown = status.skippedHosts.slice(0, PLAN_HOSTS_SHOWN).map((s) => `${s.host} (${s.reason})`).join(', ');
  return `${status.skippedTotal}: ${shown}${status.skippedTotal > PLAN_HOSTS_SHOWN ? ', …' : ''}`;
}
