import { randomUUID } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { keys } from '../../common/keys.js';
import { chunk, MAX_TXN_OPS, mapLimit, scanPrefix, TXN_CONCURRENCY } from '../../common/etcd/batch.js';
import { decodeOrSkip, malformed } from '../../common/etcd/malformed.js';
import { fenced, NotLeaderError, type Fence } from '../../common/etcd/fence.js';

/** How long and how many audit entries are kept; the leader deletes the rest (pruneAudit). */
export interface AuditRetention {
  /** Entries kept at most, the newest. */
  maxEntries: number;
  /** Entries older than this are deleted (ms). */
  maxAgeMs: number;
}

/** The default retention: 100,000 entries and 90 days, whichever is reached first. */
export const AUDIT_RETENTION: AuditRetention = { maxEntries: 100_000, maxAgeMs: 90 * 24 * 3600_000 };

// Keys read per round when deleting past maxEntries: a first prune of a large log reads
// its excess in pages, never all at once.
const PRUNE_PAGE = 10_000;

export interface AuditEntry {
  at: string;
  actor: string;
  action: string;
  target: string;
  detail?: Record<string, unknown>;
}

/** An audit entry from its JSON; throws MALFORMED_VALUE unless at, actor, action and target are strings. */
function decodeEntry(text: string): AuditEntry {
  let e: unknown;
  try {
    e = JSON.parse(text);
  } catch (err) {
    throw malformed(`not an audit entry: not JSON (${(err as Error).message})`);
  }
  const o = e as Partial<Record<keyof AuditEntry, unknown>> | null;
  if (typeof o !== 'object' || o === null || Array.isArray(o) || ![o.at, o.actor, o.action, o.target].every((f) => typeof f === 'string')
    || (o.detail !== undefined && (typeof o.detail !== 'object' || o.detail === null || Array.isArray(o.detail)))) {
    throw malformed('not an audit entry: at, actor, action and target must be strings, detail an object');
  }
  return o as AuditEntry;
}

/** Who did what, when: every mutating call and every rollout transition lands here. */
export class AuditLog {
  constructor(private readonly etcd: Etcd3, private readonly clock: () => Date = () => new Date()) {}

  async record(actor: string, action: string, target: string, detail?: Record<string, unknown>): Promise<void> {
    await this.recordAll(actor, action, target, [detail]);
  }

  /** One entry per detail, written in transactions of up to MAX_TXN_OPS entries. */
  async recordAll(actor: string, action: string, target: string, details: readonly (Record<string, unknown> | undefined)[]): Promise<void> {
    const at = this.clock();
    const puts = details.map((detail) => {
      const entry: AuditEntry = { at: at.toISOString(), actor, action, target, ...(detail ? { detail } : {}) };
      return { request_put: { key: Buffer.from(keys.audit(at, randomUUID().slice(0, 8))), value: Buffer.from(JSON.stringify(entry)) } };
    });
    await mapLimit(chunk(puts, MAX_TXN_OPS), TXN_CONCURRENCY, (success) => this.etcd.kv.txn({ success }));
  }

  /**
   * Deletes, fenced on the leader's epoch, every entry older than `maxAgeMs` before now and
   * then the oldest past `maxEntries`. Keys start with the entry's ISO time, so key order is
   * time order and each deletion is one range. Returns how many entries were deleted;
   * throws NotLeaderError when the fence is gone (nothing deleted by that round).
   */
  async prune(fence: Fence, retention: AuditRetention = AUDIT_RETENTION): Promise<number> {
    const prefix = keys.auditPrefix;
    const cutoff = `${prefix}${new Date(this.clock().getTime() - retention.maxAgeMs).toISOString()}`;
    let deleted = await this.deleteBefore(fence, cutoff);
    for (;;) {
      const excess = await this.etcd.getAll().prefix(prefix).count() - retention.maxEntries;
      if (excess <= 0) return deleted;
      const oldest = await this.etcd.getAll().prefix(prefix).limit(Math.min(excess, PRUNE_PAGE)).keys();
      if (!oldest.length) return deleted;
      deleted += await this.deleteBefore(fence, `${oldest.at(-1)!}\0`);
    }
  }

  /** Deletes the audit keys below `end` (exclusive), fenced; returns how many. */
  private async deleteBefore(fence: Fence, end: string): Promise<number> {
    const txn = await fenced(this.etcd, fence)
      .then(this.etcd.delete().inRange({ start: keys.auditPrefix, end }) as never).commit();
    if (!txn.succeeded) throw new NotLeaderError('prune the audit log');
    return Number(txn.responses[0]?.response_delete_range?.deleted ?? 0);
  }

  /** Entries oldest first, of `target` if given; entries that do not decode are skipped and reported. */
  async list(target?: string): Promise<AuditEntry[]> {
    const { kvs } = await scanPrefix(this.etcd, keys.auditPrefix);
    return kvs.map((kv) => decodeOrSkip(kv.key.toString(), kv.value.toString(), decodeEntry))
      .filter((e): e is AuditEntry => e !== null && (target === undefined || e.target === target));
  }
}
