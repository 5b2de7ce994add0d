import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, describe, test } from 'node:test';
import { prereqSkip } from '../e2e/support/prereqs.js';
import { CleanupStack } from './cleanup.js';
import { createHostNetns, type HostNetns } from './netns.js';
import { run, runningProcesses, spawnManaged, type ManagedProcess } from './processes.js';
import { isAllowedTarget, startBlaster, startTraffic } from './traffic.js';

// Counts datagrams on hostAddr:port inside the namespace; prints the count when told to stop.
const RECEIVER = `
const [addr, port] = process.argv.slice(1);
const s = require('node:dgram').createSocket({ type: 'udp4', recvBufferSize: 8 << 20 });
let n = 0;
s.on('message', () => { n++; });
s.bind(Number(port), addr, () => console.log('ready'));
process.on('SIGTERM', () => { console.log('received ' + n); process.exit(0); });
`;

async function startReceiver(h: HostNetns, port: number): Promise<ManagedProcess> {
  const p = spawnManaged({ name: 'udp-receiver', netns: h.netns, command: process.execPath, args: ['-e', RECEIVER, h.hostAddr, String(port)] });
  await p.waitForLine(/^ready$/);
  return p;
}

async function rxPackets(h: HostNetns): Promise<number> {
  const { stdout } = await run('ip', ['-n', h.netns, '-s', '-j', 'link', 'show', 'dev', h.iface]);
  return (JSON.parse(stdout) as { stats64: { rx: { packets: number } } }[])[0]!.stats64.rx.packets;
}

const pythonSkip = await prereqSkip(['python3']);

const FORBIDDEN = ['8.8.8.8', '10.0.0.1', '192.168.1.1', '198.20.0.1', '198.17.255.255', '0.0.0.0', '255.255.255.255', '::1', 'localhost', 'example.com', ''];

describe('traffic target check', () => {
  test('allows loopback and 198.18.0.0/15 only', () => {
    for (const ok of ['127.0.0.1', '127.255.255.254', '198.18.0.2', '198.19.255.254']) assert.ok(isAllowedTarget(ok), ok);
    for (const bad of FORBIDDEN) assert.equal(isAllowedTarget(bad), false, bad);
  });

  test('refuses a forbidden target before creating a socket or a process', (t) => {
    const createSocket = t.mock.method(dgram, 'createSocket');
    const before = runningProcesses().length;
    for (const target of FORBIDDEN) {
      assert.throws(() => startTraffic({ target, port: 9, pps: 10, durationMs: 100 }), { name: 'BpfleetError', reason: 'FORBIDDEN_TARGET' });
      assert.throws(() => startBlaster({ target, port: 9, durationMs: 100 }), { name: 'BpfleetError', reason: 'FORBIDDEN_TARGET' });
    }
    assert.equal(createSocket.mock.callCount(), 0);
    assert.equal(runningProcesses().length, before);
  });
});

describe('traffic into a namespace', { skip: await prereqSkip(['root', 'netns', 'nsenter']) }, () => {
  const cleanup = new CleanupStack();
  after(() => cleanup.runAll());

  test('rate-limited traffic reaches a UDP socket bound inside the namespace', async () => {
    const h = await createHostNetns(`traffic${process.pid}`);
    cleanup.defer(() => h.destroy(), 'destroy netns');
    const receiver = await startReceiver(h, 7001);
    cleanup.defer(() => receiver.stop(), 'stop receiver');

    const started = performance.now();
    const traffic = startTraffic({ target: h.hostAddr, port: 7001, pps: 2_000, durationMs: 1_000 });
    const sent = await traffic.done;
    const elapsed = performance.now() - started;
    assert.equal(traffic.errors(), 0);
    assert.ok(sent >= 1_800 && sent <= 2_100, `sent ${sent} at 2000 pps for 1 s`);
    assert.ok(elapsed < 1_500, `took ${elapsed} ms`);

    await new Promise((r) => setTimeout(r, 100));
    receiver.signal('SIGTERM');
    const [, received] = await receiver.waitForLine(/^received (\d+)$/);
    assert.equal(Number(received), sent);
  });

  test('stop() ends traffic early', async () => {
    const h = await createHostNetns(`tstop${process.pid}`);
    cleanup.defer(() => h.destroy(), 'destroy netns');
    const traffic = startTraffic({ target: h.hostAddr, port: 7002, pps: 1_000, durationMs: 60_000 });
    await new Promise((r) => setTimeout(r, 200));
    const sent = await traffic.stop();
    assert.ok(sent > 50 && sent < 400, `sent ${sent}`);
    assert.equal(traffic.sent(), sent);
  });

  for (const tool of ['python3', 'node'] as const) {
    test(`blaster (${tool}) floods the namespace, bounded in time`, { skip: tool === 'python3' ? pythonSkip : false }, async () => {
      const h = await createHostNetns(`blast-${tool.slice(0, 2)}${process.pid}`);
      cleanup.defer(() => h.destroy(), 'destroy netns');
      const rxBefore = await rxPackets(h);
      const started = performance.now();
      const result = await startBlaster({ target: h.hostAddr, port: 7003, durationMs: 1_000, tool }).done;
      const elapsed = performance.now() - started;
      const rx = (await rxPackets(h)) - rxBefore;
      process.stderr.write(`blaster ${tool}: sent ${result.sent} at ${result.pps} pps, eth0 received ${rx}\n`);
      assert.equal(result.tool, tool);
      assert.ok(elapsed < 3_000, `took ${elapsed} ms`);
      assert.ok(result.pps > 10_000, `only ${result.pps} pps`);
      assert.ok(rx >= result.sent * 0.95 && rx <= result.sent * 1.05, `eth0 received ${rx} of ${result.sent}`);
    });
  }
});
