import { setTimeout as sleep } from 'node:timers/promises';
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import type { Logger } from '../log.js';
import { scanPrefix } from './batch.js';
import { reportMalformed } from './malformed.js';

/** The keys under a prefix and their values as of one revision. */
export interface Listing<T> {
  /** By whole key, in key order. */
  items: Map<string, T>;
  revision: number;
}

/**
 * One change under a watched prefix; `key` is the whole key, `revision` the etcd revision
 * of the change. A `reset` replaces everything the consumer holds for the prefix: it comes
 * first (unless the watch started from a revision) and again whenever the watch was lost
 * and the prefix read anew, with `cause` the error that lost it.
 */
export type WatchEvent<T> =
  | { kind: 'reset'; items: Map<string, T>; revision: number; cause?: unknown }
  | { kind: 'put'; key: string; value: T; revision: number }
  | { kind: 'delete'; key: string; revision: number };

export interface WatchOptions<T> {
  /** Ends the iteration and cancels the etcd watch. */
  signal: AbortSignal;
  /**
   * Start with the changes at this revision instead of reading the prefix first: the
   * caller already holds the prefix as of fromRevision - 1.
   */
  fromRevision?: number;
  /**
   * Turns a value's text (stored under `key`) into T (default: asText). A value it throws on
   * is skipped: left out of a reset, never yielded as a put, and reported (reportMalformed).
   */
  decode?: Decoder<T>;
  /** Where failed attempts to read the prefix again and skipped values are reported. */
  log?: Logger;
}

// Between attempts to read a prefix again after a lost watch: doubling up to the maximum.
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 30_000;

/** Turns a stored value into T, or throws when it cannot (see reportMalformed). */
export type Decoder<T> = (text: string, key: string) => T;

/** The identity decoder: values as text. */
export const asText = (text: string): string => text;

/**
 * Every key under `prefix` and its decoded value, as of `atRevision` (default: now), read
 * in pages. A value `decode` throws on is left out and reported to `log` and the
 * bpfleet.store.malformed metric. Throws what reading throws.
 */
export async function listPrefix<T>(etcd: Etcd3, prefix: string, decode: Decoder<T>, atRevision?: number, log?: Logger): Promise<Listing<T>> {
  const { kvs, revision } = await scanPrefix(etcd, prefix, atRevision);
  return { items: decodeAll(kvs, decode, log), revision };
}

/**
 * The changes under `prefix` as an async iterable, in revision order: a `reset` with the
 * prefix's contents, then each put and delete after it. Nothing is missed or seen twice:
 * the watch starts at the revision after the one the prefix was read at.
 *
 * The one recovery policy: etcd3 resumes a watch by itself across reconnects, but a watch
 * the server cancels (its start revision was compacted, or it was cancelled outright)
 * stays dead. Then the prefix is read again (retrying with backoff while etcd cannot be
 * read), a `reset` is yielded and the watch resumes after it. Ends when `signal` aborts or
 * the consumer stops iterating. Throws if the first read fails. A value that cannot be
 * decoded is skipped and reported (see WatchOptions.decode): one bad key must not stop
 * every reader of the prefix.
 */
export function watchPrefix(etcd: Etcd3, prefix: string, opts: WatchOptions<string>): AsyncGenerator<WatchEvent<string>, void, undefined>;
export function watchPrefix<T>(etcd: Etcd3, prefix: string, opts: WatchOptions<T> & { decode: Decoder<T> }): AsyncGenerator<WatchEvent<T>, void, undefined>;
export async function* watchPrefix<T>(etcd: Etcd3, prefix: string, opts: WatchOptions<T>): AsyncGenerator<WatchEvent<T>, void, undefined> {
  const { signal } = opts;
  const decode = opts.decode ?? (asText as unknown as Decoder<T>);
  let from = opts.fromRevision;
  if (from === undefined) {
    const listing = await listPrefix(etcd, prefix, decode, undefined, opts.log);
    yield { kind: 'reset', ...listing };
    from = listing.revision + 1;
  }
  while (!signal.aborted) {
    const cause = yield* changesFrom(etcd, prefix, from, decode, signal, opts.log);
    if (cause === undefined) return;
    const listing = await readAgain(etcd, prefix, signal, cause, opts.log);
    if (!listing) return;
    yield { kind: 'reset', items: decodeAll(listing.kvs, decode, opts.log), revision: listing.revision, cause };
    from = listing.revision + 1;
  }
}

type Received = { kind: 'put' | 'delete'; kv: IKeyValue } | { kind: 'lost'; err: unknown };

/**
 * Yields the changes of one etcd watch from revision `from`. Returns the error that ended
 * the watch, or undefined when `signal` aborted.
 */
async function* changesFrom<T>(etcd: Etcd3, prefix: string, from: number, decode: Decoder<T>, signal: AbortSignal, log?: Logger): AsyncGenerator<WatchEvent<T>, unknown, undefined> {
  const inbox = new Inbox(signal);
  // Listeners go on before the watch connects: a created response and the first changes
  // can arrive in one read, before an awaited create() would return the watcher.
  const watcher: Watcher = etcd.watch().prefix(prefix).startRevision(String(from)).watcher();
  watcher.on('put', (kv) => inbox.push({ kind: 'put', kv }));
  watcher.on('delete', (kv) => inbox.push({ kind: 'delete', kv }));
  watcher.on('error', (err) => inbox.push({ kind: 'lost', err }));
  let lost = false;
  try {
    for (let batch = await inbox.take(); batch.length; batch = await inbox.take()) {
      for (const item of batch) {
        if (signal.aborted) return undefined;
        if (item.kind === 'lost') {
          lost = true;
          return item.err;
        }
        const key = item.kv.key.toString();
        const revision = Number(item.kv.mod_revision);
        if (item.kind === 'delete') {
          yield { kind: 'delete', key, revision };
          continue;
        }
        const value = decodeOne(item.kv, decode, log);
        if (value !== skipped) yield { kind: 'put', key, value, revision };
      }
    }
    return undefined;
  } finally {
    inbox.close();
    // A watch the server cancelled is gone already, and a cancel request for it would
    // never be answered.
    if (!lost) await watcher.cancel().catch(() => undefined);
  }
}

/** The prefix read again after a lost watch; null when `signal` aborted first. */
async function readAgain(etcd: Etcd3, prefix: string, signal: AbortSignal, cause: unknown, log?: Logger): Promise<{ kvs: IKeyValue[]; revision: number } | null> {
  for (let delayMs = RETRY_FIRST_MS; !signal.aborted; delayMs = Math.min(2 * delayMs, RETRY_MAX_MS)) {
    try {
      return await scanPrefix(etcd, prefix);
    } catch (err) {
      log?.warn({ err: String(err), prefix, watchLost: String(cause), retryInMs: delayMs }, 'reading a watched prefix again failed; retrying');
      await sleep(delayMs, undefined, { signal }).catch(() => undefined);
    }
  }
  return null;
}

const skipped = Symbol('skipped');

function decodeOne<T>(kv: IKeyValue, decode: Decoder<T>, log?: Logger): T | typeof skipped {
  const key = kv.key.toString();
  try {
    return decode(kv.value.toString(), key);
  } catch (err) {
    reportMalformed(key, err, log);
    return skipped;
  }
}

function decodeAll<T>(kvs: readonly IKeyValue[], decode: Decoder<T>, log?: Logger): Map<string, T> {
  const items = new Map<string, T>();
  for (const kv of kvs) {
    const value = decodeOne(kv, decode, log);
    if (value !== skipped) items.set(kv.key.toString(), value);
  }
  return items;
}

/** What a watcher delivered and nobody took yet, handed over a batch at a time. */
class Inbox {
  private items: Received[] = [];
  private wake: (() => void) | null = null;
  private readonly onAbort = (): void => this.notify();

  constructor(private readonly signal: AbortSignal) {
    signal.addEventListener('abort', this.onAbort, { once: true });
  }

  push(item: Received): void {
    this.items.push(item);
    this.notify();
  }

  /** Everything received so far, waiting for at least one item; empty once aborted. */
  async take(): Promise<Received[]> {
    while (!this.items.length && !this.signal.aborted) await new Promise<void>((resolve) => (this.wake = resolve));
    if (this.signal.aborted) return [];
    const batch = this.items;
    this.items = [];
    return batch;
  }

  close(): void {
    this.signal.removeEventListener('abort', this.onAbort);
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
}
