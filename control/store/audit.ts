import { randomUUID } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { keys } from '../../common/keys.js';

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
    const at = this.clock();
    const entry: AuditEntry = { at: at.toISOString(), actor, action, target, ...(detail ? { detail } : {}) };
    await this.etcd.put(keys.audit(at, randomUUID().slice(0, 8))).value(JSON.stringify(entry));
  }

  async list(target?: string): Promise<AuditEntry[]> {
    const values = await this.etcd.getAll().prefix(keys.auditPrefix).strings();
    return Object.keys(values).sort()
      .map((k) => JSON.parse(values[k]!) as AuditEntry)
      .filter((e) => target === undefined || e.target === target);
  }
}
