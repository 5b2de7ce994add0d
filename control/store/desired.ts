import type { Etcd3 } from 'etcd3';
import { scanPrefix } from '../../common/etcd/batch.js';
import { codecs } from '../../common/etcd/codec.js';
import { decodeOrSkip, malformed } from '../../common/etcd/malformed.js';
import { keys } from '../../common/keys.js';
import type { Logger } from '../../common/log.js';
import type { DesiredVersion, Rollout } from '../../proto/gen/bpfleet/v1/rollout.js';
import type { DesiredRecord } from '../convergence/desired.js';

/**
 * The DesiredVersion a succeeded rollout leaves: its module, version, digest, attachment and
 * selector, stamped `at` (ISO time). Written by RolloutStore.saveStatus in the transaction
 * that makes the rollout SUCCEEDED, under keys.desired(module, attachment, selector).
 */
export function promotedBy(rollout: Rollout, at: string): DesiredVersion {
  const spec = rollout.spec!;
  return {
    module: spec.module, version: spec.version, digest: rollout.status!.digest, attachment: spec.attachment,
    selector: { ...spec.selector }, rolloutId: rollout.id, at,
  };
}

/**
 * The fleet's desired versions in etcd (/bpfleet/desired/): one record per module,
 * attachment and selector; a later rollout with the same selector replaces it. Only the
 * leader writes them (with the rollout's final status); the API and the converger read.
 */
export class DesiredStore {
  constructor(private readonly etcd: Etcd3, private readonly log?: Logger) {}

  /**
   * Every record, with its key's mod revision (newer is higher). A value that does not
   * decode, or is not stored under the key its own fields name, is left out and reported.
   */
  async list(): Promise<DesiredRecord[]> {
    const { kvs } = await scanPrefix(this.etcd, keys.desiredPrefix);
    const records: DesiredRecord[] = [];
    for (const kv of kvs) {
      const key = kv.key.toString();
      const d = decodeOrSkip(key, kv.value.toString(), (text) => {
        const value = codecs.desired.decode(text);
        if (keys.desired(value.module, value.attachment, value.selector) !== key) throw malformed('a desired version under another key than its own');
        return value;
      }, this.log);
      if (d) records.push({ ...d, revision: Number(kv.mod_revision) });
    }
    return records;
  }
}
