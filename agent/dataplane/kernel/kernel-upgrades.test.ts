/**
 * Persistent state across versions (issue 11, kind 7): what a crashed upgrade leaves pinned
 * must not block a later version, flags the kernel adds to a map must not make the same map
 * "incompatible", and a map two programs of one module share stays one map across an
 * upgrade of either. The kernel's map ids are the witness (bpftool where it matters).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, it, type TestContext } from 'node:test';
import type { ModuleArtifact } from '../driver.js';
import { hookKind } from '../../../common/attachment.js';
import { artifact, buildModules, createSandbox, modules, type Sandbox } from '../../../e2e/support/kernel-sandbox.js';
import { prereqSkip } from '../../../e2e/support/prereqs.js';
import { BpfleetError } from '../../../common/errors.js';
import { KernelDriver } from './kernel-driver.js';
import * as bpf from './libbpf.js';
import { AttachmentPins } from './pins.js';
import { arrayMapValues, progMapId, xdpProgId } from '../../../e2e/support/bpftool.js';
import type { GetStateResponse } from '../../../proto/gen/bpfleet/v1/agent.js';
import { Reconciler } from '../../reconciler.js';

const skip = await prereqSkip(['root', 'bpffs', 'bpf', 'netns', 'nsenter', 'clang']);
if (!skip) buildModules();

async function sandbox(t: TestContext): Promise<Sandbox> {
  const sb = await createSandbox();
  t.after(() => sb.destroy());
  return sb;
}

const stateModule = (v: 1 | 2) =>
  artifact({ file: `testdata/state-v${v}.bpf.o`, name: 'state', version: `${v}.0.0`, persistentMaps: ['bpfleet_counters', 'state'] });
const devmapModule = (v: 1 | 2) =>
  artifact({ file: `testdata/devmap-v${v}.bpf.o`, name: 'devmap', version: `${v}.0.0`, persistentMaps: ['bpfleet_counters', 'tx_ports'] });

/** shared@v: its manifest names both programs, as its author would; `hook` picks the one to install. */
function sharedModule(v: 1 | 2, hook: 'xdp' | 'tcx-ingress'): ModuleArtifact {
  const a = artifact({
    file: `testdata/shared-v${v}.bpf.o`, name: 'shared', version: `${v}.0.0`, hook, program: hook === 'xdp' ? 'shared_xdp' : 'shared_tc',
    persistentMaps: ['bpfleet_counters', 'seen'], counters: v === 1 ? ['packets'] : ['packets', 'bytes'],
  });
  a.manifest.programs = [{ name: 'shared_xdp', hook: hookKind('xdp') }, { name: 'shared_tc', hook: hookKind('tcx-ingress') }];
  return a;
}

function u64(value: bigint): Uint8Array {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(value);
  return b;
}

function pinnedMap(path: string): bpf.MapInfo {
  return bpf.withFd(bpf.objGet(path), bpf.mapInfo);
}

function mapIdsOf(progId: number): number[] {
  return bpf.withFd(bpf.progFdById(progId), bpf.progInfo).mapIds;
}

describe('kernel driver: persistent state across versions', { skip }, () => {
  it('a map pin left by an upgrade that died after load does not block a later version', async (t) => {
    const sb = await sandbox(t);
    const attachment = sb.attachment('xdp');
    const pins = new AttachmentPins(sb.pinRoot.path, attachment);
    const v1 = modules.passV1();
    await sb.driver().install(attachment, v1, null);

    // The upgrade to state 1.0.0 stops right after the load: its new map "state" (4 entries)
    // is pinned, and no program that runs uses it.
    const crashing = new KernelDriver({
      pinRoot: sb.pinRoot.path, netns: sb.host.netns,
      checkpoint: (point) => {
        if (point === 'after-load') throw new Error('crash after load');
      },
    });
    t.after(() => crashing.close());
    await assert.rejects(crashing.install(attachment, stateModule(1), v1.digest), /crash after load/);
    assert.equal(pinnedMap(pins.map('state')).maxEntries, 4, 'the upgrade left its map pinned');

    // state 2.0.0 defines "state" with 8 entries: the leftover must not stand in its way.
    const driver = sb.driver();
    const v2 = await driver.install(attachment, stateModule(2), v1.digest);
    const state = pinnedMap(pins.map('state'));
    assert.equal(state.maxEntries, 8);
    assert.ok(mapIdsOf(v2.running.progId).includes(state.id), 'the running program uses the map pinned now');
  });

  it('a map pin left by a first install that never attached does not block the next one', async (t) => {
    const sb = await sandbox(t);
    const attachment = sb.attachment('xdp');
    const pins = new AttachmentPins(sb.pinRoot.path, attachment);
    pins.ensureDirs();
    const fd = bpf.mapCreate(bpf.BPF_MAP_TYPE_ARRAY, 'state', 4, 8, 2);
    try {
      bpf.objPin(fd, pins.map('state'));
    } finally {
      bpf.closeFd(fd);
    }
    const installed = await sb.driver().install(attachment, stateModule(1), null);
    assert.equal(pinnedMap(pins.map('state')).maxEntries, 4);
    assert.ok(mapIdsOf(installed.running.progId).includes(pinnedMap(pins.map('state')).id));
  });

  it('a map the running program uses is still refused when the next version redefines it', async (t) => {
    const sb = await sandbox(t);
    const attachment = sb.attachment('xdp');
    const driver = sb.driver();
    const v1 = await driver.install(attachment, stateModule(1), null);
    await assert.rejects(driver.install(attachment, stateModule(2), v1.running.digest), (err) => {
      assert.ok(err instanceof BpfleetError);
      assert.deepEqual([err.reason, err.message.includes('max_entries 4 pinned, 8 in module')], ['MAP_INCOMPATIBLE', true]);
      return true;
    });
    assert.deepEqual((await driver.observe()).map((r) => r.progId), [v1.running.progId]);
  });

  it('a devmap (the kernel adds BPF_F_RDONLY_PROG to it) keeps one map id across an upgrade', async (t) => {
    const sb = await sandbox(t);
    const attachment = sb.attachment('xdp');
    const pins = new AttachmentPins(sb.pinRoot.path, attachment);
    const driver = sb.driver();
    const v1 = await driver.install(attachment, devmapModule(1), null);
    const before = pinnedMap(pins.map('tx_ports'));
    assert.equal(before.flags & bpf.BPF_F_RDONLY_PROG, bpf.BPF_F_RDONLY_PROG, 'the kernel added the flag');

    const v2 = await driver.install(attachment, devmapModule(2), v1.running.digest);

    assert.equal(pinnedMap(pins.map('tx_ports')).id, before.id);
    assert.ok(mapIdsOf(v2.running.progId).includes(before.id), 'v2 uses the same devmap');
    assert.ok(existsSync(pins.map('bpfleet_counters')));
  });

  it('a map two programs of one module share keeps one id, and its contents, across an upgrade of either', async (t) => {
    const sb = await sandbox(t);
    const xdp = sb.attachment('xdp');
    const tcx = sb.attachment('tcx-ingress');
    const driver = sb.driver();
    const x1 = await driver.install(xdp, sharedModule(1, 'xdp'), null);
    const c1 = await driver.install(tcx, sharedModule(1, 'tcx-ingress'), null);
    const seen = await progMapId(x1.running.progId, 'seen');
    assert.ok(seen, 'the XDP program uses "seen"');
    assert.equal(await progMapId(c1.running.progId, 'seen'), seen, 'both programs use one "seen" map');
    // bpfleet_counters stays per attachment: telemetry reports it per attachment.
    assert.notEqual(await progMapId(c1.running.progId, 'bpfleet_counters'), await progMapId(x1.running.progId, 'bpfleet_counters'));
    // A mark far above what stray packets (IPv6 neighbour discovery on the veth) can add.
    const MARK = 1_000_000n;
    bpf.withFd(bpf.mapFdById(seen), (fd) => [0, 1].forEach((slot) => bpf.mapUpdate(fd, bpf.u32Key(slot), u64(MARK))));

    const x2 = await driver.install(xdp, sharedModule(2, 'xdp'), x1.running.digest);
    assert.notEqual(x2.running.progId, x1.running.progId, 'the XDP program was replaced');
    assert.equal(await progMapId(x2.running.progId, 'seen'), seen, 'XDP 2.0.0 uses the same map');
    assert.equal(await progMapId(c1.running.progId, 'seen'), seen, 'tcx 1.0.0 still uses it');

    const c2 = await driver.install(tcx, sharedModule(2, 'tcx-ingress'), c1.running.digest);
    assert.equal(await progMapId(c2.running.progId, 'seen'), seen, 'tcx 2.0.0 uses the same map');
    assert.equal(await progMapId(x2.running.progId, 'seen'), seen);
    for (const value of await arrayMapValues(seen)) assert.ok(value >= MARK && value < MARK + 10_000n, `"seen" kept its contents: ${value}`);
  });

  it('same object, new manifest: checked against what runs, then its persistent maps and card follow it, same program', async (t) => {
    const sb = await sandbox(t);
    const attachment = sb.attachment('xdp');
    const pins = new AttachmentPins(sb.pinRoot.path, attachment);
    const driver = sb.driver();
    const base = artifact({ file: 'testdata/state-v1.bpf.o', name: 'state', version: '1.0.0', persistentMaps: ['bpfleet_counters'] });
    const v1 = await driver.install(attachment, base, null);
    assert.ok(!existsSync(pins.map('state')));
    const as = (version: string, over: Partial<ModuleArtifact['manifest']>): ModuleArtifact => ({ ...base, manifest: { ...base.manifest, version, ...over } });

    const v101 = await driver.install(attachment, as('1.0.1', { persistentMaps: ['bpfleet_counters', 'state'] }), base.digest);
    assert.deepEqual([v101.changed, v101.running.version, v101.running.progId], [true, '1.0.1', v1.running.progId]);
    assert.ok(mapIdsOf(v1.running.progId).includes(pinnedMap(pins.map('state')).id), 'the running program\'s "state" is pinned now');

    const refused = async (over: Partial<ModuleArtifact['manifest']>, reason: string, text: RegExp) => {
      await assert.rejects(driver.install(attachment, as('1.0.2', over), base.digest), (err) => {
        assert.ok(err instanceof BpfleetError);
        assert.equal(err.reason, reason, err.message);
        assert.match(err.message, text);
        return true;
      });
      assert.deepEqual((await driver.observe()).map((r) => [r.version, r.progId]), [['1.0.1', v1.running.progId]], 'nothing changed');
    };
    await refused({ programs: [{ name: 'other_prog', hook: base.manifest.programs[0]!.hook }] }, 'SAME_OBJECT_OTHER_PROGRAM', /attaches other_prog/);
    await refused({ persistentMaps: ['nope'] }, 'NO_MAP', /persistent map nope is not a map of the running program/);

    await driver.install(attachment, as('1.0.3', { persistentMaps: ['bpfleet_counters'] }), base.digest);
    assert.ok(!existsSync(pins.map('state')), 'a map the manifest no longer keeps is unpinned');
    assert.equal(await xdpProgId(sb.host.netns, sb.host.iface), v1.running.progId, 'bpftool: the same program runs');
  });

  it('reconciler: a new version of the running object is recorded and reported under that version, with the intent\'s marks', async (t) => {
    const sb = await sandbox(t);
    const v1 = modules.passV1();
    const same = { ...v1.manifest, version: '1.0.1', counters: ['packets', 'extra'] };
    const registry: Record<string, ModuleArtifact['manifest']> = { '1.0.0': v1.manifest, '1.0.1': same, '1.0.2': { ...same, version: '1.0.2', persistentMaps: ['nope'] } };
    const reports: GetStateResponse[] = [];
    const reconciler = new Reconciler('h1', sb.driver(), {
      module: async (name: string, version: string) => ({ digest: v1.digest, manifest: { ...registry[version]!, name } }) as never,
      object: async () => v1.object,
    }, { report: async (s) => void reports.push(s) });
    const key = `xdp:${sb.host.iface}`;
    const apply = (version: string, generation: number) => reconciler.apply({
      host: 'h1', attachment: key, module: { name: 'pass-counter', version, digest: v1.digest },
      expectedDigest: generation === 1 ? '' : v1.digest, rolloutId: `r${generation}`, generation, leaderEpoch: 1,
    });
    const first = await apply('1.0.0', 1);

    const second = await apply('1.0.1', 2);

    assert.equal(second.changed, true);
    assert.deepEqual([second.state.module?.version, second.state.generation, second.state.rolloutId, second.state.progId],
      ['1.0.1', 2, 'r2', first.state.progId]);
    assert.equal(reports.at(-1)?.attachments[0]?.module?.version, '1.0.1', 'published');
    assert.deepEqual(reconciler.history.map((h) => h.generation), [1, 2]);
    assert.equal(await xdpProgId(sb.host.netns, sb.host.iface), first.state.progId);
    await assert.rejects(apply('1.0.2', 3), /NO_MAP|persistent map nope/);
    assert.equal(reconciler.state().attachments[0]?.module?.version, '1.0.1');
  });
});
