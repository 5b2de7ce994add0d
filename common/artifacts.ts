import { Objm, type ObjectStore } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { digestOf } from './digest.js';
import { BpfleetError } from './errors.js';
import { ARTIFACT_BUCKET } from './keys.js';

/**
 * Module objects, content-addressed in a JetStream object store: the object's name is its
 * digest, so a stored object can never be swapped under a name, and every read is checked
 * against the digest the caller asked for.
 */
export class ArtifactStore {
  private constructor(private readonly store: ObjectStore) {}

  /**
   * Opens the bucket. The control plane creates it if missing (`create`, the default);
   * agents only open it, since their NATS users may read objects but not create streams
   * (docs/SECURITY.md); opening a missing bucket then fails with "object store not found".
   * `replicas` (default 1) applies when the bucket is created: 3 keeps objects through the
   * loss of one node of a 3-node NATS cluster. An existing bucket keeps its own.
   */
  static async open(nc: NatsConnection, { create = true, replicas = 1 }: { create?: boolean; replicas?: number } = {}): Promise<ArtifactStore> {
    const objm = new Objm(nc);
    // create() is idempotent for an existing bucket with the same config.
    const store = create
      ? await objm.create(ARTIFACT_BUCKET, { description: 'bpfleet module objects by digest', replicas })
      : await objm.open(ARTIFACT_BUCKET);
    return new ArtifactStore(store);
  }

  static objectKey(digest: string): string {
    return digest.replace(':', '-');
  }

  async put(object: Uint8Array): Promise<{ digest: string; key: string }> {
    const digest = digestOf(object);
    const key = ArtifactStore.objectKey(digest);
    if (!(await this.present(key))) {
      await this.store.putBlob({ name: key }, object);
    }
    return { digest, key };
  }

  /** Whether the object of `digest` is stored. */
  async has(digest: string): Promise<boolean> {
    return this.present(ArtifactStore.objectKey(digest));
  }

  /** The object store keeps a deleted object's info (marked deleted): that is no object. */
  private async present(key: string): Promise<boolean> {
    const info = await this.store.info(key);
    return info !== null && !info.deleted;
  }

  /**
   * Deletes the object of `digest` (module retire); false when there was none. JetStream
   * purges the object's chunks, so the space is freed, not just the name.
   */
  async delete(digest: string): Promise<boolean> {
    const key = ArtifactStore.objectKey(digest);
    if (!(await this.present(key))) return false;
    await this.store.delete(key);
    return true;
  }

  async get(digest: string): Promise<Uint8Array> {
    const bytes = await this.store.getBlob(ArtifactStore.objectKey(digest));
    if (!bytes) throw new BpfleetError('NOT_FOUND', 'ARTIFACT_MISSING', `artifact ${digest} is not in the object store`);
    const actual = digestOf(bytes);
    if (actual !== digest) {
      throw new BpfleetError('FAILED_PRECONDITION', 'DIGEST_MISMATCH', `artifact digest mismatch: wanted ${digest}, got ${actual}`);
    }
    return bytes;
  }
}
