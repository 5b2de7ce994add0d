import { BpfleetError, fromServiceError } from '../../common/errors.js';
import type { HostProgress, Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import type { Control } from './client.js';

export interface FollowOptions {
  /** Give up after this long; 0 waits for ever. */
  timeoutMs: number;
  /** Stop following once this holds for a rollout seen. */
  until: (r: Rollout) => boolean;
  /** Every version of the rollout seen, in order (the first one included). */
  onUpdate: (r: Rollout) => void;
  /** The stream broke for a reason worth another try; following resumes on another replica. */
  onReconnect?: (err: BpfleetError, server: string) => void;
  /** Waits between tries; tests pass one that does not. */
  sleep?: (ms: number) => Promise<void>;
}

export interface FollowResult {
  /** `until` held, the server ended the stream (the rollout is final), or the timeout passed. */
  how: 'until' | 'ended' | 'timeout';
  last: Rollout | null;
}

type Outcome = { kind: 'until' | 'ended' | 'timeout' } | { kind: 'error'; err: BpfleetError; sawData: boolean };

// A replica that went away (or lost etcd for a moment) is worth another try; a rollout
// that does not exist or a refused request is not.
const RETRYABLE = new Set(['UNAVAILABLE', 'INTERNAL', 'ABORTED', 'DEADLINE_EXCEEDED']);
const BACKOFF_MS = [250, 500, 1000, 2000];
// Failed watches in a row, with no rollout received in between, before the control plane
// counts as gone rather than failing over: about a minute at the longest backoff.
export const MAX_FAILURES_IN_A_ROW = 30;

/**
 * Follows a rollout through WatchRollout until `until` holds, the rollout ends, or the
 * timeout. Survives the loss of the replica it talks to: it watches again, on the next
 * replica listed, and the server's first message (the rollout as it is now) fills any gap.
 */
export async function follow(ctl: Control, id: string, opts: FollowOptions): Promise<FollowResult> {
  const deadline = opts.timeoutMs > 0 ? Date.now() + opts.timeoutMs : Infinity;
  let last: Rollout | null = null;
  const seen = (r: Rollout): boolean => {
    last = mergeHosts(last, r);
    opts.onUpdate(last);
    return opts.until(last);
  };
  for (let failures = 0; ; ) {
    const outcome = await watchOnce(ctl, id, deadline, seen);
    if (outcome.kind !== 'error') return { how: outcome.kind, last };
    if (!RETRYABLE.has(outcome.err.code)) throw outcome.err;
    failures = outcome.sawData ? 1 : failures + 1;
    // Never reached any replica: that is a wrong address or a plane that is down, not a blip.
    if (last === null && failures >= ctl.replicas) throw outcome.err;
    if (failures >= MAX_FAILURES_IN_A_ROW) throw outcome.err;
    const pause = BACKOFF_MS[Math.min(failures - 1, BACKOFF_MS.length - 1)]!;
    if (Date.now() + pause >= deadline) return { how: 'timeout', last };
    ctl.failover();
    opts.onReconnect?.(outcome.err, ctl.address);
    await (opts.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms))))(pause);
  }
}

/** Hosts in the order the views show them: by wave, then by name. */
export const byWaveThenHost = (a: HostProgress, b: HostProgress): number =>
  a.wave - b.wave || (a.host < b.host ? -1 : a.host > b.host ? 1 : 0);

/**
 * The rollout as the stream has told it so far: WatchRollout sends the whole view first,
 * then only the hosts that changed (status.hostsChangedOnly); those replace the hosts of
 * the same name in `before`. Hosts stay in wave-then-name order.
 */
export function mergeHosts(before: Rollout | null, r: Rollout): Rollout {
  if (!r.status?.hostsChangedOnly || !before?.status) return r;
  const byName = new Map(before.status.hosts.map((h) => [h.host, h]));
  for (const h of r.status.hosts) byName.set(h.host, h);
  const hosts = [...byName.values()].sort(byWaveThenHost);
  return { ...r, status: { ...r.status, hosts, hostsChangedOnly: false, hostsOmitted: Math.max(0, (r.status.hostCounts?.total ?? 0) - hosts.length) } };
}

function watchOnce(ctl: Control, id: string, deadline: number, seen: (r: Rollout) => boolean): Promise<Outcome> {
  return new Promise((resolve) => {
    const stream = ctl.watch(id);
    let sawData = false;
    let settled = false;
    const settle = (o: Outcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stream.cancel();
      resolve(o);
    };
    const timer = deadline === Infinity ? undefined : setTimeout(() => settle({ kind: 'timeout' }), Math.max(0, deadline - Date.now()));
    stream.on('data', (r: Rollout) => {
      sawData = true;
      if (!settled && seen(r)) settle({ kind: 'until' });
    });
    stream.on('end', () => settle({ kind: 'ended' }));
    // After settle() the cancel surfaces here as CANCELLED: nothing to do then.
    stream.on('error', (err) => settle({ kind: 'error', err: fromServiceError(err), sawData }));
  });
}
