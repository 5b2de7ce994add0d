/**
 * The kernel changing under a running program (issue 11, kind 6): its interface deleted,
 * re-created, renamed, its network namespace deleted, an MTU native XDP refuses. check()
 * must say what the kernel says (bpftool is the witness) and attach again where it can.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import type { Attachment } from '../../../common/attachment.js';
import { BpfleetError } from '../../../common/errors.js';
import { run } from '../../../dev/processes.js';
import { linkOfProg } from '../../../e2e/support/bpftool.js';
import { artifact, bpftoolXdpProgId, buildModules, createSandbox, modules, type Sandbox } from '../../../e2e/support/kernel-sandbox.js';
import { prereqSkip } from '../../../e2e/support/prereqs.js';
import { AttachmentStatus, type GetStateResponse } from '../../../proto/gen/bpfleet/v1/agent.js';
import { Reconciler } from '../../reconciler.js';
import type { AttachmentHealth } from '../driver.js';

const skip = await prereqSkip(['root', 'bpffs', 'bpf', 'netns', 'nsenter', 'clang']);
if (!skip) buildModules();

const IFACE = 'vx0';
const attachment: Attachment = { hook: 'xdp', iface: IFACE };

async function sandbox(t: TestContext): Promise<Sandbox> {
  const sb = await createSandbox();
  t.after(() => sb.destroy());
  return sb;
}

/** A veth pair inside the sandbox's namespace: vx0 (where modules go) and its peer vx1. */
function veth(sb: Sandbox) {
  const ip = (...args: string[]) => run('ip', ['-n', sb.host.netns, ...args]);
  return {
    add: () => ip('link', 'add', IFACE, 'up', 'type', 'veth', 'peer', 'name', 'vx1'),
    del: () => ip('link', 'del', IFACE),
    ip,
  };
}

function only(health: AttachmentHealth[]): AttachmentHealth {
  assert.equal(health.length, 1, JSON.stringify(health));
  return health[0]!;
}

function broken(health: AttachmentHealth[], reason: string): Extract<AttachmentHealth, { status: 'broken' }> {
  const h = only(health);
  assert.equal(h.status, 'broken', JSON.stringify(h));
  assert.equal(h.reason, reason, h.message);
  return h;
}

describe('kernel driver: the kernel changes under a running program', { skip }, () => {
  it('interface deleted: broken NO_INTERFACE; re-created: the same program is attached again', async (t) => {
    const sb = await sandbox(t);
    const driver = sb.driver();
    const link = veth(sb);
    await link.add();
    const v1 = modules.passV1();
    const first = await driver.install(attachment, v1, null);
    assert.deepEqual(only(await driver.check()), { attachment: 'xdp:vx0', status: 'running', running: first.running, reattached: false });

    await link.del();
    const gone = broken(await driver.check(), 'NO_INTERFACE');
    assert.deepEqual([gone.digest, gone.name, gone.version], [v1.digest, 'pass-counter', '1.0.0']);
    assert.match(gone.message, /interface vx0 is gone/);
    assert.equal(await driver.stats(attachment), null);
    assert.deepEqual(await driver.observe(), [], 'nothing runs');
    broken(await driver.check(), 'NO_INTERFACE');

    await link.add();
    const back = only(await driver.check());
    assert.equal(back.status, 'running');
    assert.equal(back.reattached, true);
    assert.equal(back.running.progId, first.running.progId, 'the same program, persistent maps and all');
    assert.notEqual(back.running.linkId, first.running.linkId);
    assert.equal(await bpftoolXdpProgId(sb.host.netns, IFACE), first.running.progId, 'bpftool sees it on the new vx0');
    assert.deepEqual(await driver.observe(), [back.running]);
    assert.equal((await driver.check())[0]?.status, 'running');

    await driver.remove(attachment);
    assert.equal(await bpftoolXdpProgId(sb.host.netns, IFACE), null);
    assert.deepEqual(await driver.check(), []);
  });

  it('interface deleted: a restarted driver still knows what was installed, and a remove clears it', async (t) => {
    const sb = await sandbox(t);
    const link = veth(sb);
    await link.add();
    await sb.driver().install(attachment, modules.passV1(), null);
    await link.del();
    const restarted = sb.driver();
    assert.deepEqual(await restarted.observe(), []);
    broken(await restarted.check(), 'NO_INTERFACE');
    await restarted.remove(attachment);
    assert.deepEqual(await restarted.check(), []);
  });

  it('interface renamed: broken IFACE_RENAMED while the program runs elsewhere; a new vx0 gets it back', async (t) => {
    const sb = await sandbox(t);
    const driver = sb.driver();
    const link = veth(sb);
    await link.add();
    const first = await driver.install(attachment, modules.passV1(), null);

    await link.ip('link', 'set', IFACE, 'down');
    await link.ip('link', 'set', IFACE, 'name', 'vx9');
    const renamed = broken(await driver.check(), 'IFACE_RENAMED');
    assert.match(renamed.message, /renamed to vx9/);
    assert.equal(await bpftoolXdpProgId(sb.host.netns, 'vx9'), first.running.progId, 'the kernel still runs it on vx9');
    assert.deepEqual(await driver.observe(), [], 'but not on the attachment');
    assert.equal(await driver.stats(attachment), null);

    await run('ip', ['-n', sb.host.netns, 'link', 'add', IFACE, 'up', 'type', 'veth', 'peer', 'name', 'vx2']);
    const back = only(await driver.check());
    assert.equal(back.status, 'running');
    assert.equal(await bpftoolXdpProgId(sb.host.netns, IFACE), first.running.progId);
    assert.equal(await bpftoolXdpProgId(sb.host.netns, 'vx9'), null, 'moved, not copied');
  });

  it('tcx ingress: interface deleted is broken NO_INTERFACE; re-created, the same program is attached again', async (t) => {
    const sb = await sandbox(t);
    const driver = sb.driver();
    const link = veth(sb);
    await link.add();
    const tcx: Attachment = { hook: 'tcx-ingress', iface: IFACE };
    const first = await driver.install(tcx, modules.tcxV1(), null);

    await link.del();
    assert.match(broken(await driver.check(), 'NO_INTERFACE').message, /interface vx0 is gone/);
    assert.deepEqual(await driver.observe(), []);

    await link.add();
    const back = only(await driver.check());
    assert.deepEqual([back.status, back.status === 'running' && back.reattached, back.status === 'running' && back.running.progId],
      ['running', true, first.running.progId]);
    // bpftool 7.1 shows no tcx in `net show`: the link that holds the program is the witness.
    assert.equal((await linkOfProg(first.running.progId))?.id, back.status === 'running' ? back.running.linkId : -1, 'bpftool: a new link holds it');
    assert.notEqual(back.status === 'running' && back.running.linkId, first.running.linkId);
  });

  it('re-created with an MTU native XDP refuses: broken MTU_TOO_LARGE, naming the fixes', async (t) => {
    const sb = await sandbox(t);
    const driver = sb.driver();
    const link = veth(sb);
    await link.add();
    await driver.install(attachment, modules.passV1(), null);
    await link.del();
    await link.add();
    await link.ip('link', 'set', 'vx1', 'mtu', '9000');
    await link.ip('link', 'set', IFACE, 'mtu', '9000');

    const refused = broken(await driver.check(), 'MTU_TOO_LARGE');
    assert.match(refused.message, /MTU 9000/);
    assert.match(refused.message, /xdp\.frags/);
    assert.equal(await bpftoolXdpProgId(sb.host.netns, IFACE), null);

    await link.ip('link', 'set', IFACE, 'mtu', '1500');
    await link.ip('link', 'set', 'vx1', 'mtu', '1500');
    assert.equal(only(await driver.check()).status, 'running', 'attached once the MTU fits');
  });

  it('network namespace deleted: broken NETNS_GONE, though the agent\'s handle keeps it alive', async (t) => {
    const sb = await sandbox(t);
    const driver = sb.driver();
    await driver.install(sb.attachment('xdp'), modules.passV1(), null);
    await run('ip', ['netns', 'del', sb.host.netns]);
    const gone = broken(await driver.check(), 'NETNS_GONE');
    assert.match(gone.message, /is gone/);
  });

  it('MTU too large for native XDP: MTU_TOO_LARGE says so and how to fix it; a frags-aware program attaches', async (t) => {
    const sb = await sandbox(t);
    const driver = sb.driver();
    const link = veth(sb);
    await link.add();
    await link.ip('link', 'set', 'vx1', 'mtu', '9000');
    await link.ip('link', 'set', IFACE, 'mtu', '9000');

    await assert.rejects(driver.install(attachment, modules.passV1(), null), (err) => {
      assert.ok(err instanceof BpfleetError);
      assert.deepEqual([err.code, err.reason], ['FAILED_PRECONDITION', 'MTU_TOO_LARGE']);
      assert.match(err.message, /vx0 \(MTU 9000\) has an MTU too large for native XDP/);
      assert.match(err.message, /xdp\.frags/);
      assert.match(err.message, /lower the MTU/);
      return true;
    });
    assert.equal(await bpftoolXdpProgId(sb.host.netns, IFACE), null);
    assert.deepEqual(await driver.check(), [], 'nothing left behind');

    const frags = artifact({ file: 'testdata/xdp-frags-pass.bpf.o', name: 'xdp-frags-pass', version: '1.0.0' });
    const installed = await driver.install(attachment, frags, null);
    assert.equal(await bpftoolXdpProgId(sb.host.netns, IFACE), installed.running.progId);
  });

  it('reconciler: reports the attachment BROKEN with the reason, then RUNNING again, keeping its marks', async (t) => {
    const sb = await sandbox(t);
    const driver = sb.driver();
    const link = veth(sb);
    await link.add();
    const v1 = modules.passV1();
    const reports: GetStateResponse[] = [];
    const reconciler = new Reconciler('h1', driver, {
      module: async () => ({ name: 'pass-counter', version: '1.0.0', digest: v1.digest, manifest: v1.manifest }) as never,
      object: async () => v1.object,
    }, { report: async (s) => void reports.push(s) });
    await reconciler.apply({ host: 'h1', attachment: 'xdp:vx0', module: { name: 'pass-counter', version: '1.0.0', digest: v1.digest },
      expectedDigest: '', rolloutId: 'r1', generation: 3, leaderEpoch: 1 });
    assert.deepEqual(await reconciler.recheck(), [], 'nothing changed');

    await link.del();
    assert.deepEqual(await reconciler.recheck(), ['xdp:vx0']);
    const [down] = reconciler.state().attachments;
    assert.deepEqual([down?.status, down?.reason, down?.progId, down?.linkId, down?.generation, down?.module?.digest],
      [AttachmentStatus.ATTACHMENT_STATUS_BROKEN, 'NO_INTERFACE', 0, 0, 3, v1.digest]);
    assert.equal(reports.at(-1)?.attachments[0]?.status, AttachmentStatus.ATTACHMENT_STATUS_BROKEN, 'published');
    assert.deepEqual(await reconciler.recheck(), [], 'reported once');

    await link.add();
    assert.deepEqual(await reconciler.recheck(), ['xdp:vx0']);
    const [up] = reconciler.state().attachments;
    assert.deepEqual([up?.status, up?.reason, up?.generation, up?.rolloutId], [AttachmentStatus.ATTACHMENT_STATUS_RUNNING, '', 3, 'r1']);
    assert.equal(await bpftoolXdpProgId(sb.host.netns, IFACE), up?.progId);
  });
});
