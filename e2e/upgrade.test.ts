/**
 * Upgrading bpfleet itself (issue 12): the agent runs from a built package (dist/, on plain
 * Node, laid out as `npm install` lays it out), a module runs on its host's eth0 with
 * traffic, and the agent is replaced by a newly built package with another version and
 * restarted, the way `npm install -g` of a new tarball and `systemctl restart` do it. The
 * kernel must not notice: the same program ids (module and drop witness), no second copy
 * loaded, the module's persistent counter counting through the restart; the host registers
 * the new version. What runs is read with bpftool, not from the agent.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LocalFleet } from '../dev/fleet.js';
import { HOST_IFACE } from '../dev/netns.js';
import { run } from '../dev/processes.js';
import { buildInfo } from '../common/version.js';
import * as kernel from './support/bpftool.js';
import { buildPackage } from './support/package.js';
import { prereqSkip } from './support/prereqs.js';

const skip = await prereqSkip(['root', 'bpf', 'bpffs', 'etcd', 'nats', 'netns', 'nsenter', 'clang']);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The program id of each drop witness pinned under `pinRoot` (<attachment>/witness, a tcx link). */
async function witnessProgIds(pinRoot: string): Promise<number[]> {
  const ids: number[] = [];
  for (const attachment of readdirSync(pinRoot)) {
    const pin = join(pinRoot, attachment, 'witness');
    if (!existsSync(pin)) continue;
    const { stdout } = await run('bpftool', ['-j', 'link', 'show', 'pinned', pin]);
    ids.push((JSON.parse(stdout) as { prog_id: number }).prog_id);
  }
  return ids.sort();
}

describe('upgrading the agent package mid-traffic', { skip, timeout: 180_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'bpfleet-upgrade-'));
  const from = { root: join(dir, 'from'), version: `${buildInfo().version}-upgrade.1` };
  const to = { root: join(dir, 'to'), version: `${buildInfo().version}-upgrade.2` };
  let fleet: LocalFleet;

  const agentVersion = async (): Promise<string | undefined> => {
    const { hosts } = await fleet.cliJson<{ hosts: { name: string; agentVersion: string }[] }>(['hosts']);
    return hosts.find((h) => h.name === 'h1')?.agentVersion;
  };

  before(async () => {
    // Built one after the other: two esbuild runs at once only compete for the same cores.
    await buildPackage(from.root, from.version);
    await buildPackage(to.root, to.version);
    fleet = await LocalFleet.start({ name: 'upgrade', hosts: 1, trafficPps: 1000, network: 'routed', agentRoot: from.root });
    const push = await fleet.cli(['module', 'push', 'agent/bpf/pass-counter-v1.yaml']);
    assert.equal(push.code, 0, push.stderr);
    const install = await fleet.cli(['rollout', 'create', '-f', '-', '--wait', '--timeout', '60s'], {
      stdin: 'module: pass-counter\nversion: 1.0.0\nattachment: xdp:eth0\nsteps: [{percent: 100}]\n',
    });
    assert.equal(install.code, 0, install.stdout + install.stderr);
  });

  after(async () => {
    await fleet?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the new package adopts what runs: same program ids, counters keep counting, the new version registered', async () => {
    const h = fleet.host('h1');
    const netns = h.netns.netns;
    assert.match(h.agent.lines().find((l) => l.includes('agent ready')) ?? '', new RegExp(`"version":"${from.version}"`), 'the agent runs from the first package');
    assert.equal(await agentVersion(), from.version);
    const progId = await kernel.hostXdpProgId(fleet, 'h1');
    const witnesses = await witnessProgIds(h.pinRoot.path);
    assert.equal(witnesses.length, 1, 'one drop witness on eth0');
    const loaded = (await kernel.progs()).filter((p) => p.name === 'pass_counter').length;
    const before0 = (await kernel.counters(progId))[0]!;

    // The package is replaced and the agent restarted (SIGTERM, as systemctl restart sends).
    await h.agent.stop();
    const stopped = (await kernel.counters(progId))[0]!;
    assert.ok(stopped > before0, 'the module counted under the first package');
    await sleep(500);
    assert.equal(await kernel.xdpProgId(netns, HOST_IFACE), progId, 'the program stays attached with no agent');
    assert.ok((await kernel.counters(progId))[0]! > stopped, 'and keeps counting with no agent');

    const agent = await fleet.startAgent('h1', { root: to.root });
    await agent.waitForLine(/adopted running program/, 10_000);
    assert.match(agent.lines().find((l) => l.includes('agent ready')) ?? '', new RegExp(`"version":"${to.version}"`), 'the agent runs from the new package');
    const adopted = (await kernel.counters(progId))[0]!;
    await sleep(500);

    assert.equal(await kernel.xdpProgId(netns, HOST_IFACE), progId, 'same XDP program id after the upgrade');
    assert.deepEqual(await witnessProgIds(h.pinRoot.path), witnesses, 'same drop witness after the upgrade');
    assert.equal((await kernel.progs()).filter((p) => p.name === 'pass_counter').length, loaded, 'no second copy loaded');
    assert.ok((await kernel.counters(progId))[0]! > adopted, 'the persistent counter keeps counting under the new package');
    assert.equal(await agentVersion(), to.version, 'the host registers the new version');
    const { hosts } = await fleet.cliJson<{ hosts: { name: string; attachments: { progId: number }[] }[] }>(['hosts']);
    assert.equal(hosts.find((x) => x.name === 'h1')?.attachments[0]?.progId, progId);
  });
});
