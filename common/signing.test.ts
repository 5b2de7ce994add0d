import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { HookKind, Module, type ModuleManifest } from '../proto/gen/bpfleet/v1/module.js';
import { BpfleetError } from './errors.js';
import {
  checkSignatureFields, enforceSignaturePolicy, generateKeyPair, KEY_ID_RE, keyIdOf, manifestDigest,
  parsePrivateKey, signModule, TrustedKeys, type KeyPair, type SignaturePolicy,
} from './signing.js';

const DIGEST = `sha256:${'ab'.repeat(32)}`;
const OTHER_DIGEST = `sha256:${'cd'.repeat(32)}`;

function manifest(over: Partial<ModuleManifest> = {}): ModuleManifest {
  return {
    name: 'pass-counter', version: '2.0.0', description: '',
    programs: [{ name: 'pass_counter', hook: HookKind.HOOK_KIND_XDP }],
    persistentMaps: ['bpfleet_counters'], counters: ['packets'], ...over,
  };
}

function module(m: ModuleManifest, digest: string, signed?: { signature: Buffer; keyId: string }): Module {
  return {
    manifest: m, digest, size: 1, objectKey: digest, pushedAt: '', pushedBy: 't',
    signature: signed?.signature ?? Buffer.alloc(0), keyId: signed?.keyId ?? '',
  };
}

function signed(pair: KeyPair, m: ModuleManifest = manifest(), digest = DIGEST): Module {
  return module(m, digest, signModule(m, digest, parsePrivateKey(pair.privateKey, 'key')));
}

function refusal(fn: () => void): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof BpfleetError, String(err));
    assert.equal(err.code, 'PERMISSION_DENIED');
    return err.reason;
  }
  return 'ACCEPTED';
}

describe('module signatures', () => {
  const release = generateKeyPair();
  const rogue = generateKeyPair();
  const policy: SignaturePolicy = { require: true, trusted: TrustedKeys.of([release.publicKey]) };

  it('names a key by its public half, whichever half is at hand', () => {
    assert.match(release.keyId, KEY_ID_RE);
    assert.notEqual(release.keyId, rogue.keyId);
    assert.equal(keyIdOf(parsePrivateKey(release.privateKey, 'k')), release.keyId);
    assert.deepEqual(TrustedKeys.of([release.publicKey]).ids(), [release.keyId]);
  });

  it('accepts a module signed by a trusted key, also after the registry round trip', () => {
    const m = signed(release);
    assert.equal(refusal(() => enforceSignaturePolicy(m, policy)), 'ACCEPTED');
    const stored = Module.fromJSON(JSON.parse(JSON.stringify(Module.toJSON(m))));
    assert.equal(refusal(() => enforceSignaturePolicy(stored, policy)), 'ACCEPTED');
  });

  it('refuses an unsigned module when signatures are required, and only then', () => {
    const m = module(manifest(), DIGEST);
    assert.equal(refusal(() => enforceSignaturePolicy(m, policy)), 'UNSIGNED');
    assert.equal(refusal(() => enforceSignaturePolicy(m, { ...policy, require: false })), 'ACCEPTED');
  });

  it('refuses a module signed by a key the host does not trust', () => {
    assert.equal(refusal(() => enforceSignaturePolicy(signed(rogue), policy)), 'UNTRUSTED_KEY');
  });

  it('checks a signed module even when signatures are optional', () => {
    const loose = { ...policy, require: false };
    assert.equal(refusal(() => enforceSignaturePolicy(signed(rogue), loose)), 'UNTRUSTED_KEY');
    const m = signed(release);
    assert.equal(refusal(() => enforceSignaturePolicy({ ...m, digest: OTHER_DIGEST }, loose)), 'BAD_SIGNATURE');
  });

  describe('a signature does not carry over to anything else', () => {
    const good = signed(release);
    const cases: [string, Module][] = [
      ['another version of the same object (replay)', { ...good, manifest: manifest({ version: '3.0.0' }) }],
      ['another object under the same version', { ...good, digest: OTHER_DIGEST }],
      ['another hook in the manifest', { ...good, manifest: manifest({ programs: [{ name: 'pass_counter', hook: HookKind.HOOK_KIND_TCX_INGRESS }] }) }],
      ['fewer persistent maps', { ...good, manifest: manifest({ persistentMaps: [] }) }],
      ['a truncated signature', { ...good, signature: good.signature.subarray(0, 63) }],
      ['one flipped bit', { ...good, signature: Buffer.from(good.signature.map((b, i) => (i === 10 ? b ^ 1 : b))) }],
      ['a rogue signature claiming the trusted key id', { ...signed(rogue), keyId: release.keyId }],
      ['a key id without a signature', { ...good, signature: Buffer.alloc(0) }],
    ];
    for (const [label, m] of cases) {
      it(label, () => assert.equal(refusal(() => enforceSignaturePolicy(m, policy)), 'BAD_SIGNATURE'));
    }
  });

  it('hashes the manifest the same however it was built, and differently when it differs', () => {
    assert.equal(manifestDigest(manifest()), manifestDigest(Module.fromJSON(Module.toJSON(module(manifest(), DIGEST))).manifest!));
    assert.notEqual(manifestDigest(manifest()), manifestDigest(manifest({ counters: ['packets', 'bytes'] })));
  });

  it('checks the shape of a pushed signature', () => {
    const good = signed(release);
    assert.doesNotThrow(() => checkSignatureFields(Buffer.alloc(0), '', 'm@1'));
    assert.doesNotThrow(() => checkSignatureFields(good.signature, good.keyId, 'm@1'));
    assert.throws(() => checkSignatureFields(good.signature.subarray(1), good.keyId, 'm@1'), /63 bytes, an ed25519 signature is 64/);
    assert.throws(() => checkSignatureFields(good.signature, 'rsa:1234', 'm@1'), /key id "rsa:1234"/);
    assert.throws(() => checkSignatureFields(Buffer.alloc(0), good.keyId, 'm@1'), /0 bytes/);
  });

  it('refuses a private key that is not ed25519', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    assert.throws(() => parsePrivateKey(rsa, 'rsa.pem'), /rsa\.pem: a rsa key; bpfleet signs with ed25519/);
    assert.throws(() => parsePrivateKey('not a key', 'junk.pem'), /junk\.pem: not a PEM private key/);
  });
});

describe('TrustedKeys.fromDir', () => {
  const dirs: string[] = [];
  const dir = (files: Record<string, string>) => {
    const d = mkdtempSync(join(tmpdir(), 'bpfleet-trust-'));
    dirs.push(d);
    for (const [name, text] of Object.entries(files)) writeFileSync(join(d, name), text);
    return d;
  };
  after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
  const a = generateKeyPair();
  const b = generateKeyPair();

  it('loads every *.pem public key and ignores other files', () => {
    const keys = TrustedKeys.fromDir(dir({ 'a.public.pem': a.publicKey, 'b.public.pem': b.publicKey, 'README': 'not a key' }));
    assert.deepEqual(keys.ids(), [a.keyId, b.keyId].sort());
  });

  it('refuses a private key, a non-ed25519 key, junk, an empty or missing directory', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    assert.throws(() => TrustedKeys.fromDir(dir({ 'a.private.pem': a.privateKey })), /is a private key; trust public keys only/);
    assert.throws(() => TrustedKeys.fromDir(dir({ 'rsa.pem': rsa })), /a rsa key; bpfleet signatures are ed25519/);
    assert.throws(() => TrustedKeys.fromDir(dir({ 'junk.pem': 'hello' })), /not a PEM public key/);
    assert.throws(() => TrustedKeys.fromDir(dir({})), /no \*\.pem public key in it/);
    assert.throws(() => TrustedKeys.fromDir(join(tmpdir(), 'bpfleet-no-such-dir-for-trust')), /ENOENT/);
  });
});
