/**
 * Module signatures: ed25519 over what a module is (name@version, the object's digest and
 * its manifest), made by `bpfleet module sign`, stored with the module by `module push`
 * and checked by agents whose policy asks for it, before anything reaches the kernel.
 *
 * Signing the digest and not the bytes keeps the signature small and detached; it is as
 * strong because agents check every object against its digest. Signing name@version too
 * means a signature cannot be replayed onto another version of the same object, and the
 * manifest means the registry cannot change which program is attached or which maps persist.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ModuleManifest, type Module } from '../proto/gen/bpfleet/v1/module.js';
import { BpfleetError } from './errors.js';
import { echo } from './limits.js';

/** "ed25519:" and the first 16 hex digits of the SHA-256 of the public key (SPKI DER). */
export const KEY_ID_RE = /^ed25519:[0-9a-f]{16}$/;
export const SIGNATURE_BYTES = 64;
const PAYLOAD_HEADER = 'bpfleet-module-signature-v1';

export interface KeyPair {
  /** PKCS#8 PEM. */
  privateKey: string;
  /** SPKI PEM. */
  publicKey: string;
  keyId: string;
}

export function generateKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    keyId: keyIdOf(publicKey),
  };
}

/** The key id of a public key, or of the public half of a private key. */
export function keyIdOf(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const der = pub.export({ type: 'spki', format: 'der' });
  return `ed25519:${createHash('sha256').update(der).digest('hex').slice(0, 16)}`;
}

/**
 * SHA-256 of the manifest's protobuf encoding: deterministic for equal field values, and
 * the same whether the manifest came from YAML, a gRPC request or the registry's JSON.
 */
export function manifestDigest(manifest: ModuleManifest): string {
  return `sha256:${createHash('sha256').update(ModuleManifest.encode(manifest).finish()).digest('hex')}`;
}

/** The exact bytes a module signature covers. */
export function signingPayload(manifest: ModuleManifest, digest: string): Buffer {
  return Buffer.from([
    PAYLOAD_HEADER,
    `module ${manifest.name}@${manifest.version}`,
    `object ${digest}`,
    `manifest ${manifestDigest(manifest)}`,
    '',
  ].join('\n'));
}

export function parsePrivateKey(pem: string, source: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new BpfleetError('INVALID_ARGUMENT', 'BAD_KEY', `${source}: not a PEM private key: ${(err as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new BpfleetError('INVALID_ARGUMENT', 'BAD_KEY', `${source}: a ${key.asymmetricKeyType} key; bpfleet signs with ed25519 (bpfleet keys create)`);
  }
  return key;
}

export function signModule(manifest: ModuleManifest, digest: string, privateKey: KeyObject): { signature: Buffer; keyId: string } {
  return { signature: sign(null, signingPayload(manifest, digest), privateKey), keyId: keyIdOf(privateKey) };
}

/** Shape check of a signature as sent with a push; whether it verifies is the agents' call. */
export function checkSignatureFields(signature: Uint8Array, keyId: string, what: string): void {
  if (signature.length === 0 && !keyId) return;
  if (signature.length !== SIGNATURE_BYTES) {
    throw new BpfleetError('INVALID_ARGUMENT', 'BAD_SIGNATURE', `${what}: signature is ${signature.length} bytes, an ed25519 signature is ${SIGNATURE_BYTES}`);
  }
  if (!KEY_ID_RE.test(keyId)) {
    throw new BpfleetError('INVALID_ARGUMENT', 'BAD_SIGNATURE', `${what}: key id ${echo(keyId)} is not ed25519:<16 hex>`);
  }
}

/** Public keys an agent trusts, by key id. */
export class TrustedKeys {
  private constructor(private readonly keys: ReadonlyMap<string, KeyObject>) {}

  static of(publicKeysPem: readonly string[]): TrustedKeys {
    return new TrustedKeys(new Map(publicKeysPem.map((pem, i) => {
      const key = parsePublicKey(pem, `key ${i}`);
      return [keyIdOf(key), key];
    })));
  }

  /**
   * Every *.pem in `dir`, each one ed25519 public key. A private key there is refused: the
   * directory is meant to be readable by whoever audits what a host trusts.
   */
  static fromDir(dir: string): TrustedKeys {
    let names: string[];
    try {
      names = readdirSync(dir).filter((n) => n.endsWith('.pem')).sort();
    } catch (err) {
      throw new BpfleetError('INVALID_ARGUMENT', 'BAD_TRUSTED_KEYS', `trusted keys ${dir}: ${(err as Error).message}`);
    }
    const keys = new Map<string, KeyObject>();
    for (const name of names) {
      const key = parsePublicKey(readFileSync(join(dir, name), 'utf8'), join(dir, name));
      keys.set(keyIdOf(key), key);
    }
    if (keys.size === 0) {
      throw new BpfleetError('INVALID_ARGUMENT', 'BAD_TRUSTED_KEYS', `trusted keys ${dir}: no *.pem public key in it (bpfleet keys create writes <prefix>.public.pem)`);
    }
    return new TrustedKeys(keys);
  }

  ids(): string[] {
    return [...this.keys.keys()].sort();
  }

  get(keyId: string): KeyObject | undefined {
    return this.keys.get(keyId);
  }
}

function parsePublicKey(pem: string, source: string): KeyObject {
  if (pem.includes('PRIVATE KEY')) {
    throw new BpfleetError('INVALID_ARGUMENT', 'BAD_TRUSTED_KEYS', `${source}: is a private key; trust public keys only (<prefix>.public.pem)`);
  }
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new BpfleetError('INVALID_ARGUMENT', 'BAD_TRUSTED_KEYS', `${source}: not a PEM public key: ${(err as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new BpfleetError('INVALID_ARGUMENT', 'BAD_TRUSTED_KEYS', `${source}: a ${key.asymmetricKeyType} key; bpfleet signatures are ed25519`);
  }
  return key;
}

/** What an agent asks of a module's signature before it loads the module. */
export interface SignaturePolicy {
  /** Refuse unsigned modules. */
  require: boolean;
  /** Keys whose signatures are accepted; null checks no signature at all. */
  trusted: TrustedKeys | null;
}

/**
 * Throws PERMISSION_DENIED with reason UNSIGNED, UNTRUSTED_KEY or BAD_SIGNATURE when the
 * module does not satisfy `policy`. A signed module is checked whenever keys are trusted,
 * required or not: a signature that does not verify is a tampered module.
 */
export function enforceSignaturePolicy(module: Module, policy: SignaturePolicy, who = 'this host'): void {
  const m = module.manifest;
  const what = `${m?.name}@${m?.version}`;
  const signed = module.signature.length > 0 || module.keyId !== '';
  if (!signed) {
    if (policy.require) throw new BpfleetError('PERMISSION_DENIED', 'UNSIGNED', `${what} is not signed and ${who} requires signed modules`);
    return;
  }
  if (!policy.trusted) return;
  const key = policy.trusted.get(module.keyId);
  if (!key) {
    throw new BpfleetError('PERMISSION_DENIED', 'UNTRUSTED_KEY',
      `${what} is signed by ${module.keyId || '(no key id)'}, which this host does not trust (trusted: ${policy.trusted.ids().join(', ')})`);
  }
  const ok = m !== undefined && module.signature.length === SIGNATURE_BYTES &&
    verify(null, signingPayload(m, module.digest), key, module.signature);
  if (!ok) {
    throw new BpfleetError('PERMISSION_DENIED', 'BAD_SIGNATURE',
      `${what}: the signature by ${module.keyId} does not match this module's name, version, digest ${module.digest} and manifest`);
  }
}
