import type { Etcd3 } from 'etcd3';
import { keys } from '../../common/keys.js';
import { Intent } from '../../proto/gen/bpfleet/v1/agent.js';
import { decode, encode } from './codec.js';
import { fenced, type Fence } from './fence.js';
import { NotLeaderError } from './rollouts.js';

/** Desired module per host and attachment. Only the leader writes them, fenced. */
export class IntentStore {
  constructor(private readonly etcd: Etcd3) {}

  async get(host: string, attachment: string): Promise<Intent | null> {
    const text = await this.etcd.get(keys.intent(host, attachment)).string();
    return text === null ? null : decode(Intent, text);
  }

  /**
   * Records the intent with the next generation for that host+attachment. The txn also
   * checks the previous intent is unchanged, so two writers can never hand out the same
   * generation.
   */
  async write(draft: Omit<Intent, 'generation' | 'leaderEpoch'>, fence: Fence): Promise<Intent> {
    const key = keys.intent(draft.host, draft.attachment);
    const current = await this.etcd.get(key).exec();
    const kv = current.kvs[0];
    const previous = kv ? decode(Intent, kv.value.toString()) : null;
    const intent: Intent = { ...draft, generation: (previous?.generation ?? 0) + 1, leaderEpoch: fence.epoch };
    const txn = await fenced(this.etcd, fence)
      .and(key, 'Mod', '==', kv ? Number(kv.mod_revision) : 0)
      .then(this.etcd.put(key).value(encode(Intent, intent)))
      .commit();
    if (!txn.succeeded) throw new NotLeaderError(`write intent ${key}`);
    return intent;
  }

  async listFor(host: string): Promise<Intent[]> {
    const values = await this.etcd.getAll().prefix(keys.intentsOf(host)).strings();
    return Object.values(values).map((v) => decode(Intent, v));
  }
}
