import type { Etcd3, IKeyValue } from 'etcd3';

/**
 * etcd refuses a transaction with more than 128 operations (or compares) and a request over
 * 1.5 MiB (its defaults, --max-txn-ops and --max-request-bytes). Anything that writes many
 * keys goes through chunks of at most this many operations.
 */
export const MAX_TXN_OPS = 128;

/** Transactions of one bulk write in flight at once: enough for etcd to batch them into one raft round. */
export const TXN_CONCURRENCY = 8;

// Keys per page when reading a prefix: keeps every response far below gRPC's 4 MiB limit.
const PAGE_KEYS = 1000;

export function chunk<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Runs `fn` over `items` with at most `limit` calls pending; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Smallest key greater than every key that starts with `key`: the next page starts there. */
export function keyAfter(key: Buffer): Buffer {
  return Buffer.concat([key, Buffer.from([0])]);
}

/** Smallest key greater than every key under `prefix`: the end of a range read of the prefix. */
export function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/**
 * Every key under `prefix` as of one revision, read in pages. Returns the revision too, so a
 * watch started from revision + 1 misses nothing and sees nothing twice.
 */
export async function scanPrefix(etcd: Etcd3, prefix: string, atRevision?: number): Promise<{ kvs: IKeyValue[]; revision: number }> {
  const end = prefixEnd(prefix);
  const kvs: IKeyValue[] = [];
  let start: Buffer = Buffer.from(prefix);
  let revision = atRevision;
  for (;;) {
    let q = etcd.getAll().inRange({ start, end }).limit(PAGE_KEYS);
    if (revision !== undefined) q = q.revision(revision);
    const res = await q.exec();
    revision ??= Number(res.header.revision);
    kvs.push(...res.kvs);
    if (!res.more || res.kvs.length === 0) return { kvs, revision };
    start = keyAfter(res.kvs[res.kvs.length - 1]!.key);
  }
}
