/**
 * The corpus (agent/bpf/corpus/): objects in the shapes real modules take — globals in
 * .rodata/.data/.bss with a sub-program, every BTF-defined map kind (hash, LRU, array,
 * per-CPU, devmap_hash, ring buffer, array of maps), CO-RE against this kernel's BTF in an
 * `xdp.frags` program, several programs on several hooks sharing a map — each installed,
 * upgraded to its second build and rolled back on the kernel driver. bpftool is the witness:
 * libbpf's internal maps (<object>.rodata, …) are never pinned nor carried to the next
 * version, and once a version is gone no program or map of it is left in the kernel.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { HookName } from '../../../common/attachment.js';
import { run } from '../../../dev/processes.js';
import { artifact, buildModules, createSandbox } from '../../../e2e/support/kernel-sandbox.js';
import { prereqSkip } from '../../../e2e/support/prereqs.js';

const skip = await prereqSkip(['root', 'bpffs', 'bpf', 'netns', 'nsenter', 'clang']);
if (!skip) buildModules();

interface CorpusObject {
  file: string;
  program: string;
  hook: HookName;
  persistentMaps: string[];
}

const CORPUS: CorpusObject[] = [
  { file: 'globals', program: 'globals_filter', hook: 'xdp', persistentMaps: ['bpfleet_counters'] },
  { file: 'btf-maps', program: 'btf_maps', hook: 'xdp', persistentMaps: ['bpfleet_counters', 'flows'] },
  { file: 'core-frags', program: 'core_frags', hook: 'xdp', persistentMaps: ['bpfleet_counters'] },
  { file: 'multi-prog', program: 'multi_xdp', hook: 'xdp', persistentMaps: ['bpfleet_counters', 'hook_hits'] },
  { file: 'multi-prog', program: 'multi_ingress', hook: 'tcx-ingress', persistentMaps: ['bpfleet_counters', 'hook_hits'] },
  { file: 'multi-prog', program: 'multi_egress', hook: 'tcx-egress', persistentMaps: ['bpfleet_counters', 'hook_hits'] },
];

const version = (o: CorpusObject, v: 1 | 2) => artifact({
  file: `corpus/${o.file}-v${v}.bpf.o`, name: o.file, version: `${v}.0.0`, hook: o.hook, program: o.program, persistentMaps: o.persistentMaps,
});

interface KernelMap { id: number; name: string }

async function bpftool<T>(args: string[]): Promise<T> {
  return JSON.parse((await run('bpftool', ['-j', ...args])).stdout) as T;
}

// The kernel keeps 15 characters of a map's name (BPF_OBJ_NAME_LEN, include/uapi/linux/bpf.h).
const kernelName = (name: string): string => name.slice(0, 15);

/** The maps program `progId` uses, by their kernel names, as the kernel reports them. */
async function mapsOf(progId: number): Promise<Map<string, number>> {
  const prog = await bpftool<{ map_ids?: number[] }>(['prog', 'show', 'id', String(progId)]);
  const maps = await bpftool<KernelMap[]>(['map', 'show']);
  const ids = new Set(prog.map_ids ?? []);
  return new Map(maps.filter((m) => ids.has(m.id)).map((m) => [m.name, m.id]));
}

/** Waits (the kernel frees maps and programs after an RCU grace period) until none of `ids` exists. */
async function gone(kind: 'map' | 'prog', ids: number[], what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const live = new Set((await bpftool<{ id: number }[]>([kind, 'show'])).map((x) => x.id));
    const left = ids.filter((id) => live.has(id));
    if (!left.length) return;
    if (Date.now() > deadline) assert.fail(`${what}: ${kind} ids ${left.join(', ')} are still in the kernel`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function pinnedFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? pinnedFiles(join(dir, e.name)) : [e.name]));
}

const isInternal = (name: string): boolean => /\.(rodata|data|bss|kconfig)/.test(name);

describe('kernel driver: the corpus of real-world object shapes', { skip }, () => {
  for (const o of CORPUS) {
    it(`${o.file} (${o.program} on ${o.hook}): install, upgrade, roll back, remove; internal maps never pinned nor kept`, async (t) => {
      const sb = await createSandbox();
      t.after(() => sb.destroy());
      const driver = sb.driver();
      const attachment = sb.attachment(o.hook);
      const v1 = version(o, 1);
      const v2 = version(o, 2);

      const first = await driver.install(attachment, v1, null);
      const maps1 = await mapsOf(first.running.progId);
      const internal1 = [...maps1].filter(([name]) => isInternal(name)).map(([, id]) => id);
      for (const name of o.persistentMaps.map(kernelName)) assert.ok(maps1.has(name), `${name} is one of the program's maps: ${[...maps1.keys()].join(', ')}`);
      if (o.file === 'globals') assert.equal(internal1.length, 3, `.rodata, .data and .bss are maps: ${[...maps1.keys()].join(', ')}`);

      const up = await driver.install(attachment, v2, v1.digest);
      assert.ok(up.changed);
      assert.notEqual(up.running.progId, first.running.progId);
      const maps2 = await mapsOf(up.running.progId);
      for (const name of o.persistentMaps.map(kernelName)) assert.equal(maps2.get(name), maps1.get(name), `${name} keeps its map id across the upgrade`);
      for (const id of internal1) assert.ok(![...maps2.values()].includes(id), 'an internal map is never carried to the next version');
      await gone('prog', [first.running.progId], 'the old version after the upgrade');
      await gone('map', internal1, 'the old version\'s internal maps after the upgrade');

      const back = await driver.install(attachment, v1, v2.digest);
      assert.ok(back.changed);
      const maps3 = await mapsOf(back.running.progId);
      for (const name of o.persistentMaps.map(kernelName)) assert.equal(maps3.get(name), maps1.get(name), `${name} keeps its map id across the rollback`);
      const internal2 = [...maps2].filter(([name]) => isInternal(name)).map(([, id]) => id);
      await gone('prog', [up.running.progId], 'the upgraded version after the rollback');
      await gone('map', internal2, 'the upgraded version\'s internal maps after the rollback');
      assert.deepEqual(pinnedFiles(sb.pinRoot.path).filter(isInternal), [], 'no internal map is pinned');

      await driver.remove(attachment);
      await gone('prog', [back.running.progId], 'the last version after removal');
      const internal3 = [...maps3].filter(([name]) => isInternal(name)).map(([, id]) => id);
      await gone('map', internal3, 'the last version\'s internal maps after removal');
    });
  }
});
