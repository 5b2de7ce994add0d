import { createHash } from 'node:crypto';
import type { Step } from '../../proto/gen/bpfleet/v1/rollout.js';

/**
 * Deterministic wave membership: hosts are ordered by a hash of (rollout id, host), so
 * the same rollout always picks the same canary no matter which replica plans it, while
 * different rollouts spread the canary role over the fleet.
 */
export function waveOrder(rolloutId: string, hosts: readonly string[]): string[] {
  // Hashed once per host, not once per comparison: a sort compares n·log n times.
  const ranked = hosts.map((h) => ({ h, rank: createHash('sha256').update(`${rolloutId}/${h}`).digest('hex') }));
  return ranked.sort((a, b) => a.rank.localeCompare(b.rank) || a.h.localeCompare(b.h)).map((x) => x.h);
}

/** Cumulative number of hosts on the new version once step i is done. */
export function targetsPerStep(steps: readonly Step[], total: number): number[] {
  let target = 0;
  return steps.map((s) => {
    const k = s.kind;
    if (k?.$case === 'canary') target = Math.max(target, Math.min(total, k.value));
    if (k?.$case === 'percent') target = Math.max(target, Math.min(total, Math.ceil((k.value * total) / 100)));
    return target;
  });
}

/**
 * Wave of each host: the index of the first step whose target includes it; hosts no step
 * reaches get `steps.length`, the implicit last wave that finishes the rollout.
 */
export function planWaves(rolloutId: string, steps: readonly Step[], hosts: readonly string[]): Map<string, number> {
  const ordered = waveOrder(rolloutId, hosts);
  const targets = targetsPerStep(steps, ordered.length);
  const plan = new Map<string, number>();
  ordered.forEach((host, position) => {
    const wave = targets.findIndex((t) => t > position);
    plan.set(host, wave < 0 ? steps.length : wave);
  });
  return plan;
}

/** "1", "25%" → a host count of at least 1. */
export function maxUnavailableOf(text: string, total: number): number {
  const m = /^(\d+)(%?)$/.exec(text.trim());
  if (!m) return 1;
  const n = Number(m[1]);
  return Math.max(1, m[2] ? Math.floor((n * total) / 100) : n);
}
