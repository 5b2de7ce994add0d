/**
 * BpfLink on the real kernel, on a veth in a namespace of the test's own. Every link kind
 * runs one lifecycle (cilium/ebpf's link_test.go shape): create, info, a refused and an
 * accepted update, pin, reopen pinned, unpin, detach, close; bpftool is the witness.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BpfleetError } from '../../../common/errors.js';
import { prereqSkip } from '../../../e2e/support/prereqs.js';
import type { ModuleArtifact } from '../driver.js';
import * as bpf from './libbpf.js';
import { BpfLink, linkKind } from './link.js';
import { NetnsSwitch } from './netns.js';
import { bpftoolLink, bpftoolXdpProgId, buildModules, createSandbox, modules, type Sandbox } from '../../../e2e/support/kernel-sandbox.js';

const skip = await prereqSkip(['root', 'bpffs', 'bpf', 'netns', 'nsenter', 'clang']);
if (!skip) buildModules();

interface Loaded {
  fd: number;
  id: number;
}

/** A sandbox, a switch into its namespace and the link target there; all undone after `t`. */
async function setup(t: TestContext, attachType: number): Promise<{ sb: Sandbox; netns: NetnsSwitch; target: { attachType: number; iface: string } }> {
  const sb = await createSandbox();
  t.after(() => sb.destroy());
  const netns = NetnsSwitch.open(sb.host.netns);
  t.after(() => netns.close());
  return { sb, netns, target: { attachType, iface: sb.host.iface } };
}

/** Loads the module's only program; the object (and so the fd) lives until `t` ends. */
async function load(t: TestContext, artifact: ModuleArtifact, progType: number): Promise<Loaded> {
  const obj = bpf.BpfObject.open(artifact.object, 'link_test');
  t.after(() => obj.close());
  const [prog] = obj.programs();
  assert.ok(prog);
  if (prog.type === bpf.BPF_PROG_TYPE_UNSPEC) prog.setType(progType);
  await obj.load();
  return { fd: prog.fd, id: bpf.progInfo(prog.fd).id };
}

/** A link closed when `t` ends, whatever happens in between. */
function owned(t: TestContext, link: BpfLink): BpfLink {
  t.after(() => link.close());
  return link;
}

function isError(code: string, reason: string, message: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof BpfleetError, String(err));
    assert.deepEqual([err.code, err.reason], [code, reason], err.message);
    assert.match(err.message, message);
    return true;
  };
}

async function eventually(what: string, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!(await probe())) {
    assert.ok(Date.now() < deadline, `${what} within 5 s`);
    await sleep(20);
  }
}

describe('linkKind', () => {
  it('names the link an attach type makes, and refuses attach types bpfleet does not use', () => {
    assert.deepEqual([bpf.BPF_XDP, bpf.BPF_TCX_INGRESS, bpf.BPF_TCX_EGRESS].map(linkKind), ['xdp', 'tcx', 'tcx']);
    assert.throws(() => linkKind(0), isError('INTERNAL', 'KERNEL', /^attach link: attach type 0 is not xdp or tcx$/));
  });
});

describe('BpfLink on the real kernel', { skip }, () => {
  const kinds = [
    { kind: 'xdp', attachType: bpf.BPF_XDP, linkType: bpf.BPF_LINK_TYPE_XDP, progType: bpf.BPF_PROG_TYPE_XDP, v1: modules.passV1, v2: modules.passV2 },
    { kind: 'tcx', attachType: bpf.BPF_TCX_INGRESS, linkType: bpf.BPF_LINK_TYPE_TCX, progType: bpf.BPF_PROG_TYPE_SCHED_CLS, v1: modules.tcxV1, v2: modules.tcxV2 },
    { kind: 'tcx', attachType: bpf.BPF_TCX_EGRESS, linkType: bpf.BPF_LINK_TYPE_TCX, progType: bpf.BPF_PROG_TYPE_SCHED_CLS, v1: () => modules.tcxV1('tcx-egress'), v2: () => modules.tcxV2('tcx-egress') },
  ] as const;

  for (const { kind, attachType, linkType, progType, v1, v2 } of kinds) {
    it(`${kind} (attach type ${attachType}): create, update, pin, open pinned, unpin, detach, close`, async (t) => {
      const { sb, netns, target } = await setup(t, attachType);
      const a = await load(t, v1(), progType);
      const b = await load(t, v2(), progType);

      const link = owned(t, BpfLink.create(a.fd, target, { netns }));
      assert.equal(link.kind, kind);
      assert.equal(linkKind(attachType), kind);
      const info = link.info();
      assert.deepEqual([info.type, info.progId, info.ifindex], [linkType, a.id, netns.run(() => bpf.ifNameToIndex(sb.host.iface))]);
      assert.equal((await bpftoolLink(info.id)).prog_id, a.id, 'bpftool sees the program on the link');

      await assert.rejects(link.update(b.fd, { expectedProgFd: b.fd }),
        isError('FAILED_PRECONDITION', 'DRIFT', new RegExp(`^update ${kind} link: the link no longer runs the expected program$`)));
      await assert.rejects(link.update(b.fd, { expectedProgFd: b.fd, drift: `${sb.host.iface} changed behind the test's back` }),
        isError('FAILED_PRECONDITION', 'DRIFT', new RegExp(`^update ${kind} link: eth0 changed behind the test's back$`)));
      assert.equal(link.info().progId, a.id, 'a refused update changes nothing');
      await link.update(b.fd, { expectedProgFd: a.fd });
      assert.equal(link.info().progId, b.id);
      assert.equal((await bpftoolLink(info.id)).prog_id, b.id);

      const path = join(sb.pinRoot.path, 'link');
      link.pin(path);
      assert.ok(existsSync(path));
      assert.throws(() => link.pin(path), isError('INTERNAL', 'KERNEL', new RegExp(`^pin ${kind} link: bpf_obj_pin ${path}: .*EEXIST`)));
      const reopened = owned(t, BpfLink.openPinned(path));
      assert.equal(reopened.kind, kind);
      assert.deepEqual([reopened.info().id, reopened.info().progId], [info.id, b.id], 'the same link');
      await reopened.update(a.fd, { expectedProgFd: b.fd });
      assert.equal(link.info().progId, a.id, 'an update through one fd is seen through the other');

      reopened.unpin();
      assert.equal(existsSync(path), false);
      reopened.unpin();
      reopened.close();
      assert.equal((await bpftoolLink(info.id)).prog_id, a.id, 'unpinned, the link lives while an fd holds it');

      link.detach();
      assert.deepEqual([link.info().id, link.info().ifindex], [info.id, 0], 'detached: the link is defunct');
      if (kind === 'xdp') assert.equal(await bpftoolXdpProgId(sb.host.netns, sb.host.iface), null, 'nothing runs on the interface');
      await assert.rejects(link.update(b.fd, { expectedProgFd: a.fd }), isError('INTERNAL', 'SWAP_FAILED', new RegExp(`^update ${kind} link: bpf_link_update: `)));

      link.close();
      link.close();
      assert.throws(() => link.info(), isError('FAILED_PRECONDITION', 'CLOSED', new RegExp(`^info ${kind} link: link is closed$`)));
      await assert.rejects(link.update(b.fd, { expectedProgFd: a.fd }), isError('FAILED_PRECONDITION', 'CLOSED', /^update .* link: link is closed$/));
      await eventually('the closed link is gone', () => bpftoolLink(info.id).then(() => false, () => true));
    });
  }

  it('xdp: attaching where a program is already attached is DRIFT, and the first link keeps running', async (t) => {
    const { netns, target } = await setup(t, bpf.BPF_XDP);
    const a = await load(t, modules.passV1(), bpf.BPF_PROG_TYPE_XDP);
    const b = await load(t, modules.passV2(), bpf.BPF_PROG_TYPE_XDP);
    const first = owned(t, BpfLink.create(a.fd, target, { netns }));

    assert.throws(() => owned(t, BpfLink.create(b.fd, target, { netns })),
      isError('FAILED_PRECONDITION', 'DRIFT', /^attach xdp link: eth0 already has a program bpfleet did not attach$/));
    assert.equal(first.info().progId, a.id);
  });

  it('attaching to an interface the namespace does not have is ATTACH_FAILED', async (t) => {
    const { netns } = await setup(t, bpf.BPF_XDP);
    const a = await load(t, modules.passV1(), bpf.BPF_PROG_TYPE_XDP);
    assert.throws(() => owned(t, BpfLink.create(a.fd, { attachType: bpf.BPF_XDP, iface: 'nosuch0' }, { netns })),
      isError('INTERNAL', 'ATTACH_FAILED', /^attach xdp link: if_nametoindex nosuch0: .*ENODEV/));
  });

  it('without a netns, the interface is one of the calling thread\'s namespace', async (t) => {
    const { sb } = await setup(t, bpf.BPF_TCX_INGRESS);
    const a = await load(t, modules.tcxV1(), bpf.BPF_PROG_TYPE_SCHED_CLS);
    // The sandbox's root-side veth, deleted with the sandbox.
    const link = owned(t, BpfLink.create(a.fd, { attachType: bpf.BPF_TCX_INGRESS, iface: sb.host.peerIface }));
    assert.equal(link.info().ifindex, bpf.ifNameToIndex(sb.host.peerIface));
  });

  it('an unpinned link detaches once its fd is closed; a pinned one stays attached', async (t) => {
    const { sb, netns, target } = await setup(t, bpf.BPF_XDP);
    const a = await load(t, modules.passV1(), bpf.BPF_PROG_TYPE_XDP);

    const unpinned = owned(t, BpfLink.create(a.fd, target, { netns }));
    unpinned.close();
    await eventually('the unpinned link detached', async () => (await bpftoolXdpProgId(sb.host.netns, sb.host.iface)) === null);

    // The hook was just freed by a kernel work item: retry while it still reads busy.
    let pinned: BpfLink | undefined;
    await eventually('the hook is free again', async () => {
      try {
        pinned = owned(t, BpfLink.create(a.fd, target, { netns }));
        return true;
      } catch (err) {
        if (err instanceof BpfleetError && err.reason === 'DRIFT') return false;
        throw err;
      }
    });
    assert.ok(pinned);
    const path = join(sb.pinRoot.path, 'link');
    pinned.pin(path);
    pinned.close();
    await sleep(200);
    assert.equal(await bpftoolXdpProgId(sb.host.netns, sb.host.iface), a.id, 'the pin holds the link');
    const again = owned(t, BpfLink.openIfPinned(path)!);
    again.detach();
    again.unpin();
    assert.equal(await bpftoolXdpProgId(sb.host.netns, sb.host.iface), null, 'detach() frees the hook at once');
  });

  it('opening a pin that is not there', async (t) => {
    const { sb } = await setup(t, bpf.BPF_XDP);
    const nothing = join(sb.pinRoot.path, 'nothing');
    assert.equal(BpfLink.openIfPinned(nothing), null);
    assert.throws(() => BpfLink.openPinned(nothing), isError('INTERNAL', 'KERNEL', /^open pinned link: bpf_obj_get .*nothing: .*ENOENT/));
  });
});
