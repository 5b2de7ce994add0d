import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { performance } from 'node:perf_hooks';
import { buildModules, createSandbox, modules, type Sandbox } from '../../../e2e/support/kernel-sandbox.js';
import { prereqSkip } from '../../../e2e/support/prereqs.js';
import * as bpf from './libbpf.js';
import { NetnsSwitch } from './netns.js';

const skip = await prereqSkip(['root', 'bpffs', 'bpf', 'netns', 'nsenter', 'clang']);
if (!skip) buildModules();

describe('libbpf bindings: struct layouts', () => {
  // Checked with offsetof() against /usr/include/bpf/{libbpf,bpf}.h (libbpf 1.1.2) and, for
  // bpf_link_info.tcx (newer than the installed 6.1 uapi headers), the kernel's BTF.
  const expected = {
    OpenOpts: { size: 80, offsets: { object_name: 8, pin_root_path: 24, kconfig: 40, kernel_log_buf: 56, kernel_log_size: 64, kernel_log_level: 72 } },
    LinkCreateOpts: { size: 64, offsets: { flags: 8, iter_info: 16, target_btf_id: 28, attach_union: 32 } },
    LinkUpdateOpts: { size: 16, offsets: { flags: 8, old_prog_fd: 12 } },
    ProgInfo: { offsets: { type: 0, id: 4, tag: 8, nr_map_ids: 52, map_ids: 56, name: 64, run_time_ns: 192, run_cnt: 200 } },
    MapInfo: { offsets: { type: 0, id: 4, key_size: 8, value_size: 12, max_entries: 16, map_flags: 20, name: 24 } },
    LinkInfo: { offsets: { type: 0, id: 4, prog_id: 8, ifindex: 16, attach_type: 20 } },
  } as const;
  for (const [name, want] of Object.entries(expected)) {
    it(name, () => {
      const type = bpf.layouts[name as keyof typeof bpf.layouts];
      if ('size' in want) assert.equal(type.size, want.size);
      for (const [field, offset] of Object.entries(want.offsets)) {
        assert.equal(type.members?.[field]?.offset, offset, `${name}.${field}`);
      }
    });
  }
});

describe('libbpf bindings against the kernel', { skip }, () => {
  async function sandbox(t: TestContext): Promise<Sandbox> {
    const sb = await createSandbox();
    t.after(() => sb.destroy());
    return sb;
  }

  it('reports errno from pointer functions and libbpf codes by name', () => {
    assert.throws(() => bpf.BpfObject.open(new TextEncoder().encode('not an object'), 'garbage'),
      (err: unknown) => err instanceof bpf.SysError && err.errno === 4001 && /bpf_object__open_mem: /.test(err.message));
    assert.throws(() => bpf.ifNameToIndex('nosuch0'), (err: unknown) => err instanceof bpf.SysError && err.code === 'ENODEV');
    assert.throws(() => bpf.objGet('/sys/fs/bpf/bpfleet-no-such-pin'), (err: unknown) => err instanceof bpf.SysError && err.code === 'ENOENT');
  });

  for (const { hook, attachType, progType, v1, v2 } of [
    { hook: 'xdp', attachType: bpf.BPF_XDP, progType: bpf.BPF_PROG_TYPE_XDP, v1: modules.passV1, v2: modules.passV2 },
    { hook: 'tcx', attachType: bpf.BPF_TCX_INGRESS, progType: bpf.BPF_PROG_TYPE_SCHED_CLS, v1: modules.tcxV1, v2: modules.tcxV2 },
  ]) {
    it(`${hook}: bpf_link_update with BPF_F_REPLACE is a compare-and-swap that answers EPERM`, async (t) => {
      const sb = await sandbox(t);
      const a = await load(t, v1().object, progType);
      const b = await load(t, v2().object, progType);
      const ns = NetnsSwitch.open(sb.host.netns);
      t.after(() => ns.close());
      const linkFd = ns.run(() => bpf.linkCreate(a.fd, bpf.ifNameToIndex(sb.host.iface), attachType));
      t.after(() => bpf.closeFd(linkFd));
      const link = bpf.linkInfo(linkFd);
      assert.deepEqual([link.type, link.progId], [hook === 'xdp' ? bpf.BPF_LINK_TYPE_XDP : bpf.BPF_LINK_TYPE_TCX, a.id]);

      assert.throws(() => bpf.linkUpdate(linkFd, b.fd, b.fd), (err: unknown) => err instanceof bpf.SysError && err.code === 'EPERM');
      assert.equal(bpf.linkInfo(linkFd).progId, a.id, 'a refused update changes nothing');

      const t0 = performance.now();
      bpf.linkUpdate(linkFd, b.fd, a.fd);
      t.diagnostic(`${hook} bpf_link_update, idle link: ${(performance.now() - t0).toFixed(3)} ms`);
      assert.equal(bpf.linkInfo(linkFd).progId, b.id);

      // The same compare-and-swap from a worker thread, as the driver runs it.
      await assert.rejects(bpf.linkUpdateAsync(linkFd, a.fd, a.fd), (err: unknown) => err instanceof bpf.SysError && err.code === 'EPERM');
      assert.equal(bpf.linkInfo(linkFd).progId, b.id, 'a refused update changes nothing');
      await bpf.linkUpdateAsync(linkFd, a.fd, b.fd);
      assert.equal(bpf.linkInfo(linkFd).progId, a.id);
    });
  }

  it('reads a per-CPU array: one value per possible CPU', async (t) => {
    const prog = await load(t, modules.passV1().object, bpf.BPF_PROG_TYPE_XDP);
    const [mapId] = bpf.progInfo(prog.fd).mapIds;
    assert.ok(mapId);
    const mapFd = bpf.mapFdById(mapId);
    t.after(() => bpf.closeFd(mapFd));
    assert.equal(bpf.mapInfo(mapFd).name, 'bpfleet_counter', 'the kernel keeps 15 characters of a name');
    const values = bpf.lookupPerCpuU64(mapFd, 0);
    assert.equal(values.length, bpf.numPossibleCpus());
    assert.ok(values.every((v) => v === 0n));
  });
});

/** Loads the object's only program; object and fd live until the test ends. */
async function load(t: TestContext, object: Uint8Array, progType: number): Promise<{ fd: number; id: number }> {
  const obj = bpf.BpfObject.open(object, 'test');
  t.after(() => obj.close());
  const [prog] = obj.programs();
  assert.ok(prog);
  if (prog.type === bpf.BPF_PROG_TYPE_UNSPEC) prog.setType(progType);
  await obj.load();
  return { fd: prog.fd, id: bpf.progInfo(prog.fd).id };
}
