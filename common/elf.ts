/**
 * What a module object must be: a BPF ELF. The control plane checks it before storing a
 * pushed module, and each dataplane driver again before loading one.
 */
import { BpfleetError } from './errors.js';

/** e_machine of eBPF objects (linux/elf-em.h). */
export const EM_BPF = 247;

/** The ELF header fields a loader decides on before handing an object to libbpf. */
export interface ElfHeader {
  elfClass: 32 | 64;
  /** Byte order of the object's fields, named as node:os endianness() names the host's. */
  endianness: 'LE' | 'BE';
  /** e_type: 1 relocatable (what clang emits for BPF), 2 executable, 3 shared object. */
  type: number;
  machine: number;
}

const MAGIC = [0x7f, 0x45, 0x4c, 0x46];
const EI_CLASS = 4;
const EI_DATA = 5;
const E_TYPE = 16;
const E_MACHINE = 18;
const CLASSES: Record<number, { elfClass: 32 | 64; headerSize: number }> = {
  1: { elfClass: 32, headerSize: 52 },
  2: { elfClass: 64, headerSize: 64 },
};
const DATA: Record<number, 'LE' | 'BE'> = { 1: 'LE', 2: 'BE' };

/** Null when `bytes` does not start with a complete ELF header of a known class and byte order. */
export function parseElfHeader(bytes: Uint8Array): ElfHeader | null {
  if (bytes.length <= EI_DATA || MAGIC.some((b, i) => bytes[i] !== b)) return null;
  const cls = CLASSES[bytes[EI_CLASS]!];
  const endianness = DATA[bytes[EI_DATA]!];
  if (!cls || !endianness || bytes.length < cls.headerSize) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, cls.headerSize);
  const le = endianness === 'LE';
  return {
    elfClass: cls.elfClass,
    endianness,
    type: view.getUint16(E_TYPE, le),
    machine: view.getUint16(E_MACHINE, le),
  };
}

/**
 * Rejects an object no BPF loader could take, before anything touches the dataplane.
 * `what` names the module in the message ("pass-counter@1.0.0").
 */
export function requireBpfElf(bytes: Uint8Array, what: string): ElfHeader {
  const header = parseElfHeader(bytes);
  if (!header) {
    throw new BpfleetError('INVALID_ARGUMENT', 'NOT_ELF', `${what}: not an ELF object`);
  }
  if (header.machine !== EM_BPF) {
    throw new BpfleetError('INVALID_ARGUMENT', 'NOT_BPF_ELF', `${what}: ELF for machine ${header.machine}, not BPF`);
  }
  return header;
}

export interface SyntheticElfOptions {
  machine?: number;
  endianness?: 'LE' | 'BE';
  elfClass?: 32 | 64;
  /** Appended after the header so that distinct modules get distinct digests. */
  payload?: string;
}

/**
 * An ELF header with nothing behind it but `payload`: the fields parseElfHeader() reads, all
 * the sim driver reads of an object, and enough for scale tests to fabricate thousands of
 * modules without clang.
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
