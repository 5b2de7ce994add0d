import type { Etcd3 } from 'etcd3';
import { chunk, MAX_TXN_OPS, mapLimit, TXN_CONCURRENCY } from '../../common/etcd/batch.js';

interface Pending {
  value: string;
  lease: string | undefined;
  done: (() => void)[];
  failed: ((err: unknown) => void)[];
}

/**
 * Puts from many simulated hosts, committed together: each put resolves once a transaction
 * holding it has committed. What a thousand agent processes would send as a thousand
 * requests goes to etcd as a few transactions of up to MAX_TXN_OPS puts. A key written again
 * before its commit keeps only its newest value, and one round of transactions finishes
 * before the next starts, so an older value never lands after a newer one.
 */
export class GroupCommit {
  private pending = new Map<string, Pending>();
  private running: Promise<void> | null = null;

  constructor(private readonly etcd: Etcd3) {}

  put(key: string, value: string, lease?: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const p = this.pending.get(key);
      if (p) {
        p.value = value;
        p.lease = lease;
        p.done.push(resolve);
        p.failed.push(reject);
      } else {
        this.pending.set(key, { value, lease, done: [resolve], failed: [reject] });
      }
      this.running ??= this.drain();
    });
  }

  private async drain(): Promise<void> {
    // Let the puts of the current burst of events join this round.
    await new Promise((resolve) => setImmediate(resolve));
    while (this.pending.size) {
      const round = [...this.pending];
      this.pending = new Map();
      await mapLimit(chunk(round, MAX_TXN_OPS), TXN_CONCURRENCY, async (part) => {
        try {
          await this.etcd.kv.txn({
            success: part.map(([key, p]) => ({ request_put: { key: Buffer.from(key), value: Buffer.from(p.value), ...(p.lease ? { lease: p.lease } : {}) } })),
          });
          for (const [, p] of part) for (const f of p.done) f();
        } catch (err) {
          for (const [, p] of part) for (const f of p.failed) f(err);
        }
      });
    }
    this.running = null;
  }

  /** Resolves when everything put so far is committed (or failed). */
  async flush(): Promise<void> {
    while (this.running) await this.running;
  }
}
