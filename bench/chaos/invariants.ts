/**
 * The chaos run's invariants as pure checks over what the witnesses saw (bpftool, /proc,
 * etcd's own metrics, the agents' apply histories), never over the product's own view of
 * itself. Each returns the violations it finds; the runner collects them.
 */

export type InvariantName =
  | 'rollout-final-within-bound' | 'program-on-managed-attachment' | 'only-intended-versions'
  | 'applied-once-per-generation' | 'bad-version-past-canary' | 'rss-ceiling' | 'etcd-db-bound';

export interface Violation {
  invariant: InvariantName;
  /** Milliseconds after the run's start. */
  atMs: number;
  detail: string;
}

/** One bpftool sample of a kernel host's managed attachment (xdp on eth0 in its namespace). */
export interface AttachmentSample {
  host: string;
  atMs: number;
  /** false: the interface does not exist (the run deleted it). */
  ifacePresent: boolean;
  /** The tag of the XDP program the kernel runs there, or null for none. */
  progTag: string | null;
}

/**
 * Watches kernel hosts' attachments. A host is managed from its first sample with a program
 * on; from then on it must always have one, except while its interface is gone and for
 * `reattachGraceMs` after the interface came back (the agent re-attaches on its next check).
 * Every program seen must be one of the versions a rollout intended (by tag).
 */
export class AttachmentWatch {
  private readonly managed = new Set<string>();
  /** When each host's interface was last seen absent. */
  private readonly lastAbsent = new Map<string, number>();

  constructor(private readonly reattachGraceMs: number) {}

  /** `intendedTags`: program tag → version, for every version a rollout has targeted so far. */
  check(s: AttachmentSample, intendedTags: ReadonlyMap<string, string>): Violation[] {
    if (!s.ifacePresent) {
      this.lastAbsent.set(s.host, s.atMs);
      return [];
    }
    if (s.progTag === null) {
      if (!this.managed.has(s.host)) return [];
      const absent = this.lastAbsent.get(s.host);
      if (absent !== undefined && s.atMs - absent <= this.reattachGraceMs) return [];
      const since = absent === undefined ? '' : ` (interface back ${s.atMs - absent} ms ago, grace ${this.reattachGraceMs} ms)`;
      return [{ invariant: 'program-on-managed-attachment', atMs: s.atMs, detail: `${s.host}: no XDP program on eth0${since}` }];
    }
    this.managed.add(s.host);
    if (!intendedTags.has(s.progTag)) {
      return [{ invariant: 'only-intended-versions', atMs: s.atMs, detail: `${s.host}: runs a program with tag ${s.progTag}, which is no version a rollout intended` }];
    }
    return [];
  }
}

/** One apply that changed a host's dataplane, from that agent's GetApplyHistory. */
export interface ApplyRecordLike {
  host: string;
  attachment: string;
  generation: number;
  digest: string;
  /** The agent process that recorded it (history lives in the process; a restart starts a new one). */
  agentRun: string;
}

/** Hosts that applied more than once for one (attachment, generation) within one agent run. */
export function duplicateApplies(records: readonly ApplyRecordLike[], atMs: number): Violation[] {
  const seen = new Map<string, ApplyRecordLike[]>();
  for (const r of records) {
    const k = `${r.agentRun}\u0000${r.host}\u0000${r.attachment}\u0000${r.generation}`;
    seen.set(k, [...(seen.get(k) ?? []), r]);
  }
  return [...seen.values()].filter((rs) => rs.length > 1).map((rs) => ({
    invariant: 'applied-once-per-generation' as const, atMs,
    detail: `${rs[0]!.host} ${rs[0]!.attachment}: generation ${rs[0]!.generation} applied ${rs.length} times (${rs.map((r) => r.digest.slice(0, 19)).join(', ')})`,
  }));
}

/**
 * The bad version never gets past its canary: at most `canary` hosts run it at any time
 * (counted from bpftool on kernel hosts and each sim host's own observed report), and its
 * rollout never ends SUCCEEDED.
 */
export function badVersionContained(o: { rolloutId: string; canary: number; hostsOnBad: readonly string[]; finalPhase: string | null; atMs: number }): Violation[] {
  const out: Violation[] = [];
  if (o.hostsOnBad.length > o.canary) {
    out.push({ invariant: 'bad-version-past-canary', atMs: o.atMs, detail: `${o.rolloutId}: ${o.hostsOnBad.length} hosts run the bad version (canary ${o.canary}): ${o.hostsOnBad.slice(0, 8).join(', ')}` });
  }
  if (o.finalPhase === 'ROLLOUT_PHASE_SUCCEEDED') {
    out.push({ invariant: 'bad-version-past-canary', atMs: o.atMs, detail: `${o.rolloutId}: the bad version's rollout SUCCEEDED` });
  }
  return out;
}

/** Peak resident memory per process (bytes), and a violation the first time one passes its ceiling. */
export class RssWatch {
  readonly peak = new Map<string, number>();
  private readonly over = new Set<string>();

  constructor(private readonly ceilingOf: (process: string) => number) {}

  check(process: string, rssBytes: number, atMs: number): Violation[] {
    this.peak.set(process, Math.max(this.peak.get(process) ?? 0, rssBytes));
    const ceiling = this.ceilingOf(process);
    if (rssBytes <= ceiling || this.over.has(process)) return [];
    this.over.add(process);
    return [{ invariant: 'rss-ceiling', atMs, detail: `${process}: RSS ${mib(rssBytes)} over its ceiling ${mib(ceiling)}` }];
  }
}

/** etcd's database size (bytes, per member) stays under `ceiling`; one violation per member. */
export class EtcdSizeWatch {
  readonly peak = new Map<string, number>();
  private readonly over = new Set<string>();

  constructor(readonly ceiling: number) {}

  check(member: string, dbBytes: number, atMs: number): Violation[] {
    this.peak.set(member, Math.max(this.peak.get(member) ?? 0, dbBytes));
    if (dbBytes <= this.ceiling || this.over.has(member)) return [];
    this.over.add(member);
    return [{ invariant: 'etcd-db-bound', atMs, detail: `etcd ${member}: database ${mib(dbBytes)} over ${mib(this.ceiling)}` }];
  }
}

/** A rollout not final `boundMs` after its creation is a violation, reported once. */
export function rolloutOverdue(o: { rolloutId: string; createdAtMs: number; nowMs: number; boundMs: number; phase: string }): Violation[] {
  if (o.nowMs - o.createdAtMs <= o.boundMs) return [];
  return [{ invariant: 'rollout-final-within-bound', atMs: o.nowMs, detail: `${o.rolloutId}: still ${o.phase} ${Math.round((o.nowMs - o.createdAtMs) / 1000)} s after creation (bound ${o.boundMs / 1000} s)` }];
}

export function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}
