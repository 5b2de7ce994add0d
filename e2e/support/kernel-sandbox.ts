/**
 * What the kernel driver's tests and the dataplane benchmarks share: the example and test
 * modules as artifacts, a sandbox (network namespace with a veth pair, plus a pin root of its
 * own) that always cleans up, and bpftool as an independent witness of what the kernel runs.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ModuleArtifact } from '../../agent/dataplane/driver.js';
import { KernelDriver } from '../../agent/dataplane/kernel/kernel-driver.js';
import { hookKind, type Attachment, type HookName } from '../../common/attachment.js';
import { digestOf } from '../../common/digest.js';
import { createHostNetns, type HostNetns } from '../../dev/netns.js';
import { createPinRoot, type PinRoot } from '../../dev/pins.js';
import { run } from '../../dev/processes.js';

const BPF_DIR = fileURLToPath(new URL('../../agent/bpf/', import.meta.url));

/** Builds agent/bpf (examples and testdata); make skips what is up to date. */
export function buildModules(): void {
  execFileSync('make', ['-s', '-C', BPF_DIR], { stdio: ['ignore', 'inherit', 'inherit'] });
}

interface ModuleSpec {
  /** Relative to agent/bpf/build. */
  file: string;
  name: string;
  version: string;
  hook?: HookName;
  program?: string;
  counters?: string[];
  persistentMaps?: string[];
}

export function artifact(spec: ModuleSpec): ModuleArtifact {
  return artifactOf(readFileSync(`${BPF_DIR}build/${spec.file}`), spec);
}

export function artifactOf(object: Uint8Array, spec: Omit<ModuleSpec, 'file'>): ModuleArtifact {
  return {
    manifest: {
      name: spec.name,
      version: spec.version,
      programs: [{ name: spec.program ?? 'pass_counter', hook: hookKind(spec.hook ?? 'xdp') }],
      persistentMaps: spec.persistentMaps ?? ['bpfleet_counters'],
      counters: spec.counters ?? ['packets'],
      description: '',
    },
    digest: digestOf(object),
    object,
  };
}

export const modules = {
  passV1: () => artifact({ file: 'pass-counter-v1.bpf.o', name: 'pass-counter', version: '1.0.0' }),
  passV2: () => artifact({ file: 'pass-counter-v2.bpf.o', name: 'pass-counter', version: '2.0.0', counters: ['packets', 'bytes'] }),
  dropAll: () => artifact({ file: 'drop-all.bpf.o', name: 'pass-counter', version: '3.0.0-bad' }),
  tcxV1: (hook: HookName = 'tcx-ingress') =>
    artifact({ file: 'testdata/tcx-counter-v1.bpf.o', name: 'tcx-counter', version: '1.0.0', hook, program: 'tcx_counter' }),
  tcxV2: (hook: HookName = 'tcx-ingress') =>
    artifact({ file: 'testdata/tcx-counter-v2.bpf.o', name: 'tcx-counter', version: '2.0.0', hook, program: 'tcx_counter', counters: ['packets', 'bytes'] }),
  verifierReject: () => artifact({ file: 'testdata/verifier-reject.bpf.o', name: 'pass-counter', version: '9.0.0-unsafe' }),
  countersResized: () => artifact({ file: 'testdata/counters-resized.bpf.o', name: 'pass-counter', version: '9.0.0-resized' }),
  garbage: () => artifactOf(new TextEncoder().encode('#!/bin/sh\necho this is not an object\n'), { name: 'pass-counter', version: '9.0.0-text' }),
  notBpfElf: () => artifactOf(readFileSync('/bin/true'), { name: 'pass-counter', version: '9.0.0-x86' }),
};

/** A namespace with eth0 (the host NIC we attach to) and a pin root, both ours alone. */
export interface Sandbox {
  host: HostNetns;
  pinRoot: PinRoot;
  attachment(hook: HookName): Attachment;
  /** A driver on the sandbox's pin root and namespace, closed by destroy(). */
  driver(): KernelDriver;
  /** Closes drivers, unpins everything (detaching the links) and deletes the namespace. */
  destroy(): Promise<void>;
}

export async function createSandbox(): Promise<Sandbox> {
  const id = randomBytes(4).toString('hex');
  const host = await createHostNetns(`t-${id}`);
  let pinRoot: PinRoot;
  try {
    pinRoot = await createPinRoot(`test-${id}`);
  } catch (err) {
    await host.destroy();
    throw err;
  }
  const drivers: KernelDriver[] = [];
  return {
    host,
    pinRoot,
    attachment: (hook) => ({ hook, iface: host.iface }),
    driver() {
      const driver = new KernelDriver({ pinRoot: pinRoot.path, netns: host.netns });
      drivers.push(driver);
      return driver;
    },
    async destroy() {
      const errors: unknown[] = [];
      const steps = [...drivers.map((d) => () => d.close()), () => pinRoot.destroy(), () => host.destroy()];
      for (const step of steps) {
        try {
          await step();
        } catch (err) {
          errors.push(err);
        }
      }
      if (errors.length) throw new AggregateError(errors, `sandbox ${host.netns}: cleanup failed`);
    },
  };
}

async function bpftool<T>(args: string[], netns?: string): Promise<T> {
  const { stdout } = await run('bpftool', ['-j', ...args], netns ? { netns } : {});
  return JSON.parse(stdout) as T;
}

export interface BpftoolLink {
  id: number;
  prog_id: number;
  type: string | number;
}

export function bpftoolLink(linkId: number): Promise<BpftoolLink> {
  return bpftool<BpftoolLink>(['link', 'show', 'id', String(linkId)]);
}

/** The id of the program XDP runs on `iface` of `netns`, as `bpftool net` sees it. */
export async function bpftoolXdpProgId(netns: string, iface: string): Promise<number | null> {
  const [net] = await bpftool<Array<{ xdp: Array<{ devname: string; id: number }> }>>(['net', 'show'], netns);
  return net?.xdp.find((x) => x.devname === iface)?.id ?? null;
}

export interface BpftoolProg {
  id: number;
  tag: string;
  name?: string;
}

export function bpftoolProgs(): Promise<BpftoolProg[]> {
  return bpftool<BpftoolProg[]>(['prog', 'show']);
}
