import { hookKind, type HookName } from '../../../common/attachment.js';
import { digestOf } from '../../../common/digest.js';
import { EM_BPF } from '../../../common/elf.js';
import type { ModuleArtifact } from '../driver.js';

export interface SyntheticElfOptions {
  machine?: number;
  endianness?: 'LE' | 'BE';
  elfClass?: 32 | 64;
  /** Appended after the header so that distinct modules get distinct digests. */
  payload?: string;
}

/**
 * An ELF header with nothing behind it but `payload`: all the sim reads of an object, and
 * enough for scale tests to fabricate thousands of modules without clang.
 */
export function syntheticElf(opts: SyntheticElfOptions = {}): Uint8Array {
  const elfClass = opts.elfClass ?? 64;
  const le = (opts.endianness ?? 'LE') === 'LE';
  const headerSize = elfClass === 64 ? 64 : 52;
  const payload = new TextEncoder().encode(opts.payload ?? '');
  const bytes = new Uint8Array(headerSize + payload.length);
  const view = new DataView(bytes.buffer);
  bytes.set([0x7f, 0x45, 0x4c, 0x46, elfClass === 64 ? 2 : 1, le ? 1 : 2, 1]);
  view.setUint16(16, 1, le); // ET_REL, as clang emits for -target bpf
  view.setUint16(18, opts.machine ?? EM_BPF, le);
  view.setUint32(20, 1, le);
  view.setUint16(elfClass === 64 ? 52 : 40, headerSize, le);
  bytes.set(payload, headerSize);
  return bytes;
}

export interface SimModuleSpec {
  name: string;
  version: string;
  hook?: HookName;
  counters?: string[];
  persistentMaps?: string[];
  /** Defaults to a synthetic BPF ELF unique to name@version. */
  object?: Uint8Array;
}

/** A module artifact as the agent would hand it to a driver, digest included. */
export function simArtifact(spec: SimModuleSpec): ModuleArtifact {
  const object = spec.object ?? syntheticElf({ payload: `${spec.name}@${spec.version}` });
  return {
    manifest: {
      name: spec.name,
      version: spec.version,
      programs: [{ name: spec.name.replace(/\W/g, '_'), hook: hookKind(spec.hook ?? 'xdp') }],
      persistentMaps: spec.persistentMaps ?? [],
      counters: spec.counters ?? ['packets'],
      description: '',
    },
    digest: digestOf(object),
    object,
  };
}
