/**
 * watchPrefix against a real etcd: a listing then every change once, and the one recovery
 * policy (read the prefix again, yield a reset, resume) when the server cancels the watch:
 * from a compacted start revision, and after a partition the history was compacted across.
 */
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Etcd3 } from 'etcd3';
import { CleanupStack } from '../../dev/cleanup.js';
import { startEtcd, type EtcdServer } from '../../dev/etcd.js';
import { LOOPBACK } from '../../dev/ports.js';
import { prereqSkip } from '../../e2e/support/prereqs.js';
import { watchPrefix, type WatchEvent } from './watch.js';

const until = async (what: string, check: () => boolean, timeoutMs = 5000): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

/** Iterates `changes` in the background, keeping every event for the test to look at. */
function collect<T>(changes: AsyncIterable<WatchEvent<T>>): { seen: WatchEvent<T>[]; done: Promise<void> } {
  const seen: WatchEvent<T>[] = [];
  const done = (async () => {
    for await (const change of changes) seen.push(change);
  })();
  return { seen, done };
}

const resets = <T>(seen: WatchEvent<T>[]) => seen.filter((c) => c.kind === 'reset');
const putOf = <T>(seen: WatchEvent<T>[], key: string) => seen.find((c) => c.kind === 'put' && c.key === key);

/** A client that writes `key` right after its first prefix read: a change between a listing and its watch. */
function putAfterFirstRead(etcd: Etcd3, key: string): Etcd3 {
  let done = false;
  return new Proxy(etcd, {
    get(target, prop) {
      if (prop === 'getAll') {
        return () => {
          const builder = target.getAll();
          const exec = builder.exec.bind(builder);
          builder.exec = async () => {
            const res = await exec();
            if (!done) {
              done = true;
              await target.put(key).value('between');
            }
            return res;
          };
          return builder;
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** A TCP relay to etcd that can drop every connection and refuse new ones: a partition. */
async function startRelay(port: number): Promise<{ endpoint: string; cut(): void; heal(): void; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let open = true;
  const server = createServer((client) => {
    if (!open) {
      client.destroy();
      return;
    }
    const upstream = connect(port, LOOPBACK);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', drop).on('close', drop);
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, LOOPBACK, resolve));
  const { port: relayPort } = server.address() as { port: number };
  const cut = () => {
    open = false;
    for (const s of sockets) s.destroy();
  };
  return {
    endpoint: `http://${LOOPBACK}:${relayPort}`,
    cut,
    heal: () => (open = true),
    close: () => {
      cut();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

describe('watchPrefix on a real etcd', { skip: await prereqSkip(['etcd']) }, () => {
  const cleanup = new CleanupStack();
  let server: EtcdServer;
  let etcd: Etcd3;

  before(async () => {
    server = await startEtcd();
    cleanup.defer(() => server.stop(), 'stop etcd');
    etcd = new Etcd3({ hosts: server.endpoint });
    cleanup.defer(() => etcd.close(), 'close client');
  });
  after(() => cleanup.runAll());

  const compactNow = async (): Promise<number> => {
    const revision = Number((await etcd.get('/').exec()).header.revision);
    await etcd.kv.compact({ revision, physical: true });
    return revision;
  };

  test('a reset with the prefix, then each put and delete under it once, in revision order', async () => {
    const prefix = '/t/basic/';
    await etcd.put(`${prefix}a`).value('1');
    await etcd.put('/t/basic-not/x').value('other prefix');
    const stop = new AbortController();
    const { seen, done } = collect(watchPrefix(etcd, prefix, { signal: stop.signal }));
    await until('the listing', () => seen.length === 1);
    await etcd.put(`${prefix}b`).value('2');
    await etcd.put('/t/basic-not/y').value('other prefix');
    await etcd.delete().key(`${prefix}a`);
    await until('the delete', () => seen.length === 3);
    stop.abort();
    await done;
    const [reset, put, del] = seen;
    assert.ok(reset?.kind === 'reset' && put?.kind === 'put' && del?.kind === 'delete');
    assert.deepEqual([...reset.items], [[`${prefix}a`, '1']]);
    assert.equal(reset.cause, undefined);
    assert.deepEqual([put.key, put.value, del.key], [`${prefix}b`, '2', `${prefix}a`]);
    assert.ok(reset.revision < put.revision && put.revision < del.revision);
  });

  test('a put between the listing and the watch is seen once, after the reset', async () => {
    const prefix = '/t/between/';
    await etcd.put(`${prefix}listed`).value('1');
    const stop = new AbortController();
    const { seen, done } = collect(watchPrefix(putAfterFirstRead(etcd, `${prefix}raced`), prefix, { signal: stop.signal }));
    await until('the raced put', () => putOf(seen, `${prefix}raced`) !== undefined);
    await etcd.put(`${prefix}later`).value('2');
    await until('a later put', () => putOf(seen, `${prefix}later`) !== undefined);
    stop.abort();
    await done;
    const [reset, raced] = seen;
    assert.ok(reset?.kind === 'reset' && raced?.kind === 'put');
    assert.deepEqual([...reset.items.keys()], [`${prefix}listed`], 'the listing was read before the put');
    assert.equal(raced.key, `${prefix}raced`);
    assert.equal(raced.revision, reset.revision + 1);
    assert.equal(seen.filter((c) => c.kind === 'put' && c.key === `${prefix}raced`).length, 1);
  });

  test('a watch from a compacted revision is cancelled by the server: reset with the prefix, then later changes', async () => {
    const prefix = '/t/compacted/';
    const first = Number((await etcd.put(`${prefix}a`).value('1').exec()).header.revision);
    await etcd.put(`${prefix}b`).value('2');
    await etcd.delete().key(`${prefix}a`);
    await compactNow();
    const stop = new AbortController();
    const { seen, done } = collect(watchPrefix(etcd, prefix, { signal: stop.signal, fromRevision: first }));
    await until('the reset', () => seen.length === 1);
    await etcd.put(`${prefix}c`).value('3');
    await until('a later put', () => putOf(seen, `${prefix}c`) !== undefined);
    stop.abort();
    await done;
    const [reset, put] = seen;
    assert.ok(reset?.kind === 'reset' && put?.kind === 'put');
    assert.match(String(reset.cause), /Watcher canceled/);
    assert.deepEqual([...reset.items], [[`${prefix}b`, '2']]);
    assert.equal(seen.length, 2);
  });

  test('a watch lost across a partition while history was compacted: reset with what changed meanwhile, then resumes', { timeout: 90_000 }, async () => {
    const prefix = '/t/partition/';
    const relay = await startRelay(server.clientPort);
    cleanup.defer(() => relay.close(), 'close relay');
    const partitioned = new Etcd3({ hosts: relay.endpoint });
    cleanup.defer(() => partitioned.close(), 'close partitioned client');
    await etcd.put(`${prefix}gone`).value('1');
    const stop = new AbortController();
    const { seen, done } = collect(watchPrefix(partitioned, prefix, { signal: stop.signal }));
    await until('the listing', () => seen.length === 1);
    await etcd.put(`${prefix}seen`).value('2');
    await until('a put through the relay', () => putOf(seen, `${prefix}seen`) !== undefined);

    relay.cut();
    await etcd.put(`${prefix}missed`).value('3');
    await etcd.delete().key(`${prefix}gone`);
    await compactNow();
    relay.heal();
    await until('the reset after the partition', () => resets(seen).length === 2, 60_000);
    await etcd.put(`${prefix}after`).value('4');
    await until('a put after the reset', () => putOf(seen, `${prefix}after`) !== undefined);
    stop.abort();
    await done;

    const reset = resets(seen)[1]!;
    assert.ok(reset.kind === 'reset');
    assert.match(String(reset.cause), /Watcher canceled/);
    assert.deepEqual([...reset.items], [[`${prefix}missed`, '3'], [`${prefix}seen`, '2']]);
    const afterReset = seen.slice(seen.indexOf(reset) + 1);
    assert.deepEqual(afterReset.map((c) => c.kind === 'put' && c.key), [`${prefix}after`]);
  });

  test('ends when the signal aborts or the consumer stops, waiting or not', async () => {
    const prefix = '/t/end/';
    const stop = new AbortController();
    const { seen, done } = collect(watchPrefix(etcd, prefix, { signal: stop.signal }));
    await until('the listing', () => seen.length === 1);
    stop.abort();
    await done;
    for await (const change of watchPrefix(etcd, prefix, { signal: new AbortController().signal })) {
      assert.equal(change.kind, 'reset');
      break;
    }
  });

  test('a value that does not decode is skipped, in the listing and in the changes, and the watch goes on', async () => {
    const prefix = '/t/decode/';
    await etcd.put(`${prefix}good`).value('{"n":1}');
    await etcd.put(`${prefix}bad-before`).value('not json');
    const decode = (text: string) => JSON.parse(text) as { n: number };
    const stop = new AbortController();
    const { seen, done } = collect(watchPrefix(etcd, prefix, { signal: stop.signal, decode }));
    await until('the listing', () => seen.length === 1);
    assert.deepEqual(seen[0]?.kind === 'reset' && [...seen[0].items], [[`${prefix}good`, { n: 1 }]]);
    await etcd.put(`${prefix}bad`).value('{');
    await etcd.put(`${prefix}later`).value('{"n":2}');
    await until('the put after the bad one', () => Boolean(putOf(seen, `${prefix}later`)));
    assert.equal(putOf(seen, `${prefix}bad`), undefined);
    stop.abort();
    await done;
  });
});
