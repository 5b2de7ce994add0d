import type { Etcd3 } from 'etcd3';
import type { Intent } from '../../proto/gen/bpfleet/v1/agent.js';
import { BpfleetError } from '../errors.js';
import { keys } from '../keys.js';
import { chunk, MAX_TXN_OPS, mapLimit, TXN_CONCURRENCY } from './batch.js';
import type { Logger } from '../log.js';
import { codecs } from './codec.js';
import { decodeOrSkip } from './malformed.js';
import { fenced, NotLeaderError, type Fence } from './fence.js';
import { listPrefix, watchPrefix, type Listing, type WatchEvent, type WatchOptions } from './watch.js';

export type IntentDraft = Omit<Intent, 'generation' | 'leaderEpoch'>;

/** Desired module per host and attachment. Only the leader writes them, fenced; each agent reads its own. */
export class IntentStore {
  /** Intents per transaction: each needs a compare of its own besides the fence's. */
  static readonly BATCH = MAX_TXN_OPS - 1;

  constructor(private readonly etcd: Etcd3) {}

  /** The intent; null when there is none or it does not decode (reported as malformed). */
  async get(host: string, attachment: string): Promise<Intent | null> {
    const key = keys.intent(host, attachment);
    const text = await this.etcd.get(key).string();
    return text === null ? null : decodeOrSkip(key, text, codecs.intent.decode);
  }

  /**
   * Records each intent with the next generation for its host+attachment, in order. Each
   * transaction (up to BATCH intents, fenced) also checks that every previous intent is
   * unchanged since it was read, so two writers can never hand out the same generation.
   * With `unless`, every transaction also requires those keys to be absent (the converger:
   * no active-rollout slot); finding one present throws FAILED_PRECONDITION/ROLLOUT_ACTIVE.
   */
  async writeAll(drafts: readonly IntentDraft[], fence: Fence, unless: readonly string[] = []): Promise<Intent[]> {
    const seen = new Set<string>();
    for (const d of drafts) {
      const key = keys.intent(d.host, d.attachment);
      if (seen.has(key)) throw new BpfleetError('INTERNAL', 'DUPLICATE_INTENT', `two intents for ${d.host} ${d.attachment} in one write`);
      seen.add(key);
    }
    const batch = IntentStore.BATCH - unless.length;
    if (batch < 1) throw new BpfleetError('INTERNAL', 'INTERNAL', `${unless.length} keys to check leave no room for an intent in a transaction`);
    const parts = await mapLimit(chunk(drafts, batch), TXN_CONCURRENCY, (part) => this.writeBatch(part, fence, unless));
    return parts.flat();
  }

  private async writeBatch(drafts: readonly IntentDraft[], fence: Fence, unless: readonly string[]): Promise<Intent[]> {
    const batchKeys = drafts.map((d) => keys.intent(d.host, d.attachment));
    const read = await fenced(this.etcd, fence).then(...batchKeys.map((k) => this.etcd.get(k))).commit();
    if (!read.succeeded) throw new NotLeaderError(`write ${drafts.length} intents`);
    const current = read.responses.map((r) => r.response_range?.kvs[0]);
    const intents = drafts.map((d, i): Intent => {
      const kv = current[i];
      // A malformed previous intent is overwritten: its generation is lost, and agents
      // compare generations for equality only (agent/intent-watch.ts), so 1 is as good as any.
      const previous = kv ? decodeOrSkip(batchKeys[i]!, kv.value.toString(), codecs.intent.decode) : null;
      return { ...d, generation: (previous?.generation ?? 0) + 1, leaderEpoch: fence.epoch };
    });
    let guard = fenced(this.etcd, fence);
    batchKeys.forEach((k, i) => {
      guard = guard.and(k, 'Mod', '==', current[i] ? Number(current[i]!.mod_revision) : 0);
    });
    for (const k of unless) guard = guard.and(k, 'Create', '==', 0);
    const txn = await guard.then(...batchKeys.map((k, i) => this.etcd.put(k).value(codecs.intent.encode(intents[i]!)))).commit();
    if (!txn.succeeded) {
      for (const k of unless) {
        if ((await this.etcd.get(k).string()) !== null) throw new BpfleetError('FAILED_PRECONDITION', 'ROLLOUT_ACTIVE', `${k} is held by an active rollout`);
      }
      throw new NotLeaderError(`write ${drafts.length} intents`);
    }
    return intents;
  }

  /** The host's intents by key, as of one revision; values that do not decode are left out and reported to `log`. */
  list(host: string, log?: Logger): Promise<Listing<Intent>> {
    return listPrefix(this.etcd, keys.intentsOf(host), codecs.intent.decode, undefined, log);
  }

  /** Changes to the host's intents (see watchPrefix); from `fromRevision`, e.g. a list()'s revision + 1. */
  watch(host: string, opts: Omit<WatchOptions<Intent>, 'decode'>): AsyncIterable<WatchEvent<Intent>> {
    return watchPrefix(this.etcd, keys.intentsOf(host), { ...opts, decode: codecs.intent.decode });
  }
}
