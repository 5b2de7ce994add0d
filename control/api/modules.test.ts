import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HookKind, ModuleManifest, type Module } from '../../proto/gen/bpfleet/v1/module.js';
import { refuseChange } from './modules.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;
const manifest = (over: Partial<ModuleManifest> = {}): ModuleManifest => ModuleManifest.fromPartial({
  name: 'pass-counter', version: '1.0.0', programs: [{ name: 'xdp_pass', hook: HookKind.HOOK_KIND_XDP }], persistentMaps: [], counters: ['packets'], description: 'counts', ...over,
});
const stored = (m: ModuleManifest, digest = DIGEST): Module =>
  ({ manifest: m, digest, size: 1, objectKey: DIGEST, pushedAt: '', pushedBy: 'a', signature: Buffer.alloc(0), keyId: '' });

describe('refuseChange: versions are immutable', () => {
  it('accepts the same object and manifest again', () => {
    assert.doesNotThrow(() => refuseChange(stored(manifest()), manifest(), DIGEST));
  });

  it('refuses the same object under a changed manifest, naming the fields', () => {
    assert.throws(() => refuseChange(stored(manifest()), manifest({ counters: ['packets', 'drops'], description: 'other' }), DIGEST),
      (err: Error & { code?: string; reason?: string }) => {
        assert.equal(err.reason, 'VERSION_EXISTS');
        assert.match(err.message, /pass-counter@1\.0\.0 already exists and differs in its manifest counters, description; versions are immutable/);
        return true;
      });
  });

  it('refuses another object, naming both digests', () => {
    const other = `sha256:${'b'.repeat(64)}`;
    assert.throws(() => refuseChange(stored(manifest()), manifest(), other), new RegExp(`differs in its object \\(stored ${DIGEST}, pushed ${other}\\)`));
  });
});
