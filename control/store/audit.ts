import { randomUUID } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { keys } from '../../common/keys.js';
import { chunk, MAX_TXN_OPS, mapLimit, scanPrefix, TXN_CONCURRENCY } from '../../common/etcd/batch.js';

export interface AuditEntry {
  at: string;
  actor: string;
  action: string;
  target: string;
  detail?: Record<string, unknown>;
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

  async list(target?: string): Promise<AuditEntry[]> {
    const { kvs } = await scanPrefix(this.etcd, keys.auditPrefix);
    return kvs.map((kv) => JSON.parse(kv.value.toString()) as AuditEntry)
      .filter((e) => target === undefined || e.target === target);
  }
}
