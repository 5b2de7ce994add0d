import type { Etcd3, IKeyValue } from 'etcd3';
import { BpfleetError } from '../../common/errors.js';
import { keys, nameOf } from '../../common/keys.js';
import {
  HostPhase,
  RolloutPhase,
  type HostCounts,
  type HostProgress,
  type Rollout,
} from '../../proto/gen/bpfleet/v1/rollout.js';
import { chunk, keyAfter, MAX_TXN_OPS, mapLimit, prefixEnd, scanPrefix, TXN_CONCURRENCY } from '../../common/etcd/batch.js';
import { codecs } from '../../common/etcd/codec.js';
import { decodeOrSkip, reportMalformed } from '../../common/etcd/malformed.js';
import { fenced, NotLeaderError, type Fence } from '../../common/etcd/fence.js';
import { isFinal } from '../rollout/vocabulary.js';
import { promotedBy } from './desired.js';

/**
 * Hosts one API message carries at most (GetRollout, each WatchRollout message, a
 * GetRolloutHosts page): about 200 bytes each, so a message stays near 200 KiB whatever the
 * fleet's size.
 */
export const HOSTS_PER_MESSAGE = 1000;

/** Host progress keys one hostsPage() call reads at most, whatever the filter keeps. */
export const HOSTS_SCANNED_PER_PAGE = 20_000;

/** One page of a rollout's hosts, in host-name order. */
export interface HostsPage {
  hosts: HostProgress[];
  /** The last host name read when more may follow (the next page starts after it); null at the end. */
  next: string | null;
  /** The etcd revision the page was read at. */
  revision: number;
}

/** A rollout with the mod revision of its record: equal revisions mean nobody wrote it since. */
export interface StoredRollout {
  rollout: Rollout;
  revision: number;
}

const byWaveThenHost = (collator: Intl.Collator) => (a: HostProgress, b: HostProgress): number =>
  a.wave - b.wave || collator.compare(a.host, b.host);

export function countHosts(hosts: readonly HostProgress[]): HostCounts {
  const c: HostCounts = { total: hosts.length, pending: 0, updating: 0, updated: 0, failed: 0, rollingBack: 0, rolledBack: 0, restoreFailed: 0, skipped: 0 };
  for (const h of hosts) {
    switch (h.phase) {
      case HostPhase.HOST_PHASE_PENDING: c.pending++; break;
      case HostPhase.HOST_PHASE_UPDATING: c.updating++; break;
      case HostPhase.HOST_PHASE_UPDATED: c.updated++; break;
      case HostPhase.HOST_PHASE_FAILED: c.failed++; break;
      case HostPhase.HOST_PHASE_ROLLING_BACK: c.rollingBack++; break;
      case HostPhase.HOST_PHASE_ROLLED_BACK: c.rolledBack++; break;
      case HostPhase.HOST_PHASE_RESTORE_FAILED: c.restoreFailed++; break;
      case HostPhase.HOST_PHASE_SKIPPED: c.skipped++; break;
      default: break;
    }
  }
  return c;
}

// Every HostProgress field is a scalar, so field-by-field equality is exact and, unlike
// encoding both sides, cheap enough to run over ten thousand hosts per save.
function sameProgress(a: HostProgress | undefined, b: HostProgress): boolean {
  if (!a) return false;
  for (const k of Object.keys(b) as (keyof HostProgress)[]) if (a[k] !== b[k]) return false;
  return true;
}

/**
 * Rollouts in etcd. The API creates them (spec); only the leading controller writes status.
 *
 * A rollout is stored as one record under keys.rollout(id) — spec and status with per-phase
 * host counts but without the hosts — plus one key per host under keys.rolloutHost(id, host).
 * A record holding every host would be megabytes at ten thousand hosts, rewritten after
 * every batch and over etcd's request limit; this way a save writes only the hosts that
 * changed. Readers get the rollout whole: get() joins the record and its hosts.
 */
export class RolloutStore {
  private readonly order = byWaveThenHost(new Intl.Collator('en'));

  constructor(private readonly etcd: Etcd3) {}

  /**
   * Creates the rollout and takes the module+attachment's active slot in one transaction:
   * two rollouts of the same module on the same attachment would fight over hosts. A new
   * rollout has no host progress yet: the controller plans it.
   */
  async create(rollout: Rollout): Promise<void> {
    const spec = rollout.spec!;
    const lock = keys.activeLock(spec.module, spec.attachment);
    // A version being retired (its tombstone written first, control/api/modules.ts) cannot
    // gain a rollout between the retire's check of its uses and its deletion.
    const retired = keys.retired(spec.module, spec.version);
    const txn = await this.etcd
      .if(lock, 'Create', '==', 0)
      .and(keys.rollout(rollout.id), 'Create', '==', 0)
      .and(retired, 'Create', '==', 0)
      .then(this.etcd.put(lock).value(rollout.id), this.etcd.put(keys.rollout(rollout.id)).value(this.record(rollout)))
      .else(this.etcd.get(lock), this.etcd.get(retired))
      .commit();
    if (!txn.succeeded) {
      if (txn.responses[1]?.response_range?.kvs.length) {
        throw new BpfleetError('FAILED_PRECONDITION', 'VERSION_RETIRED', `${spec.module}@${spec.version} is retired (or being retired); roll out another version`);
      }
      const holder = txn.responses[0]?.response_range?.kvs[0]?.value.toString() ?? '?';
      throw new BpfleetError('FAILED_PRECONDITION', 'ROLLOUT_ACTIVE',
        `rollout ${holder} is still active for ${spec.module} on ${spec.attachment}; wait for it to finish or abort it`);
    }
  }

  async get(id: string): Promise<Rollout | null> {
    return (await this.read(id))?.rollout ?? null;
  }

  async require(id: string): Promise<Rollout> {
    const r = await this.get(id);
    if (!r) throw new BpfleetError('NOT_FOUND', 'ROLLOUT_NOT_FOUND', `rollout ${id} not found`);
    return r;
  }

  /**
   * The whole rollout, record and hosts as of one revision; null when there is none. A
   * record that does not decode counts as none, a host entry that does not is left out
   * (both reported as malformed).
   */
  async read(id: string): Promise<StoredRollout | null> {
    const res = await this.etcd.get(keys.rollout(id)).exec();
    const kv = res.kvs[0];
    const rollout = kv ? this.decodeRecord(kv) : null;
    if (!kv || !rollout) return null;
    const { kvs } = await scanPrefix(this.etcd, keys.rolloutHostsOf(id), Number(res.header.revision));
    return { rollout: this.join(rollout, this.decodeHosts(kvs)), revision: Number(kv.mod_revision) };
  }

  /**
   * The rollout as an API message: its record and at most `maxHosts` hosts (the first by
   * name), with status.hostsOmitted saying how many more there are. Counts come from the
   * record when hosts are left out (counting them would read every host), else from the
   * hosts read. `atRevision` reads as of that etcd revision. Null when there is none.
   */
  async view(id: string, maxHosts = HOSTS_PER_MESSAGE, atRevision?: number): Promise<{ rollout: Rollout; revision: number } | null> {
    let get = this.etcd.get(keys.rollout(id));
    if (atRevision !== undefined) get = get.revision(atRevision);
    const res = await get.exec();
    const kv = res.kvs[0];
    const rollout = kv ? this.decodeRecord(kv) : null;
    if (!kv || !rollout) return null;
    const revision = Number(res.header.revision);
    if (!rollout.status) return { rollout, revision };
    if (maxHosts === 0) {
      rollout.status.hostsOmitted = rollout.status.hostCounts?.total ?? 0;
      return { rollout, revision };
    }
    const page = await this.hostsPage(id, { limit: maxHosts, atRevision: revision });
    if (page.next === null) return { rollout: this.join(rollout, page.hosts), revision };
    const counted = rollout.status.hostCounts?.total ?? 0;
    rollout.status.hosts = page.hosts.sort(this.order);
    rollout.status.hostsOmitted = Math.max(counted - page.hosts.length, 1);
    return { rollout, revision };
  }

  /**
   * Up to `limit` hosts of rollout `id` whose names sort after `after`, in name order, only
   * those in `phases` when given. Reads at most HOSTS_SCANNED_PER_PAGE keys, so a page of a
   * filter that matches few hosts may come back short with `next` set. Host entries that do
   * not decode are left out and reported as malformed.
   */
  async hostsPage(id: string, opts: { limit: number; after?: string; phases?: ReadonlySet<HostPhase>; atRevision?: number }): Promise<HostsPage> {
    const prefix = keys.rolloutHostsOf(id);
    const end = prefixEnd(prefix);
    let start: Buffer = opts.after === undefined ? Buffer.from(prefix) : keyAfter(Buffer.from(keys.rolloutHost(id, opts.after)));
    let revision = opts.atRevision;
    const hosts: HostProgress[] = [];
    let scanned = 0;
    for (;;) {
      const want = Math.min(opts.phases ? HOSTS_PER_MESSAGE : opts.limit - hosts.length, HOSTS_SCANNED_PER_PAGE - scanned);
      let q = this.etcd.getAll().inRange({ start, end }).limit(want);
      if (revision !== undefined) q = q.revision(revision);
      const res = await q.exec();
      revision ??= Number(res.header.revision);
      const kvs = res.kvs;
      for (let i = 0; i < kvs.length; i++) {
        const h = this.decodeHosts([kvs[i]!])[0];
        if (!h || (opts.phases && !opts.phases.has(h.phase))) continue;
        hosts.push(h);
        if (hosts.length === opts.limit) {
          const more = i < kvs.length - 1 || res.more;
          return { hosts, next: more ? nameOf(prefix, kvs[i]!.key.toString()) : null, revision };
        }
      }
      scanned += kvs.length;
      const last = kvs[kvs.length - 1];
      if (!res.more || !last) return { hosts, next: null, revision };
      start = keyAfter(last.key);
      if (scanned >= HOSTS_SCANNED_PER_PAGE) return { hosts, next: nameOf(prefix, last.key.toString()), revision };
    }
  }

  /**
   * Hosts of rollout `id` whose progress was written at etcd revision `since` or later, up to
   * `atRevision`, in name order (etcd's min_mod_revision filter; read in pages).
   */
  async changedHosts(id: string, since: number, atRevision: number): Promise<HostProgress[]> {
    const end = prefixEnd(keys.rolloutHostsOf(id));
    let start: Buffer = Buffer.from(keys.rolloutHostsOf(id));
    const hosts: HostProgress[] = [];
    for (;;) {
      const res = await this.etcd.getAll().inRange({ start, end }).minModRevision(since).revision(atRevision).limit(HOSTS_PER_MESSAGE).exec();
      hosts.push(...this.decodeHosts(res.kvs));
      const last = res.kvs[res.kvs.length - 1];
      if (!res.more || !last) return hosts;
      start = keyAfter(last.key);
    }
  }

  /** Mod revision of the rollout's record, null when there is none: a cheap "changed since?". */
  async revisionOf(id: string): Promise<number | null> {
    const kv = (await this.etcd.get(keys.rollout(id)).exec()).kvs[0];
    return kv ? Number(kv.mod_revision) : null;
  }

  /** Every unfinished rollout with its hosts, oldest first: the records first, then only those read whole. */
  async unfinished(): Promise<Rollout[]> {
    const records = (await this.list({ hosts: false })).filter((r) => !isFinal(r));
    return (await Promise.all(records.map((r) => this.get(r.id)))).filter((r): r is Rollout => r !== null);
  }

  /**
   * Every rollout, oldest first; without `hosts`, only the records (host counts, no hosts).
   * Records and host entries that do not decode are left out and reported as malformed.
   */
  async list(opts: { hosts?: boolean } = {}): Promise<Rollout[]> {
    const records = await scanPrefix(this.etcd, keys.rolloutsPrefix);
    const rollouts = records.kvs.map((kv) => this.decodeRecord(kv)).filter((r): r is Rollout => r !== null);
    const oldestFirst = (a: Rollout, b: Rollout): number => a.createdAt.localeCompare(b.createdAt);
    if (opts.hosts === false) return rollouts.sort(oldestFirst);
    const progress = await scanPrefix(this.etcd, keys.rolloutHostsPrefix, records.revision);
    const kvsOf = new Map<string, IKeyValue[]>();
    for (const kv of progress.kvs) {
      const key = kv.key.toString();
      const id = nameOf(keys.rolloutHostsPrefix, key.slice(0, key.lastIndexOf('/')));
      if (id === null) {
        reportMalformed(key, new Error('the key names no rollout'));
        continue;
      }
      let list = kvsOf.get(id);
      if (!list) kvsOf.set(id, (list = []));
      list.push(kv);
    }
    return rollouts.map((r) => this.join(r, this.decodeHosts(kvsOf.get(r.id) ?? []))).sort(oldestFirst);
  }

  /**
   * Writes the controller's view; releases the active slot when the rollout is final and,
   * when it SUCCEEDED, records the version it promoted (keys.desired) in the same transaction.
   * `previous` is the rollout as stored before (what read() or the last save returned):
   * only hosts that differ from it are written. Without it every host is written.
   *
   * Each transaction holds at most MAX_TXN_OPS operations and is fenced by the leader's
   * epoch. Hosts go first and the record last, so a save cut short leaves host progress
   * ahead of the record, never behind it: a plan cut short is planned again, an UPDATING
   * host with no apply in flight is sent again (applies are idempotent). Returns the
   * record's new mod revision.
   */
  async saveStatus(rollout: Rollout, fence: Fence, previous?: Rollout): Promise<number> {
    const hosts = rollout.status?.hosts ?? [];
    const before = new Map((previous?.status?.hosts ?? []).map((h) => [h.host, h]));
    const changed = previous ? hosts.filter((h) => !sameProgress(before.get(h.host), h)) : hosts;
    const now = new Set(hosts.map((h) => h.host));
    const gone = [...before.keys()].filter((h) => !now.has(h));
    const hostOps = [
      ...changed.map((h) => this.etcd.put(keys.rolloutHost(rollout.id, h.host)).value(codecs.rolloutHost.encode(h))),
      ...gone.map((h) => this.etcd.delete().key(keys.rolloutHost(rollout.id, h)) as never),
    ];
    const recordOps = [this.etcd.put(keys.rollout(rollout.id)).value(this.record(rollout))];
    if (isFinal(rollout)) {
      const spec = rollout.spec!;
      recordOps.push(this.etcd.delete().key(keys.activeLock(spec.module, spec.attachment)) as never);
      // What a succeeded rollout promoted is fleet state from the same instant it is final:
      // a host that was skipped, returns or joins later converges to it. A rollout that
      // ends otherwise leaves the previous record (the version its hosts were restored to).
      if (rollout.status!.phase === RolloutPhase.ROLLOUT_PHASE_SUCCEEDED) {
        const desired = promotedBy(rollout, rollout.status!.updatedAt || new Date().toISOString());
        recordOps.push(this.etcd.put(keys.desired(spec.module, spec.attachment, spec.selector)).value(codecs.desired.encode(desired)));
      }
    }
    const withRecord = Math.min(hostOps.length, MAX_TXN_OPS - recordOps.length);
    const early = hostOps.slice(0, hostOps.length - withRecord);
    await mapLimit(chunk(early, MAX_TXN_OPS), TXN_CONCURRENCY, async (ops) => {
      const txn = await fenced(this.etcd, fence).then(...ops).commit();
      if (!txn.succeeded) throw new NotLeaderError(`save rollout ${rollout.id}`);
    });
    const txn = await fenced(this.etcd, fence).then(...hostOps.slice(early.length), ...recordOps).commit();
    if (!txn.succeeded) throw new NotLeaderError(`save rollout ${rollout.id}`);
    return Number(txn.header.revision);
  }

  /** The record: the rollout without its hosts, with their counts. */
  private record(rollout: Rollout): string {
    const status = rollout.status;
    return codecs.rollout.encode(status ? { ...rollout, status: { ...status, hosts: [], hostsOmitted: 0, hostsChangedOnly: false, hostCounts: countHosts(status.hosts) } } : rollout);
  }

  /** The record's rollout; null when it does not decode or its id is not the key's (reported as malformed). */
  private decodeRecord(kv: IKeyValue): Rollout | null {
    const key = kv.key.toString();
    return decodeOrSkip(key, kv.value.toString(), (text) => {
      const rollout = codecs.rollout.decode(text);
      if (nameOf(keys.rolloutsPrefix, key) !== rollout.id) throw new Error(`record of rollout "${rollout.id.slice(0, 64)}" under another key`);
      return rollout;
    });
  }

  private decodeHosts(kvs: readonly IKeyValue[]): HostProgress[] {
    return kvs.map((kv) => decodeOrSkip(kv.key.toString(), kv.value.toString(), codecs.rolloutHost.decode)).filter((h): h is HostProgress => h !== null);
  }

  private join(rollout: Rollout, hosts: HostProgress[]): Rollout {
    if (rollout.status) {
      rollout.status.hosts = hosts.sort(this.order);
      // Counted again rather than trusted: a save cut short leaves hosts ahead of the record.
      rollout.status.hostCounts = countHosts(hosts);
    }
    return rollout;
  }
}
