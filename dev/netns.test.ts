import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { prereqSkip } from '../e2e/support/prereqs.js';
import { ClaimConflictError, procRef } from './claims.js';
import { CleanupStack } from './cleanup.js';
import { createHostNetns, HOST_IFACE, listNetns, MGMT_IFACE, NETNS_PREFIX, sweepStale } from './netns.js';
import { createPinRoot } from './pins.js';
import { CommandError, run, spawnManaged, type ManagedProcess } from './processes.js';

async function linkExists(ifname: string): Promise<boolean> {
  return run('ip', ['link', 'show', 'dev', ifname]).then(() => true, (err) => {
    if (err instanceof CommandError) return false;
    throw err;
  });
}

const alive = (pid: number): boolean => procRef(pid) !== undefined;

describe('netns fixture', { skip: await prereqSkip(['root', 'netns', 'bpffs', 'nsenter']) }, () => {
  const cleanup = new CleanupStack();
  after(() => cleanup.runAll());

  test('a management link routes the namespace to a services address of the root namespace, over mgmt0', async () => {
    const svc = await createHostNetns(`s${process.pid}`, 202);
    cleanup.defer(() => svc.destroy(), 'destroy services link');
    await assert.rejects(createHostNetns(`m${process.pid}`, 201, { management: { routes: ['10.0.0.1'] } }), /must be an IPv4 address in 198\.18\.0\.0\/15/);
    assert.equal((await listNetns()).includes(`${NETNS_PREFIX}m${process.pid}`), false);
    const h = await createHostNetns(`m${process.pid}`, 201, { management: { routes: [svc.peerAddr] } });
    cleanup.defer(() => h.destroy(), 'destroy netns');
    assert.equal(h.hostAddr, '198.18.201.2');
    assert.deepEqual({ ...h.management, peerIface: undefined }, {
      iface: MGMT_IFACE, hostAddr: '198.18.201.130', peerAddr: '198.18.201.129', peerIface: undefined, prefixLen: 25, routes: [svc.peerAddr],
    });
    const route = JSON.parse((await run('ip', ['-j', 'route', 'get', svc.peerAddr], { netns: h.netns })).stdout) as { dev: string; prefsrc: string }[];
    assert.deepEqual([route[0]?.dev, route[0]?.prefsrc], [MGMT_IFACE, '198.18.201.130']);
    // Refused (not unreachable): the root namespace answered from the services address.
    const probe = spawnManaged({
      name: 'probe', netns: h.netns, command: process.execPath,
      args: ['-e', `require('node:net').connect(1, '${svc.peerAddr}').on('error', (e) => console.log(e.code))`],
    });
    await probe.exited;
    assert.deepEqual(probe.lines(), ['ECONNREFUSED']);
    await h.destroy();
    assert.equal(await linkExists(h.management!.peerIface), false);
    assert.equal(await linkExists(h.peerIface), false);
  });

  test('creates a host namespace with a veth pair, and destroy leaves nothing', async () => {
    const h = await createHostNetns(`t${process.pid}`, 200);
    cleanup.defer(() => h.destroy(), 'destroy netns');
    assert.equal(h.netns, `${NETNS_PREFIX}t${process.pid}`);
    assert.equal(h.iface, HOST_IFACE);
    assert.equal(h.hostAddr, '198.18.200.2');
    assert.equal(h.peerAddr, '198.18.200.1');
    assert.ok(h.peerIface.length <= 15 && h.peerIface.startsWith('bf'));
    assert.ok((await listNetns()).includes(h.netns));

    const inside = JSON.parse((await run('ip', ['-j', 'addr', 'show', 'dev', 'eth0'], { netns: h.netns })).stdout) as
      { operstate: string; addr_info: { family: string; local: string }[] }[];
    assert.equal(inside[0]?.operstate, 'UP');
    // Only our IPv4 address: no IPv6 link-local to chatter on the link.
    assert.deepEqual(inside[0]?.addr_info.map((a) => `${a.family} ${a.local}`), ['inet 198.18.200.2']);
    const lo = JSON.parse((await run('ip', ['-n', h.netns, '-j', 'link', 'show', 'dev', 'lo'])).stdout) as { flags: string[] }[];
    assert.ok(lo[0]?.flags.includes('UP'));
    const root = JSON.parse((await run('ip', ['-j', 'addr', 'show', 'dev', h.peerIface])).stdout) as
      { addr_info: { local: string }[] }[];
    assert.deepEqual(root[0]?.addr_info.map((a) => a.local), ['198.18.200.1']);
    const neigh = (await run('ip', ['neigh', 'show', 'dev', h.peerIface])).stdout;
    assert.match(neigh, /198\.18\.200\.2 lladdr \S+ PERMANENT/);

    // The root namespace is reachable from inside at peerAddr, and bpffs stays visible.
    const probe = spawnManaged({
      name: 'probe', netns: h.netns, command: process.execPath,
      args: ['-e', `require('node:net').connect(1, '${h.peerAddr}').on('error', (e) => { console.log(e.code, require('node:fs').existsSync('/sys/fs/bpf')); })`],
    });
    await probe.exited;
    assert.deepEqual(probe.lines(), ['ECONNREFUSED true']);

    await h.destroy();
    assert.equal((await listNetns()).includes(h.netns), false);
    assert.equal(await linkExists(h.peerIface), false);
    await h.destroy();
  });

  test('refuses a name or subnet index a live process holds; picks a free index when none is given', async () => {
    const a = await createHostNetns(`u${process.pid}`, 201);
    cleanup.defer(() => a.destroy(), 'destroy a');
    await assert.rejects(createHostNetns(`u${process.pid}`, 202), ClaimConflictError);
    await assert.rejects(createHostNetns(`v${process.pid}`, 201), ClaimConflictError);
    assert.equal((await listNetns()).includes(`${NETNS_PREFIX}v${process.pid}`), false);

    const b = await createHostNetns(`w${process.pid}`);
    cleanup.defer(() => b.destroy(), 'destroy b');
    assert.notEqual(b.index, 201);
    assert.notEqual(b.hostAddr, a.hostAddr);
  });

  interface Left { netns: string; peerIface: string; pins: string; pid: number; dir: string }

  async function runLeaver(tag: string, mode: 'wait' | 'exit'): Promise<{ proc: ManagedProcess; left: Left }> {
    const proc = spawnManaged({
      name: `leaver-${tag}`,
      command: process.execPath,
      args: ['--import', 'tsx', fileURLToPath(new URL('../e2e/support/fixtures/leaves-resources.ts', import.meta.url)), tag, mode],
    });
    cleanup.defer(() => proc.kill(), `kill leaver ${tag}`);
    const [line] = await proc.waitForLine(/^\{.*\}$/, 20_000);
    return { proc, left: JSON.parse(line) as Left };
  }

  async function present(left: Left): Promise<string[]> {
    const found: string[] = [];
    if ((await listNetns()).includes(left.netns)) found.push(left.netns);
    if (await linkExists(left.peerIface)) found.push(left.peerIface);
    for (const path of [left.pins, left.dir]) if (existsSync(path)) found.push(path);
    // The init process may take a moment to reap the killed child.
    for (let i = 0; i < 20 && alive(left.pid); i++) await new Promise((r) => setTimeout(r, 50));
    if (alive(left.pid)) found.push(`pid ${left.pid}`);
    return found;
  }

  test('sweepStale removes what a killed run left, and nothing that is live', async () => {
    const mine = await createHostNetns(`live${process.pid}`, 203);
    cleanup.defer(() => mine.destroy(), 'destroy live netns');
    const myPins = await createPinRoot(`live${process.pid}`);
    cleanup.defer(() => myPins.destroy(), 'remove live pins');

    const { proc, left } = await runLeaver(`k${process.pid}`, 'wait');
    await proc.kill();
    assert.equal((await present(left)).length, 5, 'the killed run left all its resources');

    const report = await sweepStale();
    // Not asserting on report.netns and .links: a parallel test taking the dead run's subnet
    // may have removed those first.
    assert.ok(report.processes.includes(left.pid));
    assert.ok(report.pins.includes(left.pins.split('/').pop()!));
    assert.ok(report.dirs.includes(left.dir));
    assert.deepEqual(await present(left), []);

    assert.ok((await listNetns()).includes(mine.netns));
    assert.ok(await linkExists(mine.peerIface));
    assert.ok(existsSync(myPins.path));
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    test(`a run interrupted by ${signal} removes its resources on the way out`, async () => {
      const { proc, left } = await runLeaver(`${signal.slice(3, 5).toLowerCase()}${process.pid}`, 'wait');
      proc.signal(signal);
      const status = await proc.exited;
      assert.equal(status.signal, signal, 'dies of the signal, as it would without the hooks');
      assert.deepEqual(await present(left), []);
    });
  }

  test('a run that exits without cleaning up removes its resources on exit', async () => {
    const { proc, left } = await runLeaver(`x${process.pid}`, 'exit');
    assert.equal((await proc.exited).code, 0);
    assert.deepEqual(await present(left), []);
  });
});
