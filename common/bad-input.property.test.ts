/**
 * Property tests of the module manifest checker and the ELF gate (issue 11, "bad input at
 * every boundary"): thousands of generated inputs each either pass or are refused with an
 * INVALID_ARGUMENT BpfleetError naming the field (manifest) or the object (ELF), with a
 * short message; never another error, never a hang.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { HookKind, ModuleManifest } from '../proto/gen/bpfleet/v1/module.js';
import { EM_BPF, requireBpfElf, syntheticElf } from './elf.js';
import { BpfleetError } from './errors.js';
import { checkManifest, parseManifestFile } from './manifest.js';

function refused(err: unknown, reason: RegExp): BpfleetError {
  assert.ok(err instanceof BpfleetError, `not a BpfleetError: ${String(err)}`);
  assert.equal(err.code, 'INVALID_ARGUMENT');
  assert.match(err.reason, reason);
  assert.ok(err.message.length < 8192, `a ${err.message.length}-character message`);
  return err;
}

const ident = fc.oneof(fc.constantFrom('xdp_prog', 'packets', '_x'), fc.string({ maxLength: 140 }));
const manifest = fc.record({
  name: fc.oneof(fc.constantFrom('pass-counter', 'a'), fc.string({ maxLength: 80 })),
  version: fc.oneof(fc.constantFrom('1.0.0', '2.0.0-rc.1'), fc.string({ maxLength: 80 })),
  description: fc.string({ maxLength: 5000 }),
  programs: fc.array(fc.record({ name: ident, hook: fc.constantFrom(...Object.values(HookKind)) }), { maxLength: 70 }),
  persistentMaps: fc.array(ident, { maxLength: 70 }),
  counters: fc.array(ident, { maxLength: 10 }),
});
const FIELD = /^invalid module manifest:(\n {2}(name|version|description|programs|programs\[\d+\]\.(name|hook)|persistentMaps(\[\d+\])?|counters(\[\d+\])?)[ :].*)+$/s;

test('a generated manifest passes the server check or is refused naming the field', () => {
  fc.assert(fc.property(manifest, (m) => {
    try {
      checkManifest(m);
    } catch (err) {
      assert.match(refused(err, /^INVALID_MANIFEST$/).message, FIELD);
    }
  }), { numRuns: 2000 });
});

test('manifest bytes off the wire: decoded by protobuf, then passed or refused naming the field', () => {
  fc.assert(fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }), manifest.map((m) => ModuleManifest.encode(m).finish())), (bytes) => {
    let m: ModuleManifest;
    try {
      m = ModuleManifest.decode(bytes);
    } catch {
      return; // gRPC answers these as MALFORMED_REQUEST (common/grpc-malformed.ts)
    }
    try {
      checkManifest(m);
    } catch (err) {
      assert.match(refused(err, /^INVALID_MANIFEST$/).message, FIELD);
    }
  }), { numRuns: 2000 });
});

test('a generated manifest file parses or is refused naming the field', () => {
  const text = fc.oneof(
    fc.string({ maxLength: 300 }),
    manifest.map((m) => JSON.stringify({ ...m, object: 'x.o', programs: m.programs.map((p) => ({ name: p.name, hook: 'xdp' })) })),
  );
  fc.assert(fc.property(text, (t) => {
    try {
      parseManifestFile(t, 'm.yaml');
    } catch (err) {
      assert.match(refused(err, /^INVALID_MANIFEST$/).message, /^m\.yaml: (not valid YAML: |invalid module manifest:\n {2}\S)/);
    }
  }), { numRuns: 2000 });
});

test('the ELF gate takes a BPF ELF header and refuses any other bytes as NOT_ELF or NOT_BPF_ELF', () => {
  const mutated = fc.tuple(
    fc.record({ machine: fc.oneof(fc.constant(EM_BPF), fc.integer({ min: 0, max: 0xffff })), endianness: fc.constantFrom('LE' as const, 'BE' as const), elfClass: fc.constantFrom(32 as const, 64 as const) }),
    fc.array(fc.tuple(fc.nat({ max: 70 }), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
    fc.nat({ max: 80 }),
  ).map(([opts, flips, cut]) => {
    const bytes = syntheticElf(opts);
    for (const [i, b] of flips) if (i < bytes.length) bytes[i] = b;
    return bytes.subarray(0, Math.max(cut, 0) < 10 ? bytes.length : cut);
  });
  fc.assert(fc.property(fc.oneof(fc.uint8Array({ maxLength: 100 }), mutated), (bytes) => {
    try {
      const header = requireBpfElf(bytes, 'm@1.0.0');
      assert.equal(header.machine, EM_BPF);
    } catch (err) {
      assert.match(refused(err, /^NOT_(BPF_)?ELF$/).message, /^m@1\.0\.0: /);
    }
  }), { numRuns: 3000 });
});
