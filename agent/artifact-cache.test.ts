import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { ArtifactStore } from '../common/artifacts.js';
import { digestOf } from '../common/digest.js';
import { ArtifactCache, type CacheLimits } from './artifact-cache.js';

const dirs: string[] = [];
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

/** `n` distinct objects of `size` bytes, by digest. */
function objects(n: number, size = 100): Map<string, Uint8Array> {
  const all = new Map<string, Uint8Array>();
  for (let i = 0; i < n; i++) {
    const bytes = new Uint8Array(size).fill(i + 1);
    all.set(digestOf(bytes), bytes);
  }
  return all;
}

async function cacheOf(all: Map<string, Uint8Array>, limits: CacheLimits, inUse: ReadonlySet<string> = new Set()) {
  const dir = await mkdtemp(join(tmpdir(), 'bpfleet-cache-'));
  dirs.push(dir);
  const store = { get: async (d: string) => all.get(d)! } as unknown as ArtifactStore;
  const cache = new ArtifactCache(dir, async () => store, () => inUse, limits);
  const cached = async () => new Set((await readdir(dir)).map((n) => n.replace('-', ':')));
  return { cache, cached };
}

const tick = () => new Promise((r) => setTimeout(r, 5));

describe('artifact cache bounds', () => {
  it('keeps at most maxEntries objects, the most recently used; a hit counts as a use', async () => {
    const all = objects(5);
    const [a, b, c, d, e] = [...all.keys()] as [string, string, string, string, string];
    const { cache, cached } = await cacheOf(all, { maxEntries: 3, maxBytes: 1e9 });
    for (const x of [a, b, c]) {
      await cache.get(x);
      await tick();
    }
    await cache.get(a); // a hit: a is now the most recent
    assert.equal(cache.hits, 1);
    await tick();
    await cache.get(d);
    assert.deepEqual(await cached(), new Set([a, c, d]));
    await tick();
    await cache.get(e);
    assert.deepEqual(await cached(), new Set([a, d, e]));
    assert.equal(cache.evicted, 2);
  });

  it('keeps at most maxBytes of objects', async () => {
    const all = objects(4, 1000);
    const { cache, cached } = await cacheOf(all, { maxEntries: 100, maxBytes: 2500 });
    for (const x of all.keys()) {
      await cache.get(x);
      await tick();
    }
    assert.deepEqual(await cached(), new Set([...all.keys()].slice(2)));
  });

  it('never evicts an object an attachment runs, nor the one just fetched', async () => {
    const all = objects(4);
    const [a, b, c, d] = [...all.keys()] as [string, string, string, string];
    const { cache, cached } = await cacheOf(all, { maxEntries: 1, maxBytes: 1e9 }, new Set([a]));
    for (const x of [a, b, c, d]) {
      await cache.get(x);
      await tick();
    }
    assert.deepEqual(await cached(), new Set([a, d]), 'a runs somewhere, d was just fetched: both past the limit');
    assert.deepEqual(await cache.get(b), all.get(b), 'an evicted object is fetched again');
  });
});
