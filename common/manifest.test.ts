import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { HookKind, type ModuleManifest } from '../proto/gen/bpfleet/v1/module.js';
import { BpfleetError } from './errors.js';
import { checkManifest, MAX_COUNTERS, parseManifestFile } from './manifest.js';

const GOOD = `
name: pass-counter
version: 2.0.0
object: build/pass-counter-v2.bpf.o
description: counts packets
programs:
  - {name: pass_counter, hook: xdp}
  - {name: egress_counter, hook: tcx-egress}
persistentMaps: [bpfleet_counters]
counters: [packets, bytes]
`;

const invalid = (pattern: RegExp) => (err: unknown) =>
  err instanceof BpfleetError && err.code === 'INVALID_ARGUMENT' && err.reason === 'INVALID_MANIFEST' && pattern.test(err.message);

describe('parseManifestFile', () => {
  it('turns the YAML a module author writes into the wire manifest and the object path', () => {
    assert.deepEqual(parseManifestFile(GOOD, 'm.yaml'), {
      object: 'build/pass-counter-v2.bpf.o',
      manifest: {
        name: 'pass-counter',
        version: '2.0.0',
        description: 'counts packets',
        programs: [{ name: 'pass_counter', hook: HookKind.HOOK_KIND_XDP }, { name: 'egress_counter', hook: HookKind.HOOK_KIND_TCX_EGRESS }],
        persistentMaps: ['bpfleet_counters'],
        counters: ['packets', 'bytes'],
      } satisfies ModuleManifest,
    });
  });

  it('parses the example modules shipped in agent/bpf', async () => {
    for (const f of ['pass-counter-v1.yaml', 'pass-counter-v2.yaml', 'drop-all.yaml']) {
      const path = new URL(`../agent/bpf/${f}`, import.meta.url);
      const { manifest } = parseManifestFile(await readFile(path, 'utf8'), f);
      assert.equal(manifest.name, 'pass-counter', f);
      assert.deepEqual(checkManifest(manifest), manifest);
    }
  });

  it('defaults the optional lists to empty', () => {
    const { manifest } = parseManifestFile('name: m\nversion: "1"\nobject: m.o\nprograms: [{name: p, hook: xdp}]\n', 'm.yaml');
    assert.deepEqual([manifest.persistentMaps, manifest.counters, manifest.description], [[], [], '']);
  });

  it('names the file and the bad field', () => {
    const cases: [string, RegExp][] = [
      [GOOD.replace('pass-counter\n', 'Pass_Counter\n'), /^m\.yaml: invalid module manifest:\n {2}name: lowercase letters, digits and dashes/],
      [GOOD.replace('2.0.0', '"2 0"'), /version: a version such as 1\.2\.0/],
      [GOOD.replace('hook: tcx-egress', 'hook: kprobe'), /programs\.1\.hook: /],
      [GOOD.replace('name: pass_counter', 'name: pass-counter'), /programs\.0\.name: the C function name of the program/],
      [GOOD.replace('counters: [packets, bytes]', `counters: [${Array.from({ length: MAX_COUNTERS + 1 }, (_, i) => `c${i}`).join(', ')}]`), /counters: /],
      [GOOD.replace('object: build/pass-counter-v2.bpf.o\n', ''), /object: /],
      [GOOD.replace(/programs:\n.*\n.*\n/, 'programs: []\n'), /programs: /],
      [`${GOOD}colour: red\n`, /Unrecognized key: "colour"/],
    ];
    for (const [text, pattern] of cases) assert.throws(() => parseManifestFile(text, 'm.yaml'), invalid(pattern), pattern.source);
  });

  it('reports YAML syntax errors with the file name', () => {
    assert.throws(() => parseManifestFile('name: [oops', 'bad.yaml'), invalid(/^bad\.yaml: not valid YAML/));
  });
});

describe('checkManifest', () => {
  const good = (): ModuleManifest => parseManifestFile(GOOD, 'm.yaml').manifest;

  it('accepts a valid manifest as is', () => {
    const m = good();
    assert.equal(checkManifest(m), m);
  });

  it('refuses a missing manifest', () => {
    assert.throws(() => checkManifest(undefined), invalid(/manifest is missing/));
  });

  it('lists every problem of a manifest sent by any gRPC client', () => {
    const m = { ...good(), name: 'UPPER', version: '', programs: [{ name: '1bad', hook: HookKind.HOOK_KIND_UNSPECIFIED }], counters: Array.from({ length: 9 }, (_, i) => `c${i}`) };
    try {
      checkManifest(m);
      assert.fail('accepted');
    } catch (err) {
      assert.ok(err instanceof BpfleetError);
      const lines = err.message.split('\n').slice(1);
      assert.deepEqual(lines.map((l) => l.trim().split(/[ :]/)[0]), ['name', 'version', 'programs[0].name', 'programs[0].hook', 'counters']);
    }
  });

  it('refuses a manifest without programs', () => {
    assert.throws(() => checkManifest({ ...good(), programs: [] }), invalid(/programs: at least one program/));
  });
});
