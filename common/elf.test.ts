import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { BpfleetError } from './errors.js';
import { EM_BPF, parseElfHeader, requireBpfElf, syntheticElf } from './elf.js';

const BUILT_BPF = new URL('../agent/bpf/build/pass-counter-v1.bpf.o', import.meta.url);
const HOST_MACHINE: Record<string, number> = { x64: 62, arm64: 183 };

function hex(text: string): Uint8Array {
  return Uint8Array.from(text.replace(/\s+/g, '').match(/../g)!.map((b) => parseInt(b, 16)));
}

// An ELF64 big-endian relocatable header for EM_BPF, written out by hand: e_machine is
// 00 f7 at offset 18, which a little-endian read would take for 63232.
const BIG_ENDIAN_BPF = hex(`
  7f454c46 02 02 01 00 0000000000000000
  0001 00f7 00000001 0000000000000000 0000000000000000 0000000000000000
  00000000 0040 0000 0000 0040 0000 0000`);

async function head(path: string, length: number): Promise<Uint8Array> {
  const file = await open(path);
  try {
    const { buffer, bytesRead } = await file.read(new Uint8Array(length), 0, length, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await file.close();
  }
}

describe('parseElfHeader', () => {
  it('reads an object clang built for BPF', { skip: !existsSync(BUILT_BPF) && 'run make -C agent/bpf first' }, () => {
    assert.deepEqual(parseElfHeader(readFileSync(BUILT_BPF)), { elfClass: 64, endianness: 'LE', type: 1, machine: EM_BPF });
  });

  it("reads this host's own node binary as an ELF for another machine", { skip: process.platform !== 'linux' || !(process.arch in HOST_MACHINE) }, async () => {
    const header = parseElfHeader(await head(process.execPath, 64));
    assert.equal(header?.machine, HOST_MACHINE[process.arch]);
  });

  it('reads fields big-endian when EI_DATA says so', () => {
    assert.equal(BIG_ENDIAN_BPF.length, 64);
    assert.deepEqual(parseElfHeader(BIG_ENDIAN_BPF), { elfClass: 64, endianness: 'BE', type: 1, machine: EM_BPF });
  });

  it('reads 32-bit headers', () => {
    const bytes = syntheticElf({ elfClass: 32, endianness: 'BE', machine: 8 });
    assert.equal(bytes.length, 52);
    assert.deepEqual(parseElfHeader(bytes), { elfClass: 32, endianness: 'BE', type: 1, machine: 8 });
  });

  it('reads a view that starts inside a larger buffer', () => {
    const object = syntheticElf({ payload: 'x' });
    const backing = new Uint8Array(object.length + 7);
    backing.set(object, 7);
    assert.equal(parseElfHeader(backing.subarray(7))?.machine, EM_BPF);
  });

  const notElf: Array<[string, Uint8Array]> = [
    ['empty', new Uint8Array()],
    ['text', new TextEncoder().encode('#!/bin/sh\nexit 0\n')],
    ['the magic alone', hex('7f454c46')],
    ['an unknown class', Uint8Array.from(syntheticElf(), (b, i) => (i === 4 ? 3 : b))],
    ['an unknown byte order', Uint8Array.from(syntheticElf(), (b, i) => (i === 5 ? 0 : b))],
    ['a truncated ELF64 header', syntheticElf().subarray(0, 63)],
    ['a truncated ELF32 header', syntheticElf({ elfClass: 32 }).subarray(0, 51)],
  ];
  for (const [what, bytes] of notElf) {
    it(`finds no ELF header in ${what}`, () => {
      assert.equal(parseElfHeader(bytes), null);
    });
  }
});

describe('requireBpfElf', () => {
  it('returns the header of a BPF object', () => {
    assert.equal(requireBpfElf(BIG_ENDIAN_BPF, 'm@1').endianness, 'BE');
  });

  it('rejects what is not ELF', () => {
    assert.throws(() => requireBpfElf(new TextEncoder().encode('hello'), 'm@1'), (err) => {
      assert.ok(err instanceof BpfleetError);
      assert.deepEqual([err.code, err.reason, err.message], ['INVALID_ARGUMENT', 'NOT_ELF', 'm@1: not an ELF object']);
      return true;
    });
  });

  it('rejects an ELF for another machine, naming it', () => {
    assert.throws(() => requireBpfElf(syntheticElf({ machine: 62 }), 'm@1'), (err) => {
      assert.ok(err instanceof BpfleetError);
      assert.deepEqual([err.code, err.reason, err.message], ['INVALID_ARGUMENT', 'NOT_BPF_ELF', 'm@1: ELF for machine 62, not BPF']);
      return true;
    });
  });
});
