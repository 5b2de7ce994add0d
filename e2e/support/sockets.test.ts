import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseListener, reachesLoopback } from './sockets.js';

test('ss -ltnpH lines parse into address, port and pids', () => {
  assert.deepEqual(parseListener('LISTEN 0      4096   198.18.1.1:39061 0.0.0.0:* users:(("etcd",pid=29512,fd=8))'),
    { address: '198.18.1.1', port: 39061, pids: [29512] });
  assert.deepEqual(parseListener('LISTEN 0 511 [::1]:9464 [::]:* users:(("node",pid=7,fd=19),("node",pid=8,fd=19))'),
    { address: '::1', port: 9464, pids: [7, 8] });
  assert.deepEqual(parseListener('LISTEN 0 128 *:22 *:*'), { address: '*', port: 22, pids: [] });
  assert.equal(parseListener('   '), undefined);
});

test('loopback and wildcard addresses count as reachable over loopback', () => {
  for (const a of ['127.0.0.1', '127.3.0.9', '0.0.0.0', '*', '::', '::1']) assert.ok(reachesLoopback(a), a);
  for (const a of ['198.18.1.1', '198.19.0.130']) assert.ok(!reachesLoopback(a), a);
});
