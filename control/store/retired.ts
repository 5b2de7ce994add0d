import type { Etcd3 } from 'etcd3';
import { decodeOrSkip, malformed } from '../../common/etcd/malformed.js';
import { keys } from '../../common/keys.js';

/** The tombstone of a retired module version, plain JSON under /bpfleet/retired/<name>/<version>. */
export interface RetiredVersion {
  at: string;
  by: string;
  digest: string;
  reason?: string;
}

function decodeRetired(text: string): RetiredVersion {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch (err) {
    throw malformed(`not a retired version: not JSON (${(err as Error).message})`);
  }
  const r = o as Partial<Record<keyof RetiredVersion, unknown>> | null;
  if (typeof r !== 'object' || r === null || ![r.at, r.by, r.digest].every((f) => typeof f === 'string')) {
    throw malformed('not a retired version: at, by and digest must be strings');
  }
  return r as RetiredVersion;
}

/**
 * Retired module versions. A tombstone is written before a retire checks the version's
 * uses (RolloutStore.create refuses a version that has one), removed again when the check
 * refuses, and kept after the retire: name@version never means another object later.
 */
export class RetiredVersions {
  constructor(private readonly etcd: Etcd3) {}

  /** The tombstone; null when the version is not retired. A malformed one still counts as retired. */
  async get(name: string, version: string): Promise<RetiredVersion | null> {
    const key = keys.retired(name, version);
    const text = await this.etcd.get(key).string();
    if (text === null) return null;
    return decodeOrSkip(key, text, decodeRetired) ?? { at: '?', by: '?', digest: '?' };
  }

  /** Writes the tombstone unless there is one; false when there was. */
  async claim(name: string, version: string, entry: RetiredVersion): Promise<boolean> {
    const key = keys.retired(name, version);
    const txn = await this.etcd.if(key, 'Create', '==', 0).then(this.etcd.put(key).value(JSON.stringify(entry))).commit();
    return txn.succeeded;
  }

  async release(name: string, version: string): Promise<void> {
    await this.etcd.delete().key(keys.retired(name, version));
  }
}
