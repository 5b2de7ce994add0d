import { randomUUID } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { keys } from '../../common/keys.js';
import { chunk, MAX_TXN_OPS, mapLimit, scanPrefix, TXN_CONCURRENCY } from '../../common/etcd/batch.js';
import { decodeOrSkip, malformed } from '../../common/etcd/malformed.js';

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

  /** Entries oldest first, of `target` if given; entries that do not decode are skipped and reported. */
  async list(target?: string): Promise<AuditEntry[]> {
    const { kvs } = await scanPrefix(this.etcd, keys.auditPrefix);
    return kvs.map((kv) => decodeOrSkip(kv.key.toString(), kv.value.toString(), decodeEntry))
      .filter((e): e is AuditEntry => e !== null && (target === undefined || e.target === target));
  }
}
