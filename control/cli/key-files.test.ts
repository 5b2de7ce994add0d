import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parsePrivateKey, keyIdOf, TrustedKeys } from '../../common/signing.js';
import { createKeyFiles } from './key-files.js';

describe('bpfleet keys create', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bpfleet-keys-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a private key only its owner can read and the matching public key', async () => {
    const k = await createKeyFiles(join(dir, 'release'));
    assert.equal(k.privatePath, join(dir, 'release.private.pem'));
    assert.equal(statSync(k.privatePath).mode & 0o777, 0o600);
    assert.equal(keyIdOf(parsePrivateKey(readFileSync(k.privatePath, 'utf8'), k.privatePath)), k.keyId);
    assert.deepEqual(TrustedKeys.of([readFileSync(k.publicPath, 'utf8')]).ids(), [k.keyId]);
  });

  it('refuses to overwrite either file and leaves both as they were', async () => {
    const prefix = join(dir, 'taken');
    writeFileSync(`${prefix}.public.pem`, 'old public');
    await assert.rejects(createKeyFiles(prefix), /taken\.public\.pem already exists; refusing to overwrite/);
    assert.throws(() => statSync(`${prefix}.private.pem`), /ENOENT/);
    assert.equal(readFileSync(`${prefix}.public.pem`, 'utf8'), 'old public');

    const first = await createKeyFiles(join(dir, 'once'));
    const before = readFileSync(first.privatePath, 'utf8');
    await assert.rejects(createKeyFiles(join(dir, 'once')), /once\.private\.pem already exists/);
    assert.equal(readFileSync(first.privatePath, 'utf8'), before);
  });
});
