import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ArtifactStore } from '../common/artifacts.js';
import { digestOf } from '../common/digest.js';

/** How much the cache keeps on disk; objects an attachment runs are kept past it. */
export interface CacheLimits {
  /** Objects kept at most (default 64). */
  maxEntries: number;
  /** Bytes of objects kept at most (default 256 MiB, about 85 objects at the 3 MiB object limit). */
  maxBytes: number;
}

export const CACHE_LIMITS: CacheLimits = { maxEntries: 64, maxBytes: 256 * 1024 * 1024 };

const OBJECT_FILE = /^sha256-[0-9a-f]{64}$/;

/**
 * Module objects on local disk by digest, so an agent restart or a rollback does not
 * refetch, and every read — cached or fetched — is checked against the digest asked for.
 * Bounded by `limits`: after each fetch the least recently used objects that no attachment
 * runs (`inUse`, digests) are deleted until the cache is within both limits. Nothing is
 * held in memory.
 */
export class ArtifactCache {
  hits = 0;
  misses = 0;
  evicted = 0;

  constructor(
    private readonly dir: string,
    private readonly store: () => Promise<ArtifactStore>,
    private readonly inUse: () => ReadonlySet<string> = () => new Set(),
    private readonly limits: CacheLimits = CACHE_LIMITS,
  ) {}

  private path(digest: string): string {
    return join(this.dir, digest.replace(':', '-'));
  }

  async get(digest: string): Promise<Uint8Array> {
    const cached = await readFile(this.path(digest)).catch(() => null);
    if (cached && digestOf(cached) === digest) {
      this.hits++;
      // The file's mtime is its last use: eviction goes least recently used first.
      const now = new Date();
      await utimes(this.path(digest), now, now).catch(() => undefined);
      return cached;
    }
    this.misses++;
    const bytes = await (await this.store()).get(digest);
    await mkdir(this.dir, { recursive: true });
    // Write then rename: a crash mid-write must not leave a truncated object under the digest.
    const tmp = `${this.path(digest)}.${process.pid}.tmp`;
    await writeFile(tmp, bytes);
    await rename(tmp, this.path(digest));
    await this.evict(digest);
    return bytes;
  }

  /**
   * Deletes least recently used objects, never `keep` nor one an attachment runs, until
   * the cache is within its limits (or only such objects are left).
   */
  private async evict(keep: string): Promise<void> {
    const names = (await readdir(this.dir)).filter((n) => OBJECT_FILE.test(n));
    const files = await Promise.all(names.map(async (name) => {
      const s = await stat(join(this.dir, name)).catch(() => null);
      return { name, digest: name.replace('-', ':'), bytes: s?.size ?? 0, usedAt: s?.mtimeMs ?? 0 };
    }));
    let entries = files.length;
    let bytes = files.reduce((sum, f) => sum + f.bytes, 0);
    const inUse = this.inUse();
    const candidates = files.filter((f) => f.digest !== keep && !inUse.has(f.digest)).sort((a, b) => a.usedAt - b.usedAt);
    for (const f of candidates) {
      if (entries <= this.limits.maxEntries && bytes <= this.limits.maxBytes) return;
      await rm(join(this.dir, f.name), { force: true });
      entries--;
      bytes -= f.bytes;
      this.evicted++;
    }
  }
}
