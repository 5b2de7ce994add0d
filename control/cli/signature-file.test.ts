import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseManifestFile } from '../../common/manifest.js';
import { enforceSignaturePolicy, TrustedKeys } from '../../common/signing.js';
import { createKeyFiles, type KeyFiles } from './key-files.js';
import { signatureForPush, signatureFileFor, signModuleFiles } from './signature-file.js';

const MANIFEST = (version: string) => `name: demo\nversion: ${version}\nobject: demo.o\nprograms: [{name: prog, hook: xdp}]\n`;

describe('bpfleet module sign and what push sends', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bpfleet-sign-'));
  let key: KeyFiles;
  const manifestPath = join(dir, 'demo.yaml');
  const objectPath = join(dir, 'demo.o');
  const load = () => {
    const { manifest } = parseManifestFile(readFileSync(manifestPath, 'utf8'), manifestPath);
    return { manifest, object: readFileSync(objectPath) };
  };

  before(async () => {
    key = await createKeyFiles(join(dir, 'release'));
    writeFileSync(manifestPath, MANIFEST('1.0.0'));
    writeFileSync(objectPath, 'object bytes v1');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('sends nothing for an unsigned module', async () => {
    const { manifest, object } = load();
    const s = await signatureForPush(objectPath, manifest, object);
    assert.deepEqual([s.signature.length, s.keyId], [0, '']);
  });

  it('writes <object>.sig, and push sends a signature that the agent policy accepts', async () => {
    const out = await signModuleFiles(manifestPath, key.privatePath);
    assert.equal(out.path, signatureFileFor(objectPath));
    assert.equal(out.keyId, key.keyId);
    const { manifest, object } = load();
    const s = await signatureForPush(objectPath, manifest, object);
    assert.equal(s.keyId, key.keyId);
    const policy = { require: true, trusted: TrustedKeys.of([readFileSync(key.publicPath, 'utf8')]) };
    assert.doesNotThrow(() => enforceSignaturePolicy({
      manifest, digest: out.digest, size: object.length, objectKey: '', pushedAt: '', pushedBy: '', signature: s.signature, keyId: s.keyId,
    }, policy));
  });

  it('refuses a stale signature file: object rebuilt, or version bumped', async () => {
    await signModuleFiles(manifestPath, key.privatePath);
    writeFileSync(objectPath, 'object bytes rebuilt');
    const rebuilt = load();
    await assert.rejects(signatureForPush(objectPath, rebuilt.manifest, rebuilt.object), /does not sign this module \(digest: signed sha256:[0-9a-f]+, now sha256:[0-9a-f]+\); run bpfleet module sign again/);
    writeFileSync(objectPath, 'object bytes v1');
    writeFileSync(manifestPath, MANIFEST('1.0.1'));
    const bumped = load();
    await assert.rejects(signatureForPush(objectPath, bumped.manifest, bumped.object), /module: signed demo@1\.0\.0, now demo@1\.0\.1/);
    writeFileSync(manifestPath, MANIFEST('1.0.0'));
  });

  it('refuses a signature file whose signature was tampered with, or that is not one', async () => {
    await signModuleFiles(manifestPath, key.privatePath);
    const { manifest, object } = load();
    const sig = signatureFileFor(objectPath);
    const doc = JSON.parse(readFileSync(sig, 'utf8'));
    const bytes = Buffer.from(doc.signature, 'base64');
    bytes[0]! ^= 1;
    writeFileSync(sig, JSON.stringify({ ...doc, signature: bytes.toString('base64') }));
    await assert.rejects(signatureForPush(objectPath, manifest, object), /the signature does not verify with the key it names/);
    writeFileSync(sig, '{"hello": 1}');
    await assert.rejects(signatureForPush(objectPath, manifest, object), /not a bpfleet signature file/);
  });

  it('refuses a key that is not a private key, and writes nothing', async () => {
    rmSync(signatureFileFor(objectPath), { force: true });
    copyFileSync(key.publicPath, join(dir, 'pub-as-key.pem'));
    await assert.rejects(signModuleFiles(manifestPath, join(dir, 'pub-as-key.pem')), /not a PEM private key/);
    assert.throws(() => readFileSync(signatureFileFor(objectPath)), /ENOENT/);
  });
});
