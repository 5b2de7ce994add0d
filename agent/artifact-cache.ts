import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ArtifactStore } from '../common/artifacts.js';
import { digestOf } from '../common/digest.js';

/**
 * Module objects on local disk by digest, so an agent restart or a rollback does not
 * refetch, and every read — cached or fetched — is checked against the digest asked for.
 */
export class ArtifactCache {
  hits = 0;
  misses = 0;

  constructor(private readonly dir: string, private readonly store: () => Promise<ArtifactStore>) {}

  private path(digest: string): string {
    return join(this.dir, digest.replace(':', '-'));
  }

  async get(digest: string): Promise<Uint8Array> {
    const cached = await readFile(this.path(digest)).catch(() => null);
    if (cached && digestOf(cached) === digest) {
      this.hits++;
      return cached;
    }
    this.misses++;
    const bytes = await (await this.store()).get(digest);
    await mkdir(this.dir, { recursive: true });
    // Write then rename: a crash mid-write must not leave a truncated object under the digest.
    const tmp = `${this.path(digest)}.${process.pid}.tmp`;
    await writeFile(tmp, bytes);
    await rename(tmp, this.path(digest));
    return bytes;
  }
}
