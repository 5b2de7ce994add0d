import type { Etcd3 } from 'etcd3';
import { codecs } from '../../common/etcd/codec.js';
import { fenced, NotLeaderError, type Fence } from '../../common/etcd/fence.js';
import { decodeOrSkip } from '../../common/etcd/malformed.js';
import { scanPrefix } from '../../common/etcd/batch.js';
import { keys } from '../../common/keys.js';
import type { HostDrain } from '../../proto/gen/bpfleet/v1/control.js';

/** A drain with the mod revision it was read at, for a compare-and-swap write. */
export interface StoredDrain {
  drain: HostDrain;
  revision: number;
}

/**
 * Drains under /bpfleet/drains/<host>, one key per host. The API creates and deletes them;
 * the leader moves their state on, each write a compare-and-swap on the key's revision, so
 * an undrain that lands meanwhile wins and is never overwritten.
 */
export class DrainStore {
  constructor(private readonly etcd: Etcd3) {}

  /** The host's drain; null when there is none or it does not decode (reported as malformed). */
  async get(host: string): Promise<StoredDrain | null> {
    const key = keys.drain(host);
    const res = await this.etcd.get(key).exec();
    const kv = res.kvs[0];
    if (!kv) return null;
    const drain = decodeOrSkip(key, kv.value.toString(), codecs.drain.decode);
    return drain && { drain, revision: Number(kv.mod_revision) };
  }

  /** Every drain, in key order; values that do not decode are skipped and reported. */
  async list(): Promise<StoredDrain[]> {
    const { kvs } = await scanPrefix(this.etcd, keys.drainsPrefix);
    return kvs.flatMap((kv) => {
      const drain = decodeOrSkip(kv.key.toString(), kv.value.toString(), codecs.drain.decode);
      return drain ? [{ drain, revision: Number(kv.mod_revision) }] : [];
    });
  }

  /** Stores `drain` unless the host has one; returns the stored one and whether it was this. */
  async create(drain: HostDrain): Promise<{ drain: HostDrain; created: boolean }> {
    const key = keys.drain(drain.host);
    const txn = await this.etcd.if(key, 'Create', '==', 0).then(this.etcd.put(key).value(codecs.drain.encode(drain))).else(this.etcd.get(key)).commit();
    if (txn.succeeded) return { drain, created: true };
    const kv = txn.responses[0]?.response_range?.kvs[0];
    return { drain: (kv && decodeOrSkip(key, kv.value.toString(), codecs.drain.decode)) ?? drain, created: false };
  }

  /** Replaces the drain read at `revision`; false when it changed since (someone else wrote or deleted it). */
  async replace(drain: HostDrain, revision: number): Promise<boolean> {
    const key = keys.drain(drain.host);
    const txn = await this.etcd.if(key, 'Mod', '==', revision).then(this.etcd.put(key).value(codecs.drain.encode(drain))).commit();
    return txn.succeeded;
  }

  /**
   * The leader's write: replaces the drain read at `revision` (fenced); with `forget`, also
   * deletes the host's registration, observed state and intents in the same transaction.
   * False when the drain changed since; NotLeaderError when the fence is gone.
   */
  async advance(drain: HostDrain, revision: number, fence: Fence, forget: boolean): Promise<boolean> {
    const key = keys.drain(drain.host);
    const ops = [this.etcd.put(key).value(codecs.drain.encode(drain))];
    if (forget) {
      ops.push(this.etcd.delete().key(keys.host(drain.host)) as never, this.etcd.delete().key(keys.observed(drain.host)) as never, this.etcd.delete().prefix(keys.intentsOf(drain.host)) as never);
    }
    const txn = await fenced(this.etcd, fence).and(key, 'Mod', '==', revision).then(...ops).else(this.etcd.get(fence.key)).commit();
    if (txn.succeeded) return true;
    if (!txn.responses[0]?.response_range?.kvs.length) throw new NotLeaderError(`update the drain of ${drain.host}`);
    return false;
  }

  /** Deletes the host's drain; returns what it held (null: there was none). */
  async delete(host: string): Promise<HostDrain | null> {
    const key = keys.drain(host);
    const res = await this.etcd.delete().key(key).getPrevious();
    const kv = res[0];
    return kv ? decodeOrSkip(key, kv.value.toString(), codecs.drain.decode) : null;
  }
}
