/**
 * The control plane's first storage code, kept only so bench/storage.ts can measure the
 * current stores against it in the same run. Not used by bpfleet.
 */
import type { Etcd3 } from 'etcd3';
import { keys } from '../../common/keys.js';
import { codecs } from '../../common/etcd/codec.js';
import { fenced, type Fence } from '../../common/etcd/fence.js';
import type { IntentDraft } from '../../common/etcd/intents.js';
import type { GetStateResponse, Intent } from '../../proto/gen/bpfleet/v1/agent.js';
import type { Host } from '../../proto/gen/bpfleet/v1/control.js';
import type { Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';

/** The whole rollout, every host's progress included, in one key, rewritten on every save. */
export class NaiveRolloutStore {
  constructor(private readonly etcd: Etcd3) {}

  async saveStatus(rollout: Rollout, fence: Fence): Promise<void> {
    const txn = await fenced(this.etcd, fence).then(this.etcd.put(keys.rollout(rollout.id)).value(codecs.rollout.encode(rollout))).commit();
    if (!txn.succeeded) throw new Error('not leader');
  }
}

/** One read and one fenced transaction per intent. */
export class NaiveIntentStore {
  constructor(private readonly etcd: Etcd3) {}

  async write(draft: IntentDraft, fence: Fence): Promise<Intent> {
    const key = keys.intent(draft.host, draft.attachment);
    const kv = (await this.etcd.get(key).exec()).kvs[0];
    const previous = kv ? codecs.intent.decode(kv.value.toString()) : null;
    const intent: Intent = { ...draft, generation: (previous?.generation ?? 0) + 1, leaderEpoch: fence.epoch };
    const txn = await fenced(this.etcd, fence)
      .and(key, 'Mod', '==', kv ? Number(kv.mod_revision) : 0)
      .then(this.etcd.put(key).value(codecs.intent.encode(intent)))
      .commit();
    if (!txn.succeeded) throw new Error('not leader');
    return intent;
  }
}

/** Every registration and observed state read and joined on every call. */
export class NaiveHostDirectory {
  constructor(private readonly etcd: Etcd3) {}

  async list(): Promise<Host[]> {
    const [registered, observed] = await Promise.all([
      this.etcd.getAll().prefix(keys.hostsPrefix).strings(),
      this.etcd.getAll().prefix(keys.observedPrefix).strings(),
    ]);
    const observedByHost = new Map<string, GetStateResponse>();
    for (const v of Object.values(observed)) {
      const state = codecs.observed.decode(v);
      observedByHost.set(state.host, state);
    }
    return Object.values(registered)
      .map((v) => codecs.host.decode(v))
      .map((h) => ({
        ...h,
        attachments: (observedByHost.get(h.name)?.attachments ?? []).map((a) => ({
          attachment: a.attachment,
          module: a.module?.name ?? '',
          version: a.module?.version ?? '',
          digest: a.module?.digest ?? '',
          progId: a.progId,
          unverified: '',
        })),
      }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }
}
